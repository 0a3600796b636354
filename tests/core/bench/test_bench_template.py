"""likeness bench template: a row per batch of people, with each person's normal map when asked."""

from __future__ import annotations

import json

import pytest

from core.cli import main


def test_rows_per_batch_with_renders(tmp_path):
    out = tmp_path / "template.json"
    assert main(["bench", "template", "--batch", "1,3", "--render", "48", "--repeats", "2", "--threads", "1",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [r["batch"] for r in rows] == [1, 3] and all(r["render"] == 48 for r in rows)
    assert all(r["per_person_ms"] > 0 and r["deform_fwd_bwd_ms_min"] > 0 for r in rows)
    assert rows[0]["speedup_per_person"] == 1.0 and rows[1]["speedup_per_person"] > 0


@pytest.mark.parametrize("bad", ["0", "two", ""])
def test_bad_batch_sizes_are_refused(bad, tmp_path):
    with pytest.raises(SystemExit, match="--batch"):
        main(["bench", "template", "--batch", bad, "--repeats", "1", "--json", str(tmp_path / "t.json")])
