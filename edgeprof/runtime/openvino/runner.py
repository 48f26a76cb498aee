"""OpenVINO's Runner: the CPU plugin's compiled model, inputs pre-bound as shared ov.Tensors, ``infer()`` timed.

Imports only openvino and numpy (never torch, never the converter), so it runs on a device with the runtime alone.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.runtime.base import Runner, check_file
from edgeprof.runtime.openvino.convert import first_line, import_openvino
from edgeprof.runtime.openvino.settings import OpenVinoSettings, compile_config
from edgeprof.spec.memory import check_fits, inputs_need_bytes


def read_model(core, path: str):
    """The model at ``path`` (IR .xml or ONNX), or a one-line InputError."""
    path = check_file(path)
    try:
        return core.read_model(str(path))
    except Exception as exc:
        raise InputError(f"OpenVINO cannot read {path}: {first_line(exc)}") from None


def input_shapes(model, shapes: dict | None) -> dict[str, tuple[int, ...]]:
    """Each input's concrete shape: its static shape, or the user's ``--shape`` for dynamic dimensions."""
    from edgeprof.runtime.onnxruntime.session import resolve_input_shape  # numpy-only helper, no onnxruntime import

    out = {}
    inputs = model.inputs
    for port in inputs:
        name = port.get_any_name()
        declared = [d.get_length() if d.is_static else "?" for d in port.get_partial_shape()]
        out[name] = resolve_input_shape(name, declared, shapes or {}, len(inputs))
    return out


def make_feeds(model, shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs of the model's shapes and types (floats ~ N(0, 1), ints 0..9), as onnxruntime's runner."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for port in model.inputs:
        name = port.get_any_name()
        dtype = np.dtype(port.get_element_type().to_dtype())
        shape = shapes[name]
        check_fits(inputs_need_bytes([(shape, 8 + dtype.itemsize)]), f"input {name} of shape {shape}")
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[name] = rng.integers(0, 10, shape).astype(dtype)
    return feeds


def compile_model(core, model, settings: OpenVinoSettings, perf_count: bool = False):
    try:
        return core.compile_model(model, settings.device, compile_config(settings, perf_count))
    except Exception as exc:
        raise RuntimeFailure(f"OpenVINO cannot compile the model for {settings.device}: {first_line(exc)}") from None


class OpenVinoRunner(Runner):
    """Times ``InferRequest.infer`` on inputs bound once with ``set_input_tensor(ov.Tensor(x, shared_memory=True))``."""

    def __init__(self, path: str, settings: dict | OpenVinoSettings, shapes: dict | None = None, seed: int = 0):
        settings = settings if isinstance(settings, OpenVinoSettings) else OpenVinoSettings(**settings)
        super().__init__(path, settings, shapes, seed)
        self.core = self.model = self.compiled = self.request = None
        self.feeds: dict[str, np.ndarray] = {}

    def load(self) -> dict:
        """Read and compile the model (reshaped to the fed shapes); its time and the RSS peak it caused."""
        ov = import_openvino()

        def read_and_compile():
            self.core = ov.Core()
            self.model = read_model(self.core, self.path)
            shapes = input_shapes(self.model, self.shapes)
            if self.model.is_dynamic():
                self.model.reshape({name: ov.PartialShape(list(s)) for name, s in shapes.items()})
            self.compiled = compile_model(self.core, self.model, self.settings)
            return shapes

        shapes, session_ms, peak = self._timed_load(read_and_compile)
        self.feeds = make_feeds(self.model, shapes, self.seed)
        return self._loaded(session_ms, peak)

    def _bind(self, request, feeds: dict[str, np.ndarray]) -> None:
        """Bind each array as the request's input tensor, sharing its memory: the caller keeps ``feeds`` alive and
        passes C-contiguous arrays of the input's type (so nothing here makes a temporary copy)."""
        ov = import_openvino()

        for name, value in feeds.items():
            request.set_tensor(name, ov.Tensor(value, shared_memory=True))

    def first_run(self) -> dict:
        """Bind the inputs (shared with numpy: no copy per run), then the first inference, timed alone."""
        from edgeprof.measure import memory

        memory.reset_peak()
        self.request = self.compiled.create_infer_request()
        self._bind(self.request, self.feeds)
        t0 = time.perf_counter()
        try:
            self.request.infer()
        except Exception as exc:
            raise RuntimeFailure(f"OpenVINO failed to run the model: {first_line(exc)}") from None
        first_ms = (time.perf_counter() - t0) * 1e3
        outputs = [list(self.request.get_output_tensor(i).shape) for i in range(len(self.compiled.outputs))]
        return {"first_run_ms": first_ms, "outputs": outputs}

    def run(self) -> None:
        self.request.infer(share_outputs=True)

    def run_fn(self):
        """The request's ``infer`` bound with no inputs to dispatch and outputs returned as views (no copy)."""
        return functools.partial(self.request.infer, share_outputs=True)

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One untimed inference on ``feeds`` (by input name) in a request of its own; outputs in model order."""
        if self.compiled is None:
            self.load()
        request = self.compiled.create_infer_request()
        types = {port.get_any_name(): np.dtype(port.get_element_type().to_dtype()) for port in self.model.inputs}
        unknown = sorted(set(feeds) - set(types))
        if unknown:
            raise InputError(f"the model has no input {', '.join(unknown)}; inputs: {', '.join(types)}")
        feeds = {k: np.ascontiguousarray(v, dtype=types[k]) for k, v in feeds.items()}  # kept alive: shared below
        self._bind(request, feeds)
        try:
            request.infer()
        except Exception as exc:
            raise RuntimeFailure(f"OpenVINO failed to run the model: {first_line(exc)}") from None
        return [np.array(request.get_output_tensor(i).data, copy=True) for i in range(len(self.compiled.outputs))]

    def threads_effective(self) -> int | None:
        """INFERENCE_NUM_THREADS read back from the compiled model (what the CPU plugin uses)."""
        if self.compiled is None:
            return None
        try:
            return int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        except Exception:
            return None

    def executed_ops(self, min_runs: int = 20, min_seconds: float = 0.5, max_runs: int = 1000) -> dict:
        """The nodes of OpenVINO's runtime model that executed, with their mean time from its performance counters
        over at least ``min_runs`` runs and ``min_seconds`` (at most ``max_runs``). A second compiled model with
        PERF_COUNT on, so the timed one is never profiled; its first run (lazy set-up) is left out."""
        compiled = compile_model(self.core, self.model, self.settings, perf_count=True)
        request = compiled.create_infer_request()
        self._bind(request, self.feeds)
        request.infer()
        from edgeprof.runtime.openvino.ops import profile_nodes

        nodes, runs = profile_nodes(compiled, self.model, request, min_runs, min_seconds, max_runs)
        return {"nodes": nodes, "runs": runs, "peak_in_use_mb": None, "arena_held_mb": None}

    def close(self) -> None:
        self.request = self.compiled = self.model = self.core = None
