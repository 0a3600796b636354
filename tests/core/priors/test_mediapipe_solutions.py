"""MediaPipe's solutions load without matplotlib, and matplotlib still works after them."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_solutions_load_without_matplotlib_which_still_imports_after():
    out = _run("""
        import sys
        from core.priors.mediapipe_solutions import solutions
        mp = solutions()
        assert mp.face_mesh.FaceMesh and mp.selfie_segmentation.SelfieSegmentation
        print(sorted(k for k in sys.modules if k.split('.')[0] == 'matplotlib'))
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        assert sys.modules['matplotlib.pyplot'] is plt and matplotlib.pyplot is plt
        # MediaPipe's drawing helpers hold the stand-in, which now reads the real pyplot.
        assert mp.drawing_utils.plt.figure is plt.figure
        print(type(plt).__name__)
    """)
    assert out.splitlines() == ["[]", "module"]


def test_pyplot_read_through_mediapipe_first_loads_the_real_module():
    out = _run("""
        import sys
        from core.priors.mediapipe_solutions import solutions
        mp = solutions()
        figure = mp.drawing_utils.plt.figure
        import matplotlib.pyplot as plt
        print(figure is plt.figure, type(sys.modules['matplotlib']).__name__)
    """)
    assert out == "True module"
