"""ncnn's Runner: one ``ncnn.Net`` fed from input Mats made once, one extractor per inference (ncnn's way).

Built inside a worker process: imports ncnn and numpy only. The inputs' shapes come from the artifact's Input
layers (written there at conversion) or from ``--shape``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.runtime.base import Runner
from edgeprof.runtime.ncnn.convert import bin_path
from edgeprof.runtime.ncnn.param import ParamError, input_shapes, read_param


def load_net(path: str, settings):
    """An ``ncnn.Net`` with ``settings`` applied before loading (ncnn reads its options when layers are created),
    or a one-line InputError for files ncnn cannot load."""
    import ncnn

    net = ncnn.Net()
    opt = net.opt
    opt.num_threads = settings.threads
    opt.use_vulkan_compute = False
    opt.use_fp16_packed = opt.use_fp16_storage = opt.use_fp16_arithmetic = bool(settings.fp16)
    weights = bin_path(path)
    if not weights.is_file():
        raise InputError(f"ncnn weights not found: {weights} (an ncnn model is its .param and the .bin beside it)")
    if net.load_param(str(path)) != 0:
        raise InputError(f"ncnn cannot load {path}: not an ncnn .param, or a layer ncnn does not have")
    if net.load_model(str(weights)) != 0:
        raise InputError(f"ncnn cannot load the weights {weights} (truncated, or not the .param's weights)")
    return net


def resolve_shapes(path: str, names: list[str], shapes: dict | None) -> dict[str, tuple[int, ...]]:
    """The shape of each input blob (in ``names``' order): ``--shape NAME=...`` (NAME the ncnn blob, or none for
    a model with one input), else what the artifact's Input layer holds. Batch must be 1."""
    try:
        stored = input_shapes(read_param(path))
    except (OSError, ParamError) as exc:
        raise InputError(f"cannot read ncnn model {path}: {exc}") from None
    shapes = {k: tuple(v) for k, v in (shapes or {}).items()}
    out = {}
    for name in names:
        given = shapes.get(name)
        if given is None and len(names) == 1 and len(shapes) == 1:
            given = next(iter(shapes.values()))  # the one input, whatever the ONNX model called it
        shape = given or stored.get(name)
        if shape is None:
            raise InputError(f"ncnn model {path} does not store the shape of input {name!r}; give it with "
                             f"--shape {name}=1x3x640x640")
        if shape[0] != 1:
            raise InputError(f"ncnn runs one sample at a time; input {name!r} would have batch {shape[0]}")
        out[name] = tuple(int(d) for d in shape)
    return out


class NcnnRunner(Runner):
    """Times one inference: a new extractor on the loaded net, the pre-made input Mats, every output extracted."""

    def __init__(self, path: str, settings, shapes: dict | None = None, seed: int = 0):
        super().__init__(path, settings, shapes, seed)
        self.net = None
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.feeds: dict[str, np.ndarray] = {}
        self.mats: dict = {}

    def load(self) -> dict:
        """Load the net; its load time, the RSS peak it caused and the seeded inputs (as Mats, made once)."""
        import ncnn

        self.net, session_ms, peak = self._timed_load(lambda: load_net(self.path, self.settings))
        self.inputs, self.outputs = list(self.net.input_names()), list(self.net.output_names())
        rng = np.random.default_rng(self.seed)  # as onnxruntime's inputs: N(0, 1) float32, in input order
        self.feeds = {name: rng.standard_normal(shape).astype(np.float32)
                      for name, shape in resolve_shapes(self.path, self.inputs, self.shapes).items()}
        self.mats = {name: ncnn.Mat(x, batch_index=0).clone() for name, x in self.feeds.items()}
        return self._loaded(session_ms, peak)

    def _extract(self, mats: dict) -> list:
        ex = self.net.create_extractor()
        for name, mat in mats.items():
            if ex.input(name, mat) != 0:
                raise RuntimeFailure(f"ncnn refused input {name!r}")
        out = []
        for name in self.outputs:
            code, mat = ex.extract(name)
            if code != 0:
                raise RuntimeFailure(f"ncnn failed to compute output {name!r} (error {code})")
            out.append(mat)
        return out

    def first_run(self) -> dict:
        """The first inference, timed alone (ncnn allocates its blob and workspace memory here)."""
        from edgeprof.measure import memory

        memory.reset_peak()
        t0 = time.perf_counter()
        outputs = self._extract(self.mats)
        first_ms = (time.perf_counter() - t0) * 1e3
        return {"first_run_ms": first_ms, "outputs": [list(m.numpy(batch_index=0).shape) for m in outputs]}

    def run(self) -> None:
        self._extract(self.mats)

    def run_fn(self) -> Callable[[], None]:
        """One inference with everything looked up once: a new extractor, the bound input(s), the output(s)."""
        create = self.net.create_extractor
        if len(self.mats) == 1 and len(self.outputs) == 1:
            (name, mat), out = next(iter(self.mats.items())), self.outputs[0]

            def run_one() -> None:
                ex = create()
                ex.input(name, mat)
                ex.extract(out)

            return run_one
        mats, outs = list(self.mats.items()), list(self.outputs)

        def run_all() -> None:
            ex = create()
            for name, mat in mats:
                ex.input(name, mat)
            for name in outs:
                ex.extract(name)

        return run_all

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One untimed inference on ``feeds``, keyed by the ncnn input names (``in0``...) or, as edgeprof's ONNX
        files name them, in the ONNX model's input order (pnnx numbers the inputs in that order)."""
        import ncnn

        if set(feeds) == set(self.inputs):
            ordered = [(name, feeds[name]) for name in self.inputs]
        elif len(feeds) == len(self.inputs):
            ordered = list(zip(self.inputs, feeds.values(), strict=True))
        else:
            raise InputError(f"ncnn model has inputs {self.inputs}; got {list(feeds)}")
        mats = {}
        for name, x in ordered:
            x = np.ascontiguousarray(x, dtype=np.float32)
            if x.ndim < 2 or x.shape[0] != 1:
                raise InputError(f"ncnn input {name!r} must have batch 1 first, got shape {list(x.shape)}")
            mats[name] = ncnn.Mat(x, batch_index=0).clone()
        return [np.array(m.numpy(batch_index=0), dtype=np.float32, copy=True) for m in self._extract(mats)]

    def threads_effective(self) -> int | None:
        """The thread count the loaded net's options hold (ncnn's OpenMP regions use exactly that many)."""
        return int(self.net.opt.num_threads) if self.net is not None else None

    def executed_ops(self, min_runs: int = 20, min_seconds: float = 0.5) -> dict:
        """The layers ncnn runs, as loaded by ncnn (``net.layers()``: type and name) with each layer's params from
        the ``.param`` (pnnx wrote it after ncnn's fusion passes): a convolution with a fused activation is
        ``Convolution+Mish``. The pip wheel has no per-layer timer (ncnn's is a build option, NCNN_BENCHMARK), so
        no layer is timed: ``mean_us`` is None and ``runs`` 0. The Input layer computes nothing and is left out."""
        by_name = {layer.name: layer for layer in read_param(self.path)}
        nodes = []
        for loaded in self.net.layers():
            if loaded.type == "Input":
                continue
            layer = by_name.get(loaded.name)
            op_type = layer.op_type if layer is not None and layer.type == loaded.type else loaded.type
            nodes.append({"name": loaded.name, "op_type": op_type, "calls": 0, "mean_us": None,
                          "output_bytes": None, "mem_in_use_delta": None})
        return {"nodes": nodes, "runs": 0, "peak_in_use_mb": None, "arena_held_mb": None}

    def close(self) -> None:
        self.mats = {}
        if self.net is not None:
            self.net.clear()
        self.net = None
