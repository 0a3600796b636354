"""Frame streaming over the bridge: frames/s and latency from a live core to a client.

Starts ``likeness serve`` as a subprocess (TCP on 127.0.0.1 and a Unix
socket), asks it to replay a vertex sequence as fast as the client takes the
frames, and times every frame from the moment the core queued it (``t_emit``,
``time.monotonic`` is system-wide on one machine) to the moment the client's
receiver thread decoded it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

from bridge.client import Client

DEFAULT_VERTS = (4400, 24049)  # the default head template; a dense 24k artist mesh
READY_TIMEOUT_S = 60.0


def add_arguments(parser) -> None:
    parser.add_argument("--frames", type=int, default=3000, help="frames per case (default 3000)")
    parser.add_argument("--verts", type=int, nargs="+", default=list(DEFAULT_VERTS), help="vertex counts to stream")
    parser.add_argument("--transports", nargs="+", default=["tcp", "unix"], choices=["tcp", "unix", "blender"],
                        help="blender: frames applied into the add-on's preview mesh under the bpy module")


@contextlib.contextmanager
def serve(transport: str, workdir: pathlib.Path):
    """A ``likeness serve`` subprocess; yields (Popen, ready-file path)."""
    ready = workdir / f"ready-{transport}.json"
    cmd = [sys.executable, "-m", "core.cli", "serve", "--ready-file", str(ready)]
    if transport == "unix":
        cmd += ["--unix", str(workdir / "core.sock")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "LIKENESS_TOKEN": ""})
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"likeness serve exited: {proc.stderr.read().decode(errors='replace')}")
            if time.monotonic() > deadline:
                raise RuntimeError("likeness serve did not become ready")
            time.sleep(0.02)
        yield proc, ready
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(ready: pathlib.Path, verts: int, frames: int, seed: int = 0) -> dict:
    """Stream ``frames`` frames of ``verts`` vertices; returns fps and latency percentiles."""
    rng = np.random.default_rng(seed)
    poses = rng.normal(size=(8, verts, 3)).astype(np.float32)
    latencies = np.zeros(frames, dtype=np.float64)
    arrivals = np.zeros(frames, dtype=np.float64)
    count = [0]

    def on_frame(msg):
        i = count[0]
        if i < frames:
            latencies[i] = msg.received - msg.fields["t_emit"]
            arrivals[i] = msg.received
        count[0] = i + 1

    with Client.connect_ready_file(str(ready), on_frame=on_frame) as client:
        job = client.start_replay(poses, count=frames)
        final = client.wait_final(job, timeout=600)
    if final.kind != "result" or count[0] != frames:
        raise RuntimeError(f"replay ended with {final.kind} after {count[0]} of {frames} frames")
    seconds = arrivals[-1] - arrivals[0]
    return {
        "verts": verts,
        "frames": frames,
        "fps": (frames - 1) / seconds if seconds > 0 else float("inf"),
        "latency_ms_p50": float(np.percentile(latencies, 50) * 1e3),
        "latency_ms_p95": float(np.percentile(latencies, 95) * 1e3),
        "mb_per_s": (frames - 1) * verts * 12 / seconds / 1e6 if seconds > 0 else float("inf"),
    }


# The add-on's path runs in its own process under the bpy module (core never imports bpy): it loads
# the repository root as the extension package and lets addon.measure drive the real preview.
_BLENDER_CASE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("likeness_extension", sys.argv[1] + "/__init__.py",
                                              submodule_search_locations=[sys.argv[1]])
sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sys.modules[spec.name])
from likeness_extension.addon import measure
info = json.load(open(sys.argv[2]))
print(json.dumps(measure.measure_preview_stream(info["host"], info["port"], info["token"],
                                                int(sys.argv[3]), int(sys.argv[4]))))
"""


def measure_blender(ready: pathlib.Path, verts: int, frames: int) -> dict:
    """Frames/s applied into a ``verts``-vertex Blender preview mesh through the add-on's timer path."""
    repo = pathlib.Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", _BLENDER_CASE, str(repo), str(ready), str(verts), str(frames)],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"the blender stream case failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    results = []
    with tempfile.TemporaryDirectory(prefix="likeness-stream-") as tmp:
        for transport in args.transports:
            with serve("tcp" if transport == "blender" else transport, pathlib.Path(tmp)) as (_, ready):
                for n in args.verts:
                    if transport == "blender":
                        results.append(measure_blender(ready, n, args.frames))
                    else:
                        results.append({"transport": transport, **measure(ready, n, args.frames)})
    table = [{k: r[k] for k in ("transport", "verts", "fps", "latency_ms_p50", "latency_ms_p95", "mb_per_s")} for r in results]
    return {"results": results, "table": table}
