"""Wall-clock timing shared by the benchmarks."""

from __future__ import annotations

import time

import torch

WARMUP = 3


def time_ms(fn, repeats: int, device: torch.device | str = "cpu") -> tuple[float, float]:
    """(median, min) wall milliseconds of ``repeats`` calls of ``fn`` after a warm-up,
    synchronising CUDA around each call so asynchronous kernels are counted."""
    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2], times[0]
