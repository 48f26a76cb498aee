"""onnxruntime sessions with recorded settings, and inputs fed from a model's declared shapes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.runtime.base import RuntimeSettings, check_file
from edgeprof.spec.memory import check_fits, inputs_need_bytes

OPT_LEVELS = ("disable", "basic", "extended", "all")

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


@dataclass(frozen=True)
class SessionSettings(RuntimeSettings):
    """The onnxruntime settings that move latency (``threads`` is the intra-op threads); every result row
    records them (``threads`` and the rest in ``runtime_settings``)."""

    inter_threads: int = 1
    opt_level: str = "all"
    spinning: bool = False
    arena: bool = True
    provider: str = "CPUExecutionProvider"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.opt_level not in OPT_LEVELS:
            raise InputError(f"unknown optimisation level {self.opt_level!r}; valid: {', '.join(OPT_LEVELS)}")
        if self.inter_threads < 1:
            raise InputError(f"inter-op threads must be at least 1, got {self.inter_threads}")

    def single_threaded(self) -> bool:
        return self.threads == 1 and self.inter_threads == 1

    def label(self) -> str:
        return f"{super().label()}, opt level {self.opt_level}"


OrtSettings = SessionSettings


def session_options(settings: SessionSettings, profile_prefix: str | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = settings.threads
    so.inter_op_num_threads = settings.inter_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[settings.opt_level]
    so.enable_cpu_mem_arena = settings.arena
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.spinning else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if settings.spinning else "0")
    so.log_severity_level = 3
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


def check_model_file(path: str | Path) -> Path:
    """A readable, non-empty file; onnxruntime itself judges whether it is a valid model."""
    return check_file(path, "ONNX file")


def create_session(path: str | Path, settings: SessionSettings, profile_prefix: str | None = None):
    """An InferenceSession, or a one-line InputError for a file onnxruntime cannot load."""
    import onnxruntime as ort

    path = check_model_file(path)
    if settings.provider not in ort.get_available_providers():
        raise InputError(
            f"execution provider {settings.provider!r} is not available; "
            f"available: {', '.join(ort.get_available_providers())}"
        )
    try:
        return ort.InferenceSession(
            str(path), session_options(settings, profile_prefix), providers=[settings.provider]
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot load ONNX model {path}: {first[:300]}") from None


def parse_shapes(items: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``["images=1x3x320x320"]`` -> ``{"images": (1, 3, 320, 320)}``; a bare ``1x3x320x320`` is keyed ``""``
    (the model's only input). ``["N=4"]`` with one number sets a named dynamic dimension."""
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items or []:
        name, _, dims = item.rpartition("=")
        if not re.fullmatch(r"\d+(x\d+)*", dims.strip()):
            raise InputError(f"--shape {item!r}: expected NAME=1x3x320x320, 1x3x320x320 or DIM=4")
        shape = tuple(int(d) for d in dims.strip().split("x"))
        if any(d < 1 for d in shape):
            raise InputError(f"--shape {item!r}: dimensions must be positive")
        shapes[name.strip()] = shape
    return shapes


def resolve_input_shape(name: str, declared: list, shapes: dict[str, tuple[int, ...]], n_inputs: int) -> tuple:
    """The concrete shape to feed: the user's shape for this input, else the declared one with named
    dynamic dimensions filled from ``shapes`` (``DIM=4``)."""
    if name in shapes:
        given = shapes[name]
    elif "" in shapes and n_inputs == 1:
        given = shapes[""]
    else:
        given = None
    if given is not None:
        if len(given) != len(declared):
            raise InputError(f"--shape for input {name!r} has {len(given)} dims, the model declares {declared}")
        for want, got in zip(declared, given, strict=True):
            if isinstance(want, int) and want != got:
                raise InputError(f"--shape for input {name!r}: {given} does not match the declared {declared}")
        return tuple(given)
    concrete = []
    for dim in declared:
        if isinstance(dim, int) and dim > 0:
            concrete.append(dim)
        elif isinstance(dim, str) and dim in shapes and len(shapes[dim]) == 1:
            concrete.append(shapes[dim][0])
        else:
            raise InputError(f"input {name!r} has a dynamic dimension {dim!r} in {declared}; give it with "
                             + _shape_hint(name, declared, dim))
    return tuple(concrete)


def _shape_hint(name: str, declared: list, dim) -> str:
    """``--shape images=1x3x640x640`` with the declared dims kept (a dynamic one: 1 first, else 640), and
    ``--shape batch=1`` when the dynamic dim has a name."""
    example = [str(d) if isinstance(d, int) and d > 0 else ("1" if i == 0 else "640") for i, d in enumerate(declared)]
    hint = f"--shape {name}={'x'.join(example)}"
    if isinstance(dim, str) and dim:
        hint += f" or --shape {dim}={example[declared.index(dim)]}"
    return hint


def check_shape_names(sessions: list, shapes: dict[str, tuple[int, ...]] | None) -> None:
    """Every ``--shape`` names an input or a named dynamic dimension of at least one of the models (a bare
    shape needs models with one input); otherwise a one-line error listing the models' inputs."""
    inputs = {inp.name: list(inp.shape) for session in sessions for inp in session.get_inputs()}
    dims = {d for shape in inputs.values() for d in shape if isinstance(d, str)}
    listing = ", ".join(f"{n} {shape}" for n, shape in inputs.items())
    for key in shapes or {}:
        if key == "" and any(len(s.get_inputs()) != 1 for s in sessions):
            raise InputError(f"--shape without a name needs a model with one input; name it: NAME=... with NAME "
                             f"one of the inputs: {listing}")
        if key and key not in inputs and key not in dims:
            raise InputError(f"--shape {key}=...: the model has no input or dynamic dimension {key!r}; "
                             f"inputs: {listing}")


def make_inputs(session, shapes: dict[str, tuple[int, ...]] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs of the model's declared shapes and types (floats ~ N(0, 1), ints 0..9)."""
    shapes = shapes or {}
    rng = np.random.default_rng(seed)
    inputs = session.get_inputs()
    feeds = {}
    for inp in inputs:
        shape = resolve_input_shape(inp.name, list(inp.shape), shapes, len(inputs))
        dtype = _ORT_DTYPES.get(inp.type)
        if dtype is None:
            raise InputError(f"input {inp.name!r} has type {inp.type}, which edgeprof cannot feed yet")
        check_fits(inputs_need_bytes([(shape, 8 + np.dtype(dtype).itemsize)]),  # the input and its float64 draw
                   f"input {inp.name} of shape {'x'.join(map(str, shape))}")
        if np.issubdtype(dtype, np.floating):
            feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype is np.bool_:
            feeds[inp.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[inp.name] = rng.integers(0, 10, shape).astype(dtype)
    return feeds


def run_once(session, feeds: dict[str, np.ndarray]):
    try:
        return session.run(None, feeds)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeFailure(f"onnxruntime failed to run the model: {first[:300]}") from None
