"""LiteRT's Runner: one ``.tflite`` in an ``Interpreter(num_threads=...)``, inputs written once into the input
tensors, ``invoke()`` timed. Imports only ai_edge_litert and numpy (never torch)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.runtime.base import Runner, check_file
from edgeprof.runtime.litert.runtime import LiteRTSettings


def open_interpreter(path: str, settings: LiteRTSettings):
    """An allocated Interpreter with ``settings.threads`` threads, or a one-line InputError."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    check_file(path, "LiteRT model")
    resolver = (OpResolverType.AUTO if settings.delegate == "xnnpack"
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    try:
        interp = Interpreter(model_path=str(path), num_threads=settings.threads,
                             experimental_op_resolver_type=resolver)
        interp.allocate_tensors()
    except Exception as exc:  # the wrapper raises ValueError/RuntimeError with the runtime's message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot load LiteRT model {path}: {first[:300]}") from None
    return interp


METADATA_NAME = "edgeprof_io"


def io_layout(path: str) -> dict:
    """edgeprof's I/O description in a converted model's metadata (``edgeprof_io``): the ONNX names of its inputs,
    the axis permutations from the ONNX layout, and what it was converted from; empty for a ``.tflite`` edgeprof
    did not convert (its tensors are fed as they are, in order)."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        data = Path(path).read_bytes()
        model = schema.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            meta = model.Metadata(i)
            if (meta.Name() or b"").decode() == METADATA_NAME:
                return json.loads(model.Buffers(meta.Buffer()).DataAsNumpy().tobytes())
    except Exception:  # not a flatbuffer, or no such entry: nothing edgeprof wrote
        pass
    return {}


def _os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


class LiteRTRunner(Runner):
    """Times ``Interpreter.invoke`` (its native ``Invoke``) on inputs written once into the input tensors."""

    def __init__(self, path: str, settings: LiteRTSettings | dict, shapes: dict | None = None, seed: int = 0):
        settings = settings if isinstance(settings, LiteRTSettings) else LiteRTSettings(**settings)
        super().__init__(path, settings, shapes, seed)
        self.interp = None
        self.feeds: dict[int, np.ndarray] = {}
        self._threads_before = 0
        self._threads_started: int | None = None

    # -- set-up -------------------------------------------------------------------------------------------
    def load(self) -> dict:
        self._threads_before = _os_threads()
        self.interp, session_ms, peak = self._timed_load(lambda: open_interpreter(self.path, self.settings))
        rng = np.random.default_rng(self.seed)
        inputs = {}
        for detail in self.interp.get_input_details():
            shape = tuple(int(d) for d in detail["shape"])
            if self.shapes and any(tuple(v) != shape for v in self.shapes.values()):
                raise InputError(f"LiteRT model {Path(self.path).name} has the fixed input shape "
                                 f"{'x'.join(map(str, shape))}; it cannot take --shape")
            dtype = np.dtype(detail["dtype"])
            if np.issubdtype(dtype, np.floating):
                value = rng.standard_normal(shape).astype(dtype)
            else:
                value = rng.integers(0, 10, shape).astype(dtype)
            self.feeds[int(detail["index"])] = value
            inputs[detail["name"]] = list(shape)
        return self._loaded(session_ms, peak, inputs)

    def _bind(self) -> None:
        for index, value in self.feeds.items():
            self.interp.set_tensor(index, value)  # copied once into the interpreter's input tensor

    def first_run(self) -> dict:
        from edgeprof.measure import memory

        memory.reset_peak()
        self._bind()
        t0 = time.perf_counter()
        try:
            self.interp.invoke()
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RuntimeFailure(f"LiteRT failed to run the model: {first[:300]}") from None
        first_ms = (time.perf_counter() - t0) * 1e3
        # threads the interpreter started (XNNPACK's thread pool starts with the first delegate setup)
        self._threads_started = max(0, _os_threads() - self._threads_before)
        outputs = [list(int(d) for d in o["shape"]) for o in self.interp.get_output_details()]
        return {"first_run_ms": first_ms, "outputs": outputs}

    def run(self) -> None:
        self.interp.invoke()

    def run_fn(self):
        """The wrapper's native ``Invoke`` itself: ``Interpreter.invoke`` adds a Python-side safety check per call
        (no numpy view of an internal buffer is held; edgeprof holds none)."""
        native = getattr(self.interp, "_interpreter", None)
        return getattr(native, "Invoke", None) or self.interp.invoke

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One inference on ``feeds`` given in the ONNX model's layout and names (NCHW); outputs back in the ONNX
        layout. The pre-bound seeded inputs are written back afterwards."""
        if self.interp is None:
            self.interp = open_interpreter(self.path, self.settings)
        layout = io_layout(self.path)
        details = self.interp.get_input_details()
        names = [i["name"] for i in layout.get("inputs", [])] or [d["name"] for d in details]
        for k, detail in enumerate(details):
            name = names[k] if k < len(names) else detail["name"]
            if name not in feeds:
                if len(feeds) == len(details):
                    name = list(feeds)[k]
                else:
                    raise InputError(f"no input {name!r} given; inputs: {', '.join(names)}")
            value = np.asarray(feeds[name])
            perm = layout["inputs"][k].get("perm") if k < len(layout.get("inputs", [])) else None
            if perm:
                value = np.transpose(value, perm)
            self.interp.set_tensor(int(detail["index"]), np.ascontiguousarray(value, dtype=detail["dtype"]))
        self.interp.invoke()
        outs = []
        for k, detail in enumerate(self.interp.get_output_details()):
            value = np.array(self.interp.get_tensor(int(detail["index"])))
            perm = layout["outputs"][k].get("perm") if k < len(layout.get("outputs", [])) else None
            if perm:
                value = np.transpose(value, np.argsort(perm))
            outs.append(value)
        if self.feeds:
            self._bind()
        return outs

    def threads_effective(self) -> int | None:
        """LiteRT's Python API sets ``num_threads`` but cannot read it back: this counts the OS threads the
        interpreter started while loading and first running (XNNPACK's pool has threads - 1 workers) plus the
        calling thread. None before the first run."""
        return None if self._threads_started is None else 1 + self._threads_started

    # -- what ran ------------------------------------------------------------------------------------------
    def executed_ops(self, min_runs: int = 20, min_seconds: float = 0.5) -> dict:
        """The model's ops, who ran each (an XNNPACK partition or the built-in kernels) and the activation fused
        into each; no per-op times (the Python API has no op profiler), so ``runs`` is 0."""
        from edgeprof.runtime.litert.graph import executed_nodes, fused_activations

        ops = self.interp._get_ops_details()
        fused = fused_activations(Path(self.path).read_bytes())
        nodes = executed_nodes(ops, fused, self.settings.delegate)
        return {"nodes": nodes, "runs": 0, "peak_in_use_mb": None, "arena_held_mb": None,
                "threads_effective": self.threads_effective()}

    def close(self) -> None:
        self.interp = None
