"""The add-on's live path, measured: frames from a core applied into a preview mesh.

Used by ``likeness bench stream`` (transport ``blender``), which runs it in a
separate process under the bpy module. It drives the real path: a remote-mode
core link, the preview object and :func:`live.tick`, called at the interval it
asks for, as Blender's timer calls it (so at most ``1 / live.TICK_S`` frames/s).
"""

from __future__ import annotations

import time

import numpy as np

from . import core_process, live


def grid_template(verts: int) -> dict:
    """Flat-array topology of a square quad grid with at least ``verts`` vertices (a stand-in head)."""
    side = int(np.ceil(np.sqrt(verts)))
    u, v = np.meshgrid(np.linspace(-0.1, 0.1, side), np.linspace(-0.1, 0.1, side))
    pts = np.stack([u.ravel(), np.zeros(side * side), v.ravel()], axis=1).astype(np.float32)
    idx = np.arange(side * side).reshape(side, side)
    quads = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]], axis=-1).reshape(-1)
    return {"verts": pts, "poly_verts": quads.astype(np.int64),
            "poly_start": np.arange(0, len(quads) + 1, 4, dtype=np.int64)}


def measure_preview_stream(host: str, port: int, token: str, verts: int, frames: int, seed: int = 0) -> dict:
    """Replay ``frames`` frames of a ``verts``-vertex mesh from the core into the preview object.

    Returns {"transport": "blender", "verts", "frames", "frames_applied", "fps" (frames applied per second),
    "latency_ms_p50", "latency_ms_p95" (core queued -> written into the mesh), "apply_ms_p50" (one tick
    that wrote a frame), "mb_per_s"}.
    """
    arrays = grid_template(verts)
    n = len(arrays["verts"])
    link = core_process.CoreLink(host=host, port=port, token=token)
    link.start()
    if link.wait(30) != core_process.CONNECTED:
        raise RuntimeError(f"cannot connect to the core: {link.error}")
    live.LIVE.reset_job()
    live.LIVE.link = link
    live.LIVE.template = (arrays, {})
    obj = live.ensure_preview(arrays)
    rng = np.random.default_rng(seed)
    poses = (arrays["verts"][None] + rng.normal(0, 0.001, (8, n, 3))).astype(np.float32)
    latencies, applied_at, apply_s = [], [], []
    try:
        live.LIVE.job = link.client.start_replay(poses, count=frames)
        live.LIVE.state = live.RUNNING
        deadline = time.monotonic() + 600
        while live.LIVE.state in live.ACTIVE_STATES and time.monotonic() < deadline:
            before = live.LIVE.frames
            t0 = time.perf_counter()
            interval = live.tick()
            t1 = time.perf_counter()
            if live.LIVE.frames > before:
                now = time.monotonic()
                apply_s.append(t1 - t0)
                applied_at.append(now)
                latencies.append(now - live.LIVE.frame_emitted)
            time.sleep(max(interval - (time.perf_counter() - t0), 0.0))
        if live.LIVE.state != live.DONE:
            raise RuntimeError(f"replay ended as {live.LIVE.state}: {live.LIVE.message}")
    finally:
        live.LIVE.reset_job()
        live.LIVE.link = None
        link.stop()
        live.remove_object(obj)
    seconds = applied_at[-1] - applied_at[0] if len(applied_at) > 1 else 0.0
    return {
        "transport": "blender",
        "verts": n,
        "frames": frames,
        "frames_applied": len(applied_at),
        "fps": (len(applied_at) - 1) / seconds if seconds > 0 else 0.0,
        "latency_ms_p50": float(np.percentile(latencies, 50) * 1e3) if latencies else float("nan"),
        "latency_ms_p95": float(np.percentile(latencies, 95) * 1e3) if latencies else float("nan"),
        "apply_ms_p50": float(np.percentile(apply_s, 50) * 1e3) if apply_s else float("nan"),
        "mb_per_s": (len(applied_at) - 1) * n * 12 / seconds / 1e6 if seconds > 0 else 0.0,
    }

