"""Fresh worker processes hosting one runtime's Runners, driven over JSON lines; and their parent-side proxies.

Run as ``python -m edgeprof.runtime.worker``: it reads one JSON request a line on stdin
(``{"method": "sample", "key": "3", "kwargs": {"count": 5}}``) and answers one JSON line on its original stdout
(``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``), in the order the requests came. A start
message (``init``) adds a model under its ``key``, naming the runtime (a built-in name or ``pkg.mod:Class``) in its
settings; the worker imports only that runtime, and never torch, so its peak-memory figures are its own (they mean
one model's only in a process that holds one). ``drop`` closes one model; ``quit`` ends the process. Anything the
runtime prints goes to stderr. With ``cache: cold`` in the settings, the runner evicts the caches before every
timed run (``Runner.sample``; one eviction buffer per process); ``cache_state`` reports its size and how many
evictions were made.

A process started with ``spin_s`` polls for its next request for up to that long before it sleeps: between the rounds
of a session its core stays busy instead of idling (a worker that slept between rounds timed them 1.5-2 times
noisier on the shared VM edgeprof was built on).

Parent side: ``WorkerProcess`` is one such process; ``WorkerRunner`` drives one model in it with a Runner's methods.
``WorkerRunner(path, settings)`` starts a process of its own (one model, one process: its memory figures are that
model's); ``WorkerProcess.runner(...)`` adds a model to a shared process (the sweep times all the models of one
comparison in one process per session: switching processes between bursts made a round's ratio several times
noisier on the shared VMs edgeprof was built on).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
from collections import deque

from edgeprof.errors import EdgeprofError, RuntimeFailure

BURST_MARK = "edgeprof-burst:"  # the line a shared worker writes to stderr before each burst of a round
SPIN_ENV = "EDGEPROF_WORKER_SPIN_S"  # set by WorkerProcess(spin_s=...) for the process it starts
_ALLOWED = {"load", "first_run", "warmup", "calibrate", "sample", "peak_run_mb", "executed_ops", "close", "parity",
            "threads_effective", "cache_state"}


def _start(runtime: str, path: str, settings: dict, shapes: dict | None = None, seed: int = 0):
    """The start message: the runtime to import (a built-in name or pkg.mod:Class), its settings, the model."""
    from edgeprof.runtime.registry import get_runtime

    rt = get_runtime(runtime)
    return rt.runner(path, rt.settings_from_dict(settings), shapes, seed)


def _error(exc: Exception) -> dict:
    """What a reply says of an exception: its message and the EdgeprofError kind the parent raises again (any other
    exception becomes a RuntimeFailure naming its type and first line)."""
    if isinstance(exc, EdgeprofError):
        return {"error": str(exc), "kind": type(exc).__name__}
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return {"error": f"{type(exc).__name__}: {text[:300]}", "kind": "RuntimeFailure"}


def _raised(reply: dict) -> EdgeprofError:
    """The exception a reply's ``error`` and ``kind`` stand for, on the parent's side (``_error``'s inverse)."""
    from edgeprof import errors
    from edgeprof.runtime.base import UnsupportedModel

    kinds = {"UnsupportedModel": UnsupportedModel}
    return kinds.get(reply.get("kind", ""), getattr(errors, reply.get("kind", ""), RuntimeFailure))(reply["error"])


def _handle(runners: dict, request: dict):
    """One request's result (raises what the runner raised)."""
    method, key = request.get("method"), request.get("key")
    if method == "init":
        runners[key] = _start(**request["kwargs"])
        return None
    if method == "round":  # several models' bursts back to back, no pause between them: per burst, samples or why not
        out = []
        for key_, count in request["kwargs"]["bursts"]:
            sys.stderr.write(f"{BURST_MARK}{key_}\n")  # untimed: says whose burst killed the process, if one does
            sys.stderr.flush()
            try:
                if key_ not in runners:
                    raise RuntimeFailure(f"worker: no model {key_!r} in this process")
                out.append({"samples": runners[key_].sample(count=count)})
            except Exception as exc:
                out.append(_error(exc))
        return out
    if method == "drop":
        runner = runners.pop(key, None)
        if runner is not None:
            runner.close()
        return None
    if method in _ALLOWED and key in runners:
        return getattr(runners[key], method)(**request.get("kwargs", {}))
    raise RuntimeFailure(f"worker: unknown or premature request {method!r}")


def _spin_until_readable(inp, seconds: float) -> None:
    """Poll ``inp`` without sleeping for up to ``seconds`` (the core this process runs on stays busy between the
    rounds of a session instead of idling)."""
    import time

    try:
        fd = inp.fileno()
    except (AttributeError, OSError, ValueError):
        return
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        if select.select([fd], [], [], 0)[0]:
            return


def serve(inp, out) -> None:
    runners: dict = {}
    try:
        spin = float(os.environ.get(SPIN_ENV, "0"))
    except ValueError:
        spin = 0.0
    while True:
        if spin > 0:
            _spin_until_readable(inp, spin)
        line = inp.readline()
        if not line:
            return
        line = line.strip()
        if not line:
            continue
        request = json.loads(line)
        if request.get("method") == "quit":
            out.write(json.dumps({"ok": True, "result": None}) + "\n")
            out.flush()
            return
        try:
            reply = {"ok": True, "result": _handle(runners, request)}
        except Exception as exc:  # report, never die silently: the parent records a failed row
            reply = {"ok": False, **_error(exc)}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def main() -> None:
    # Keep the protocol channel clean: our replies go to the original stdout, everything else to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin, proto)


class WorkerDied(RuntimeFailure):
    """A shared worker process died during a round: ``key`` is the model whose burst was running (None if unknown)."""

    def __init__(self, message: str, key: str | None):
        super().__init__(message)
        self.key = key


class WorkerProcess:
    """One ``python -m edgeprof.runtime.worker`` process. Requests are answered in order; a request's reply is read
    when its caller asks for it (``wait``), so start messages to many processes (or models) can be sent first and
    their interpreters start side by side. Thread-safe: one request at a time goes through the pipe."""

    def __init__(self, timeout: float = 600, spin_s: float = 0.0):
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        env[SPIN_ENV] = str(max(0.0, spin_s))
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
        self.last_burst: str | None = None  # the model whose burst a round began last
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()
        self._lock = threading.RLock()
        self._next = 0
        self._pending: deque[int] = deque()  # tickets sent, not yet read, in order
        self._replies: dict[int, dict] = {}  # read, not yet taken
        self._models = 0
        self._buf = bytearray()  # reply bytes read, not yet parsed

    def runner(self, path: str, settings, shapes: dict | None = None, seed: int = 0) -> WorkerRunner:
        """Add a model to this process: a WorkerRunner for it (its start message is sent now, read by ``ready``)."""
        self._models += 1
        return WorkerRunner(path, settings, shapes, seed, process=self, key=str(self._models))

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            if line.startswith(BURST_MARK):
                self.last_burst = line[len(BURST_MARK):].strip()
                continue
            self._stderr.append(line)
            del self._stderr[:-20]

    def send(self, method: str, key: str | None = None, **kwargs) -> int:
        """Send one request; its ticket for ``wait``."""
        with self._lock:
            ticket = self._next
            self._next += 1
            self._pending.append(ticket)
            try:
                self.proc.stdin.write(json.dumps({"method": method, "key": key, "kwargs": kwargs}) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass  # the worker is gone: the reply's absence says so
            return ticket

    def call(self, method: str, key: str | None = None, **kwargs):
        with self._lock:
            if self.proc.poll() is not None:
                raise RuntimeFailure(self._death_message())
            return self.wait(self.send(method, key, **kwargs))

    def round(self, bursts: list[tuple[str, int]]) -> list:
        """One round in one request: ``(key, count)`` bursts timed back to back in this process, so it never waits
        for the parent between them. Per burst, its samples (ms) or the EdgeprofError it raised. A process that
        dies in a round raises ``WorkerDied`` naming the model whose burst was running."""
        self.last_burst = None
        try:
            items = self.call("round", None, bursts=[[k, int(c)] for k, c in bursts])
        except RuntimeFailure:
            if self.proc.poll() is None:
                raise
            self._drain.join(timeout=2)  # its last lines, the burst mark among them
            raise WorkerDied(self._death_message(), self.last_burst) from None
        return [_raised(item) if "error" in item else item["samples"] for item in items]

    def wait(self, ticket: int):
        """The result of request ``ticket`` (the replies before it are read and kept for their callers)."""
        with self._lock:
            while ticket not in self._replies:
                if not self._pending:
                    raise RuntimeFailure(f"worker: no reply is pending for request {ticket}")
                self._replies[self._pending.popleft()] = self._receive()
            reply = self._replies.pop(ticket)
        if not reply["ok"]:
            raise _raised(reply)
        return reply["result"]

    def _receive(self) -> dict:
        """The next reply line. Read from the pipe's descriptor into a buffer of our own: several replies may come
        in one read (start messages sent together), and select() sees only what no buffer holds yet. A worker
        that does not answer within ``timeout`` is killed."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            try:
                ready, _, _ = select.select([fd], [], [], self.timeout)
                if not ready:
                    self.kill()
                    raise RuntimeFailure(f"worker process did not answer within {self.timeout:g} s; killed")
                chunk = os.read(fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self.proc.wait(timeout=5)
                raise RuntimeFailure(self._death_message())
            self._buf += chunk
        line, _, rest = self._buf.partition(b"\n")
        self._buf = bytearray(rest)
        return json.loads(line)

    def _death_message(self) -> str:
        code = self.proc.returncode
        tail = "".join(self._stderr).strip().splitlines()
        why = f": {tail[-1][:200]}" if tail else ""
        return f"worker process died (exit code {code}){why}"

    def close(self, wait: bool = True) -> threading.Thread | None:
        """Ask the process to end (killed if it does not within 5 s); with ``wait=False`` that happens in a
        background thread, returned at once for the caller to join."""
        if not wait:
            thread = threading.Thread(target=self.close, daemon=True)
            thread.start()
            return thread
        with self._lock:
            if self.proc.poll() is None:
                try:
                    self.call("quit")
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


class WorkerRunner:
    """Drives a Runner in a worker process; same methods. ``settings`` is a RuntimeSettings or its ``as_dict()``: its
    ``runtime`` names the runtime the worker imports. Without ``process``, a fresh process of its own (closed with
    it); with one, a model in that shared process (``close`` drops the model, the process stays)."""

    def __init__(self, path: str, settings, shapes: dict | None = None, seed: int = 0, timeout: float = 600,
                 process: WorkerProcess | None = None, key: str | None = None):
        settings = settings if isinstance(settings, dict) else settings.as_dict()
        self._own = process is None
        self.process = process if process is not None else WorkerProcess(timeout=timeout)
        self.key = key
        self.proc = self.process.proc
        # The init request is sent now and its reply read by the first call (or ready()), so a caller can
        # start many workers at once and let their interpreters start up side by side.
        self._init = self.process.send("init", key, runtime=settings.get("runtime") or "onnxruntime",
                                       path=str(path), settings=settings, shapes=shapes, seed=seed)

    def ready(self) -> None:
        """Wait until the worker has started and taken its model (raises if it could not)."""
        if self._init is not None:
            ticket, self._init = self._init, None
            self.process.wait(ticket)

    def _call(self, method: str, **kwargs):
        self.ready()
        return self.process.call(method, self.key, **kwargs)

    def __getattr__(self, method):
        if method not in _ALLOWED:
            raise AttributeError(method)
        return lambda **kwargs: self._call(method, **kwargs)

    def close(self, wait: bool = True) -> threading.Thread | None:
        """End the model: with a process of its own, the process (``wait=False``: in a background thread, returned);
        in a shared process, drop the model there."""
        if self._own:
            return self.process.close(wait=wait)
        if self.proc.poll() is None:
            try:
                self.ready()
                self.process.call("drop", self.key)
            except EdgeprofError:
                pass

    def kill(self) -> None:
        self.process.kill()


if __name__ == "__main__":
    main()
