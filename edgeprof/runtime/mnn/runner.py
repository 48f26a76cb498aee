"""MNN's Runner: one session at the configured threads, its input copied in once, ``runSession`` timed; per-op
times from ``runSessionWithCallBackInfo``. Imports MNN and numpy only (never torch, never MNN.tools)."""

from __future__ import annotations

import functools
import json
import re
import struct
import time
from pathlib import Path

import numpy as np

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.runtime.base import Runner, check_file
from edgeprof.runtime.mnn.convert import import_mnn
from edgeprof.runtime.onnxruntime.session import resolve_input_shape

SESSION_INFO_THREAD_NUMBER = 4  # MNN::Interpreter::SessionInfoCode THREAD_NUMBER
HINT_WINOGRAD_MEMORY_LEVEL = 3  # MNN::Interpreter::HintMode WINOGRAD_MEMORY_LEVEL: 0 turns Winograd off


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


class MnnRunner(Runner):
    """Times ``interpreter.runSession(session)`` on an input copied into the session's tensor once."""

    def parity_rtol(self) -> float:
        from edgeprof.runtime.mnn.runtime import MnnRuntime

        return MnnRuntime.parity_tolerance(self.settings)

    def __init__(self, path, settings, shapes=None, seed=0):
        super().__init__(path, settings, shapes, seed)
        self.interpreter = None
        self.session = None
        self.feeds: dict[str, np.ndarray] = {}

    # -- set-up -------------------------------------------------------------------------------------------
    def _config(self) -> dict:
        return {"numThread": self.settings.threads, "precision": self.settings.precision, "backend": "CPU"}

    def _create(self):
        MNN = import_mnn()

        check_file(self.path, "MNN model")
        try:
            interpreter = MNN.Interpreter(self.path)
        except Exception as exc:
            raise InputError(f"cannot load MNN model {self.path}: {_first_line(exc)}") from None
        if not self.settings.winograd:
            interpreter.setSessionHint(HINT_WINOGRAD_MEMORY_LEVEL, 0)
        session = interpreter.createSession(self._config())
        if session is None:
            raise InputError(f"MNN cannot create a session for {self.path}")
        return interpreter, session

    def load(self) -> dict:
        (self.interpreter, self.session), session_ms, peak = self._timed_load(self._create)
        self.feeds = self._make_inputs()
        return self._loaded(session_ms, peak)

    def _inputs(self) -> dict:
        return dict(self.interpreter.getSessionInputAll(self.session))

    def _make_inputs(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        inputs = self._inputs()
        feeds = {}
        resized = False
        for name, tensor in inputs.items():
            # MNN gives a dynamic dimension a size (1) when it creates the session, so a --shape for this input
            # is taken as given (MNN resizes to it); without one, the session's shape is fed
            given = self.shapes.get(name, self.shapes.get("") if len(inputs) == 1 else None)
            declared = [int(d) if int(d) > 0 else "?" for d in tensor.getShape()]
            shape = tuple(given) if given is not None else resolve_input_shape(name, declared, {}, len(inputs))
            if len(shape) != len(declared):
                raise InputError(f"--shape for input {name!r} has {len(shape)} dims, the model declares "
                                 f"{len(declared)}")
            if list(shape) != list(tensor.getShape()):
                self.interpreter.resizeTensor(tensor, tuple(shape))
                resized = True
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
        if resized:
            self.interpreter.resizeSession(self.session)
        return feeds

    def _copy_in(self, feeds: dict[str, np.ndarray]) -> None:
        MNN = import_mnn()

        inputs = self._inputs()
        unknown = [k for k in feeds if k not in inputs]
        if unknown:
            raise InputError(f"the MNN model has no input {unknown[0]!r}; inputs: {', '.join(inputs)}")
        for name, value in feeds.items():
            value = np.ascontiguousarray(value, dtype=np.float32)
            if list(value.shape) != list(inputs[name].getShape()):
                self.interpreter.resizeTensor(inputs[name], tuple(value.shape))
                self.interpreter.resizeSession(self.session)
                inputs = self._inputs()
            host = MNN.Tensor(tuple(value.shape), MNN.Halide_Type_Float, value, MNN.Tensor_DimensionType_Caffe)
            inputs[name].copyFrom(host)

    def _outputs(self) -> list[np.ndarray]:
        MNN = import_mnn()

        outs = []
        for _name, tensor in self.interpreter.getSessionOutputAll(self.session).items():
            shape = tuple(tensor.getShape())
            host = MNN.Tensor(shape, MNN.Halide_Type_Float, np.zeros(shape, np.float32),
                              MNN.Tensor_DimensionType_Caffe)
            tensor.copyToHostTensor(host)
            outs.append(np.array(host.getNumpyData(), dtype=np.float32).reshape(shape))
        return outs

    def _run_checked(self) -> None:
        code = self.interpreter.runSession(self.session)
        if code not in (0, None):
            raise RuntimeFailure(f"MNN failed to run {Path(self.path).name}: error code {code}")

    def first_run(self) -> dict:
        from edgeprof.measure import memory

        memory.reset_peak()
        self._copy_in(self.feeds)  # the input is copied into the session tensor once; run() reuses it
        t0 = time.perf_counter()
        self._run_checked()
        first_ms = (time.perf_counter() - t0) * 1e3
        return {"first_run_ms": first_ms, "outputs": [list(o.shape) for o in self._outputs()]}

    def run(self) -> None:
        self.interpreter.runSession(self.session)

    def run_fn(self):
        """``runSession`` bound to the session: the timed loop calls MNN, not a Python method."""
        return functools.partial(self.interpreter.runSession, self.session)

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One untimed inference on ``feeds`` (the bound input is restored afterwards)."""
        if self.session is None:
            self.load()
        self._copy_in(feeds)
        self._run_checked()
        outputs = self._outputs()
        if self.feeds:
            self._copy_in(self.feeds)
        return outputs

    def threads_effective(self) -> int | None:
        """The session's thread count read back from MNN (``getSessionInfo`` THREAD_NUMBER; the Python binding
        hands MNN's int back as the bits of a float)."""
        if self.session is None:
            return None
        try:
            raw = self.interpreter.getSessionInfo(self.session, SESSION_INFO_THREAD_NUMBER)
        except Exception:
            return None
        if isinstance(raw, float):
            as_int = struct.unpack("<i", struct.pack("<f", raw))[0]
            return as_int if 0 < as_int < 4096 else (int(raw) if raw >= 1 and raw == int(raw) else None)
        return int(raw) if raw else None

    # -- per-op figures ---------------------------------------------------------------------------------
    def graph_ops(self) -> dict[str, dict]:
        """The converted graph's ops by name: ``{"type", "main", "onnx_op", "label", "origin"}``, read from the
        .mnn by MNN's converter in this process (``_tools``; MNN.tools is never imported), with the ONNX node each
        came from when the conversion wrote ``<model>.origin.json`` beside it."""
        from edgeprof.runtime.mnn.convert import mnn_graph, origin_path
        from edgeprof.runtime.mnn.graph import mnn_label, onnx_op_type

        origin = {}
        sidecar = origin_path(self.path)
        if sidecar.is_file():
            try:
                origin = json.loads(sidecar.read_text())
            except ValueError:
                origin = {}
        out = {}
        for op in mnn_graph(self.path):
            source = origin.get(op["name"])
            out[op["name"]] = {**op, "onnx_op": onnx_op_type(op), "label": mnn_label(op),
                               "origin": source[0] if source else ""}
        return out

    def executed_ops(self, min_runs: int = 20, min_seconds: float = 0.5, max_runs: int = 1000) -> dict:
        """The ops MNN ran, timed per op by ``runSessionWithCallBackInfo`` (a wall clock between each op's
        before and after callbacks) on the same session, over at least ``min_runs`` runs and ``min_seconds``
        (first run left out). Op types are ONNX's names for what each MNN op computes (``Conv+Relu`` where the
        converter merged the ReLU into the convolution); the name is the ONNX node it came from and MNN's own
        op, e.g. ``/act/Softplus:UnaryOp3 [UnaryOp EXP]``."""
        graph = self.graph_ops()
        order: list[str] = []
        kinds: dict[str, str] = {}
        total: dict[str, float] = {}
        calls: dict[str, int] = {}
        clock = time.perf_counter
        started: dict[str, float] = {}
        counting = [False]

        def before(_tensors, info):
            started[info.getName()] = clock()
            return True

        def after(_tensors, info):
            name = info.getName()
            t = clock() - started.pop(name, clock())
            if name not in kinds:
                order.append(name)
                kinds[name] = info.getType()
                total[name] = 0.0
                calls[name] = 0
            if counting[0]:
                total[name] += t * 1e6
                calls[name] += 1
            return True

        run = self.interpreter.runSessionWithCallBackInfo
        run(self.session, before, after)  # the first profiled run carries set-up: left out
        counting[0] = True
        runs = 0
        t0 = clock()
        while runs < min_runs or (clock() - t0 < min_seconds and runs < max_runs):
            run(self.session, before, after)
            runs += 1
        nodes = []
        for name in order:
            op = _graph_op(graph, name, kinds[name])
            nodes.append({"name": _node_name(name, op), "op_type": op["onnx_op"], "calls": calls[name],
                          "mean_us": total[name] / calls[name] if calls[name] else 0.0,
                          "output_bytes": None, "mem_in_use_delta": None})
        return {"nodes": nodes, "runs": runs, "peak_in_use_mb": None, "arena_held_mb": None}

    def close(self) -> None:
        self.session = None
        self.interpreter = None


def _graph_op(graph: dict[str, dict], name: str, kind: str) -> dict:
    """The converted graph's op an executed op belongs to. MNN's geometry turns layout and broadcast copies into
    ``Raster`` ops named ``<op>_raster_<i>`` (the inputs of ``<op>``): those keep their own type and take the
    origin of ``<op>``."""
    if name in graph:
        return graph[name]
    base = re.sub(r"_raster_\d+$", "", name)
    origin = graph[base]["origin"] if base in graph else ""
    return {"type": kind, "main": {}, "onnx_op": kind, "label": kind, "origin": origin}


def _node_name(name: str, op: dict) -> str:
    """``<ONNX node>:<MNN op name> [<MNN op>]``; MNN names an op after its output tensor, so where the conversion
    left no origin map the ONNX scope is the tensor name without its ``_output_N`` suffix."""
    origin = op.get("origin") or ""
    if not origin and "_output_" in name:
        origin = name.rsplit("_output_", 1)[0]
    prefix = f"{origin}:" if origin and origin != name else ""
    return f"{prefix}{name} [{op['label']}]"
