"""Reaching the core: start a local core process, or connect to a running one.

No bpy here: this is plain process and socket plumbing, driven from the add-on's
timer and testable on its own. Everything slow (checking the interpreter,
waiting for the ready file, the handshake) runs on a background thread; the
main thread only polls :attr:`CoreLink.state`, so Blender's UI never blocks.
"""

from __future__ import annotations

import collections
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from ..bridge.client import Client, HandshakeError

# How long a starting core may take to write its ready file (the first start
# imports torch and may build caches).
READY_TIMEOUT_S = 120.0
CHECK_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 5.0
LOG_LINES = 2000
# What the interpreter must be able to import to run the core.
REQUIRED_MODULES = ("core", "bridge", "torch", "numpy")

IDLE, STARTING, CONNECTED, FAILED, STOPPED = "IDLE", "STARTING", "CONNECTED", "FAILED", "STOPPED"


class CoreError(Exception):
    """Something the artist can act on (wrong interpreter, core crashed, bad address)."""


# Where a local core's Python is looked for when the preference is empty.
CORE_PYTHON_ENV = "LIKENESS_CORE_PYTHON"
EXTENSION_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
NO_CORE_PYTHON = ("No core Python found: in Edit > Preferences > Add-ons > Likeness set 'Core Python' to the "
                  "Likeness venv's interpreter (<checkout>/.venv/bin/python, made by 'make demo'), "
                  f"or set the environment variable {CORE_PYTHON_ENV}.")


def venv_python(root: str) -> str:
    """The interpreter of ``root/.venv`` (POSIX or Windows layout), or "" when there is none."""
    for rel in (("bin", "python"), ("Scripts", "python.exe")):
        path = os.path.join(root, ".venv", *rel)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return ""


def find_core_python(setting: str = "", *, environ=os.environ, extension_root: str | None = None) -> str:
    """The Python a local core runs with: the preference when set, else ``$LIKENESS_CORE_PYTHON``, else
    the ``.venv`` of the checkout the extension was installed from (a linked repository); CoreError otherwise."""
    root = EXTENSION_ROOT if extension_root is None else extension_root
    for candidate in (setting, environ.get(CORE_PYTHON_ENV, ""), venv_python(root)):
        if candidate:
            return candidate
    raise CoreError(NO_CORE_PYTHON)


def check_interpreter(python: str, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Raise CoreError unless ``python`` exists and can import what the core needs."""
    if not python:
        raise CoreError(NO_CORE_PYTHON)
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise CoreError(f"The core Python {python!r} does not exist or is not executable.")
    code = "import " + ", ".join(REQUIRED_MODULES)
    try:
        # a neutral working directory: a source checkout in the cwd must not make a bare Python look ready
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout,
                              cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        raise CoreError(f"{python} -c {code!r} did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise CoreError(f"cannot run {python}: {exc.strerror}") from None
    if proc.returncode != 0:
        missing = re.findall(r"No module named '([^']+)'", proc.stderr)
        if missing:
            raise CoreError(f"{python} cannot run the core: module {missing[-1]!r} is missing. "
                            "Install Likeness into that environment (make setup) or choose its .venv/bin/python.")
        last = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise CoreError(f"{python} cannot import the core: {last[0]}")


def serve_command(python: str, ready_file: str, token_file: str) -> list[str]:
    """The command line that starts a core listening on a free loopback port.

    It is the artist's own core on the artist's machine: it may open the paths
    the add-on sends (--allow-paths) and keeps the add-on's idle connection.
    """
    script = os.path.join(os.path.dirname(python), "likeness")
    args = ["serve", "--port", "0", "--ready-file", ready_file, "--token-file", token_file,
            "--allow-paths", "--idle-timeout", "0"]
    if os.path.isfile(script) and os.access(script, os.X_OK):
        return [script, *args]
    return [python, "-m", "core.cli", *args]


class LocalCore:
    """A core subprocess with a fresh token, a ready file and a captured log."""

    def __init__(self, python: str):
        self.python = python
        self.proc: subprocess.Popen | None = None
        self.info: dict | None = None
        self.log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self._dir: str | None = None
        self._log_thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = READY_TIMEOUT_S) -> dict:
        """Launch and wait (on the calling thread) for the ready file; returns its content."""
        self._dir = tempfile.mkdtemp(prefix="likeness-core-")
        token_file = os.path.join(self._dir, "token")
        ready_file = os.path.join(self._dir, "ready.json")
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        cmd = serve_command(self.python, ready_file, token_file)
        self.log.append("$ " + " ".join(cmd))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, text=True, errors="replace", start_new_session=True, cwd=self._dir)
        self._log_thread = threading.Thread(target=self._read_log, args=(self.proc,), daemon=True,
                                            name="likeness-core-log")
        self._log_thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(ready_file):
                with open(ready_file, encoding="utf-8") as fh:
                    self.info = json.load(fh)
                return self.info
            if self.proc.poll() is not None:
                self._log_thread.join(1.0)
                raise CoreError(f"the core exited with code {self.proc.returncode} before it was ready:\n"
                                + self.log_tail(15))
            time.sleep(0.05)
        self.stop()
        raise CoreError(f"the core was not ready within {timeout:.0f} s:\n" + self.log_tail(15))

    def _read_log(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.log.append(line.rstrip("\n"))

    def log_text(self) -> str:
        return "\n".join(self.log) + "\n"

    def log_tail(self, lines: int) -> str:
        return "\n".join(list(self.log)[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; removes the token and ready files."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class CoreLink:
    """The add-on's connection to one core, local or remote, with limited automatic restarts.

    ``state`` is one of IDLE, STARTING, CONNECTED, FAILED, STOPPED; ``error``
    says why it FAILED. ``client`` is the connected ``bridge.client.Client``.
    ``on_frame``/``on_lost`` are passed to the client (called on its receiver thread).
    """

    def __init__(self, *, python: str = "", host: str = "", port: int = 0, token: str = "",
                 max_restarts: int = 2, on_lost=None, local: bool | None = None):
        self.python, self.host, self.port, self.token = python, host, port, token
        # local: start a core (python "" = look for one, see find_core_python); else connect to host:port
        self.local = bool(python) if local is None else local
        self.max_restarts = max_restarts
        self.restarts = 0
        self.on_lost = on_lost
        self.state = IDLE
        self.error = ""
        self.core: LocalCore | None = None
        self.client: Client | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def remote(self) -> bool:
        return not self.local

    def start(self) -> None:
        """Begin connecting on a background thread (returns at once)."""
        with self._lock:
            if self.state == STARTING:
                return
            self.state, self.error = STARTING, ""
        self._thread = threading.Thread(target=self._connect, daemon=True, name="likeness-core-start")
        self._thread.start()

    def wait(self, timeout: float | None = None) -> str:
        """Block until the start attempt ends (tests and the batch script); returns the state."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state

    def _connect(self) -> None:
        try:
            if self.local:
                python = find_core_python(self.python)
                check_interpreter(python)
                if self.core is not None:
                    self.core.stop()
                self.core = LocalCore(python)
                info = self.core.start()
                client = Client.connect(info["host"], int(info["port"]), info["token"], on_lost=self._lost)
            else:
                if not self.host or not self.port:
                    raise CoreError("set the core's host and port in the add-on preferences")
                client = Client.connect(self.host, int(self.port), self.token, on_lost=self._lost)
            client.status()  # health check: the core answers requests, not just the handshake
        except HandshakeError as exc:
            self._fail(f"the core refused the connection: {exc} (check the token)")
            return
        except (CoreError, OSError, TimeoutError, ValueError, KeyError) as exc:
            self._fail(str(exc) or type(exc).__name__)
            return
        except Exception as exc:  # any other failure must still reach the artist, not a dead thread
            self._fail(f"{type(exc).__name__}: {exc}")
            return
        with self._lock:
            self.client = client
            self.state = CONNECTED

    def _fail(self, message: str) -> None:
        if self.core is not None and not self.core.alive():
            tail = self.core.log_tail(10)
            if tail and tail not in message:
                message = f"{message}\n{tail}"
        with self._lock:
            self.state, self.error = FAILED, message

    def _lost(self, exc) -> None:
        with self._lock:
            if self.state == CONNECTED:
                self.state, self.error = FAILED, str(exc)
        if self.on_lost is not None:
            self.on_lost(exc)

    def core_died(self) -> bool:
        return self.local and self.core is not None and not self.core.alive()

    def try_restart(self) -> bool:
        """Restart a crashed local core if restarts are left; False when none are."""
        if not self.local or self.restarts >= self.max_restarts:
            return False
        self.restarts += 1
        self.start()
        return True

    def log_text(self) -> str:
        if self.core is None:
            return "(no local core was started: connected to a remote core)\n" if self.remote else ""
        return self.core.log_text()

    def stop(self) -> None:
        """Close the connection and stop a local core."""
        with self._lock:
            client, self.client = self.client, None
            self.state = STOPPED
        if client is not None:
            client.close()
        if self.core is not None:
            self.core.stop()
