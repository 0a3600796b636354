"""Benchmarks and synthetic ground truth.

Benchmarks are not tests: each prints a table and writes JSON. A benchmark is
a module with ``add_arguments(parser)`` and ``run(args) -> dict``; the dict is
written as JSON and its ``"table"`` rows (if any) are printed. Register new
ones in ``BENCHMARKS``.
"""

# name -> module path
BENCHMARKS: dict[str, str] = {
    "adopt": "core.bench.adopt",
    "fit": "core.bench.fit",
    "losses": "core.bench.losses",
    "multiview": "core.bench.multiview",
    "photo": "core.bench.photo",
    "render": "core.bench.render",
    "stream": "core.bench.stream",
    "template": "core.bench.template",
    "texture": "core.bench.texture",
    "throughput": "core.bench.throughput",
}
