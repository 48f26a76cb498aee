"""A fresh worker process hosting one runtime's Runner, driven over JSON lines; and its parent-side proxy.

Run as ``python -m edgeprof.runtime.worker``: it reads one JSON request a line on stdin
(``{"method": "sample", "kwargs": {"count": 5}}``) and answers one JSON line on its original stdout
(``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``). The start message (``init``) names
the runtime (a built-in name or ``pkg.mod:Class``) in its settings; the worker imports only that runtime,
and never torch, so its peak-memory figures are its own. Anything the runtime prints goes to stderr.
With ``cache: cold`` in the settings, the runner evicts the caches before every timed run (``Runner.sample``);
``cache_state`` reports the eviction buffer's size and how many evictions were made.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading

from edgeprof.errors import EdgeprofError, RuntimeFailure

_ALLOWED = {"load", "first_run", "warmup", "calibrate", "sample", "peak_run_mb", "executed_ops", "close", "parity",
            "threads_effective", "cache_state"}


def _start(runtime: str, path: str, settings: dict, shapes: dict | None = None, seed: int = 0):
    """The start message: the runtime to import (a built-in name or pkg.mod:Class), its settings, the model."""
    from edgeprof.runtime.registry import get_runtime

    rt = get_runtime(runtime)
    return rt.runner(path, rt.settings_from_dict(settings), shapes, seed)


def serve(inp, out) -> None:
    runner = None
    for line in inp:
        line = line.strip()
        if not line:
            continue
        request = json.loads(line)
        method = request.get("method")
        try:
            if method == "init":
                runner = _start(**request["kwargs"])
                result = None
            elif method == "quit":
                out.write(json.dumps({"ok": True, "result": None}) + "\n")
                out.flush()
                return
            elif method in _ALLOWED and runner is not None:
                result = getattr(runner, method)(**request.get("kwargs", {}))
            else:
                raise RuntimeFailure(f"worker: unknown or premature request {method!r}")
            reply = {"ok": True, "result": result}
        except EdgeprofError as exc:
            reply = {"ok": False, "error": str(exc), "kind": type(exc).__name__}
        except Exception as exc:  # report, never die silently: the parent records a failed row
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            reply = {"ok": False, "error": f"{type(exc).__name__}: {text[:300]}", "kind": "RuntimeFailure"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def main() -> None:
    # Keep the protocol channel clean: our replies go to the original stdout, everything else to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin, proto)


class WorkerRunner:
    """Drives a Runner in a fresh ``python -m edgeprof.runtime.worker`` process; same methods. ``settings`` is a
    RuntimeSettings or its ``as_dict()``: its ``runtime`` names the runtime the worker imports."""

    def __init__(self, path: str, settings, shapes: dict | None = None, seed: int = 0, timeout: float = 600):
        settings = settings if isinstance(settings, dict) else settings.as_dict()
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeprof.runtime.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # Ctrl-C goes to the parent, which then stops the workers itself
        )
        self._stderr: list[str] = []
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()
        # The init request is sent now and its reply read by the first call (or ready()), so a caller can
        # start many workers at once and let their interpreters start up side by side.
        self._init_pending = True
        self._send("init", runtime=settings.get("runtime") or "onnxruntime", path=str(path), settings=settings,
                   shapes=shapes, seed=seed)

    def ready(self) -> None:
        """Wait until the worker has started and taken its model (raises if it could not)."""
        if self._init_pending:
            self._init_pending = False
            self._receive()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-20]

    def _send(self, method: str, **kwargs) -> None:
        try:
            self.proc.stdin.write(json.dumps({"method": method, "kwargs": kwargs}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker is gone: the reply's absence says so

    def _call(self, method: str, **kwargs):
        self.ready()
        if self.proc.poll() is not None:
            raise RuntimeFailure(self._death_message())
        self._send(method, **kwargs)
        return self._receive()

    def _receive(self):
        try:
            # one request, one reply line: nothing is left buffered between replies, so select() on the
            # pipe tells whether the reply has come; a worker that hangs is killed after ``timeout``
            ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
            if not ready:
                self.kill()
                raise RuntimeFailure(f"worker process did not answer within {self.timeout:g} s; killed")
            line = self.proc.stdout.readline()
        except OSError:
            line = ""
        if not line:
            self.proc.wait(timeout=5)
            raise RuntimeFailure(self._death_message())
        reply = json.loads(line)
        if not reply["ok"]:
            from edgeprof import errors
            from edgeprof.runtime.base import UnsupportedModel

            kinds = {"UnsupportedModel": UnsupportedModel}
            raise kinds.get(reply.get("kind", ""), getattr(errors, reply.get("kind", ""), RuntimeFailure))(
                reply["error"])
        return reply["result"]

    def _death_message(self) -> str:
        code = self.proc.returncode
        tail = "".join(self._stderr).strip().splitlines()
        why = f": {tail[-1][:200]}" if tail else ""
        return f"worker process died (exit code {code}){why}"

    def __getattr__(self, method):
        if method not in _ALLOWED:
            raise AttributeError(method)
        return lambda **kwargs: self._call(method, **kwargs)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._call("quit")
            except EdgeprofError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    main()
