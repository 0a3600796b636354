"""``bench adopt``'s pieces that need no import: the bench people's own heads and their scoring."""

import numpy as np
import pytest

from core.template import load_default


@pytest.fixture(scope="module")
def template():
    return load_default()


def test_a_bench_persons_own_head_is_scored_by_its_own_embedding(template, tmp_path):
    """``bench adopt``'s personNNN heads: the person's mesh in the default topology, read back in order;
    an import that returned the head itself scores 0 mm and IoU 1, one whose lips slid does not."""
    import dataclasses

    from core.adopt import read_head
    from core.bench.heads import is_person_head, make_head, score_own_embedding
    from core.bench.synthetic import make_person

    assert is_person_head("person305") and not is_person_head("person") and not is_person_head("anny")
    head = read_head(make_head("person305", template, tmp_path))
    person = make_person(template, 305)
    assert np.abs(head.verts - person.verts).max() < 1e-5
    s, R, t = 1.02, np.eye(3), np.array([0.0, 0.01, 0.0])
    itself = dataclasses.replace(template, verts=(s * head.verts @ R.T + t).astype(np.float32))
    score = score_own_embedding(template, itself)
    assert score["landmark_median_mm"] < 1e-3 and min(score["region_iou"].values()) > 0.999
    lips = np.asarray(template.regions["lips"])
    slid = dataclasses.replace(itself, regions={**itself.regions, "lips": lips[: len(lips) // 2]})
    assert score_own_embedding(template, slid)["region_iou"]["lips"] < 0.7
