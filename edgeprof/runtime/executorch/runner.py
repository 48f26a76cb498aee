"""ExecuTorch's Runner: one .pte loaded by executorch's portable_lib (the pip wheel's runtime), inputs set once on the
loaded method and ``execute()`` timed; per-op times from a second, ETDump-enabled load.

The pip wheel's Python runtime takes and returns torch tensors (its pybindings are built on ATen and link libtorch),
so this worker imports torch, through executorch's ``_C`` extension only: nothing of edgeprof's torch side
(``edgeprof.blocks``, ``edgeprof.convert``) is imported. Torch is imported before the memory baseline is taken, so
the memory figures are the model's, not torch's.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.runtime.base import Runner

# executorch ScalarType codes (TensorInfo.dtype()) -> numpy
_DTYPES = {0: np.uint8, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.int64, 5: np.float16, 6: np.float32,
           7: np.float64, 11: np.bool_}


def import_runtime():
    """executorch's runtime bindings (``portable_lib._C``) and torch, whose tensors they take; a one-line
    RuntimeFailure where they cannot be imported (e.g. torch missing: the pip wheel links libtorch)."""
    try:
        import torch  # noqa: F401  (the bindings convert torch tensors; import it before the extension)
        from executorch.extension.pybindings import _C as et
    except ImportError as exc:
        raise RuntimeFailure(f"executorch's runtime cannot be imported ({exc}); the pip wheel's Python runtime "
                             "takes torch tensors and links libtorch, so it needs torch installed") from None
    return et


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def read_graph_info(pte_path: str | Path) -> dict:
    """The conversion's record beside the .pte (``<name>.pte.json``: input names, delegation), or {}."""
    path = Path(str(pte_path) + ".json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class ExecuTorchRunner(Runner):
    """Times ``method.execute()`` on inputs set once with ``set_inputs`` (ExecuTorch copies them into the method's
    planned input buffers); outputs stay in the method's planned buffers (not cloned)."""

    def __init__(self, path, settings, shapes=None, seed=0):
        super().__init__(path, settings, shapes, seed)
        self.et = None
        self.method = None
        self.tensors: list = []
        self.feeds: dict[str, np.ndarray] = {}

    def _load_method(self, enable_etdump: bool = False):
        try:
            program = self.et._load_program(self.path, enable_etdump=enable_etdump,
                                            program_verification=self.et.Verification.InternalConsistency)
            return program, program.load_method("forward")
        except Exception as exc:  # the bindings raise RuntimeError with executorch's error code
            raise InputError(f"executorch cannot load {self.path}: {_first_line(exc)}") from None

    def load(self) -> dict:
        self.et = import_runtime()
        self.et._unsafe_reset_threadpool(self.settings.threads)  # process-wide: this worker runs one model
        (self.program, self.method), session_ms, peak = self._timed_load(self._load_method)
        self.feeds = self._make_inputs()
        return self._loaded(session_ms, peak)

    def _make_inputs(self) -> dict[str, np.ndarray]:
        """Seeded inputs of the method's shapes and types (floats ~ N(0, 1), ints 0..9), as onnxruntime's runner
        draws them; named as the ONNX file's inputs where the conversion recorded them."""
        meta = self.method.method_meta()
        names = read_graph_info(self.path).get("inputs") or [f"input_{i}" for i in range(meta.num_inputs())]
        rng = np.random.default_rng(self.seed)
        feeds = {}
        for i in range(meta.num_inputs()):
            info = meta.input_tensor_meta(i)
            shape, dtype = tuple(info.sizes()), _DTYPES.get(info.dtype())
            name = names[i] if i < len(names) else f"input_{i}"
            wanted = self.shapes.get(name) or (self.shapes.get("") if meta.num_inputs() == 1 else None)
            if wanted is not None and tuple(wanted) != shape:
                raise InputError(f"--shape for input {name!r}: {tuple(wanted)} differs from the .pte's static shape "
                                 f"{shape} (ExecuTorch programs here are exported with static shapes)")
            if dtype is None:
                raise InputError(f"input {name!r} has executorch dtype code {info.dtype()}, which edgeprof cannot feed")
            if np.issubdtype(dtype, np.floating):
                feeds[name] = rng.standard_normal(shape).astype(dtype)
            elif dtype is np.bool_:
                feeds[name] = rng.integers(0, 2, shape).astype(bool)
            else:
                feeds[name] = rng.integers(0, 10, shape).astype(dtype)
        return feeds

    def _bind(self, arrays: list[np.ndarray]) -> None:
        import torch

        self.tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
        self.method.set_inputs(self.tensors)

    def first_run(self) -> dict:
        from edgeprof.measure import memory

        memory.reset_peak()
        t0 = time.perf_counter()
        outputs = self._infer(list(self.feeds.values()))
        first_ms = (time.perf_counter() - t0) * 1e3
        self._bind(list(self.feeds.values()))
        return {"first_run_ms": first_ms, "outputs": [list(o.shape) for o in outputs]}

    def _infer(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        try:
            self._bind(arrays)
            self.method.execute()
            return [t.detach().numpy().copy() for t in self.method.get_outputs(clone_outputs=True)]
        except Exception as exc:
            raise RuntimeFailure(f"executorch failed to run the model: {_first_line(exc)}") from None

    def run(self) -> None:
        self.method.execute()

    def run_fn(self):
        """The bound ``execute`` of the loaded method: the timed loop calls executorch directly."""
        return self.method.execute

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One untimed inference on ``feeds`` (by input name, else in order); the timed inputs are bound again."""
        names = list(self.feeds)
        arrays = [feeds[n] for n in names] if all(n in feeds for n in names) else list(feeds.values())
        if len(arrays) != len(names):
            raise InputError(f"the model takes {len(names)} input(s) ({', '.join(names)}), got {len(arrays)}")
        outputs = self._infer(arrays)
        self._bind(list(self.feeds.values()))
        return outputs

    def threads_effective(self) -> int | None:
        """The size of executorch's thread pool, read back from the runtime (XNNPACK runs on it)."""
        if self.et is None:
            self.et = import_runtime()
        return int(self.et._threadpool_get_thread_count())

    def executed_ops(self, min_runs: int = 20, min_seconds: float = 0.5, max_runs: int = 500) -> dict:
        """The XNNPACK operators and portable kernels that ran, from ETDump, with their mean time over at least
        ``min_runs`` runs and ``min_seconds`` (at most ``max_runs``). Uses a second load of the program with ETDump
        on, so the timed method is never traced. XNNPACK names its operators after its own fusions (a ReLU
        clamped into the convolution leaves no separate operator)."""
        from edgeprof.runtime.executorch.ops import parse_etdump

        program, method = self._load_method(enable_etdump=True)
        method.set_inputs(self.tensors)
        method.execute()  # the delegate's lazy set-up: left out below
        runs = 0
        t0 = time.perf_counter()
        while runs < min_runs or (time.perf_counter() - t0 < min_seconds and runs < max_runs):
            method.execute()
            runs += 1
        with tempfile.TemporaryDirectory(prefix="edgeprof-etdump-") as tmp:
            out = os.path.join(tmp, "run.etdp")
            program.write_etdump_result_to_file(out)
            data = Path(out).read_bytes()
        nodes, kept = parse_etdump(data, skip_runs=1, scopes=read_graph_info(self.path).get("op_scopes"))
        return {
            "nodes": [{"name": n.name, "op_type": n.op_type, "calls": n.calls, "mean_us": n.mean_us,
                       "output_bytes": None, "mem_in_use_delta": None} for n in nodes],
            "runs": kept,
            "peak_in_use_mb": None,
            "arena_held_mb": None,
        }

    def close(self) -> None:
        self.method = None
        self.program = None
        self.tensors = []
