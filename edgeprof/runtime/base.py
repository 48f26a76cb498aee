"""The runtime seam: a ``Runtime`` (what runs a model artifact, its settings and checks) and the ``Runner`` it
builds inside a worker process (load, first run, warm-up, calibrate, timed samples, memory, executed ops).

Callers never branch on a runtime's name: they get a Runtime from ``edgeprof.runtime.registry.get_runtime``
and use only what is declared here. Adding a runtime is one folder (or one file) with a Runtime subclass,
its settings dataclass and its Runner; nothing else changes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np

from edgeprof.errors import EdgeprofError, InputError, RuntimeFailure

T = TypeVar("T")

# the clock of timed runs (a module name, so a test can watch when it is read)
_clock = time.perf_counter_ns

# A runtime's outputs pass parity against torch's when max|runtime - torch| <= PARITY_RTOL * max(1e-6, range of
# torch's output) on the export's seeded input (``<model>.ref.npz``); over it, the row is ``failed`` with the figure.
PARITY_RTOL = 1e-3


def ref_path(onnx_path: str | Path) -> Path:
    """Where torch's reference for a model is kept: ``<model>.ref.npz`` beside the ONNX file (arrays
    ``input:<name>`` and ``output:<i>``: the export's seeded input and torch's outputs on it)."""
    return Path(onnx_path).with_suffix(".ref.npz")


def parity_error(outputs: list, reference: list, rtol: float = PARITY_RTOL) -> tuple[float, float]:
    """(max abs error of ``outputs`` against ``reference``, the tolerance it is held to: ``rtol`` of the
    reference's range). Shapes that differ are an infinite error."""
    err, span = 0.0, 0.0
    for got, want in zip(outputs, reference, strict=False):
        got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        if got.size != want.size:
            return math.inf, 0.0
        err = max(err, float(np.max(np.abs(got.reshape(want.shape) - want))) if want.size else 0.0)
        span = max(span, float(np.ptp(want)) if want.size else 0.0)
    if len(outputs) != len(reference):
        return math.inf, 0.0
    return err, rtol * max(span, 1e-6)


@dataclass(frozen=True)
class RuntimeSettings:
    """Settings every runtime has (``threads``, the ``cache`` state between timed runs) and the runtime they belong
    to (a built-in name or an import path ``pkg.mod:Class``). A runtime's own settings subclass this and add their
    fields, all with defaults.

    ``cache``: ``warm`` times runs back to back; ``cold`` evicts the caches before every timed run, untimed, and
    times each run alone (``Runner.sample``, ``edgeprof.runtime.cache``). It is its own column, not part of
    ``runtime_settings``."""

    threads: int = 1
    runtime: str = "onnxruntime"
    cache: str = "warm"

    def __post_init__(self) -> None:
        from edgeprof.runtime.cache import check_cache_state

        if not isinstance(self.threads, int) or self.threads < 1:
            raise InputError(f"threads must be at least 1, got {self.threads}")
        check_cache_state(self.cache)

    def as_dict(self) -> dict:
        return asdict(self)

    def specific(self) -> dict:
        """The runtime-specific fields (everything but ``threads``, ``runtime`` and ``cache``), in declaration
        order."""
        return {k: v for k, v in self.as_dict().items() if k not in _COMMON_SETTINGS}

    def single_threaded(self) -> bool:
        """Whether the runtime computes on one thread (its on-CPU time is then its latency)."""
        return self.threads == 1

    def label(self) -> str:
        """A short human label for titles: ``onnxruntime, 1 thread(s), opt level all`` (``, cold cache`` when
        cold)."""
        return f"{self.runtime}, {self.threads} thread(s)" + (", cold cache" if self.cache == "cold" else "")

    def row(self) -> dict:
        """The result-row columns of these settings: ``threads``, ``runtime``, ``runtime_settings`` and ``cache``."""
        return {"threads": self.threads, "runtime": self.runtime, "runtime_settings": encode_settings(self.specific()),
                "cache": self.cache}


# the settings every runtime has, each a column of its own (the rest go in ``runtime_settings``)
_COMMON_SETTINGS = ("threads", "runtime", "cache")


def encode_settings(values: dict) -> str:
    """``{"opt_level": "all", "arena": True}`` -> ``opt_level=all;arena=true`` (stable: the order given)."""
    def text(v) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    return ";".join(f"{k}={text(v)}" for k, v in values.items())


def decode_settings(text: str) -> dict[str, str]:
    """The inverse of ``encode_settings``, values as strings."""
    out = {}
    for part in (text or "").split(";"):
        if part:
            key, _, value = part.partition("=")
            out[key] = value
    return out


def settings_columns(settings: dict) -> dict:
    """Row columns from a settings dict (``RuntimeSettings.as_dict()``); a dict without ``runtime`` is
    onnxruntime's, one without ``cache`` warm (older callers and files)."""
    rest = {k: v for k, v in settings.items() if k not in _COMMON_SETTINGS}
    return {"threads": settings.get("threads"), "runtime": settings.get("runtime") or "onnxruntime",
            "runtime_settings": encode_settings(rest), "cache": settings.get("cache") or "warm"}


@dataclass(frozen=True)
class ModelSource:
    """Where a model file came from, for converters that start from torch rather than ONNX (ExecuTorch,
    litert-torch, pnnx from TorchScript): the block spec (``BlockSpec.as_dict()``) and the seed its weights were
    made with. None for a model edgeprof did not build (an ONNX file you give)."""

    spec: dict
    seed: int = 0


@dataclass(frozen=True)
class Conversion:
    """A runtime's own artifact made from a model: its path and which converter (and version) made it."""

    path: Path
    converter: str = ""
    converter_version: str = ""


class UnsupportedModel(EdgeprofError):
    """The runtime or its converter cannot handle this model (an op it lacks, a converter error): a row with status
    ``unsupported`` and this one-line reason, never a crash; the sweep goes on."""

    exit_code = 2


class Runner:
    """One model loaded by one runtime, fed with seeded inputs and timed. Built inside the worker process.

    A runtime implements ``load``, ``first_run`` and ``run`` (one inference on pre-bound inputs); the warm-up,
    calibration and timed samples below are shared, and so is the cache state (``settings.cache``): with ``cold``,
    ``sample`` evicts the caches before every timed run, outside the timed interval, so every runtime gets it.
    ``executed_ops`` reports what ran, if the runtime can tell.
    """

    def __init__(self, path: str, settings: RuntimeSettings, shapes: dict | None = None, seed: int = 0):
        self.path = str(path)
        self.settings = settings
        self.shapes = {k: tuple(v) for k, v in (shapes or {}).items()}
        self.seed = seed
        self.inner_loops = 1
        self._base_rss: float | None = None
        self.cache = getattr(settings, "cache", "warm")
        self._evictor = None
        if self.cache == "cold":  # made (and written) now, before load's memory baseline: not in the RSS figures
            from edgeprof.runtime.cache import evictor

            self._evictor = evictor()

    # -- what a runtime implements ---------------------------------------------------------------------
    def load(self) -> dict:
        """Load the artifact; ``{"session_ms": ..., "peak_rss_session_mb": ..., "inputs": {name: shape}}``."""
        raise NotImplementedError

    def first_run(self) -> dict:
        """The first inference, timed alone (lazy set-up), then bind inputs and outputs for ``run``;
        ``{"first_run_ms": ..., "outputs": [shape, ...]}``."""
        raise NotImplementedError

    def run(self) -> None:
        """One inference on the pre-bound inputs."""
        raise NotImplementedError

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One untimed inference on the given inputs (by input name), returning the outputs in the model's order.
        Used for parity against torch's reference outputs (``<model>.ref.npz`` beside the ONNX file)."""
        raise NotImplementedError

    def threads_effective(self) -> int | None:
        """The thread count the runtime actually uses, read back from its own API where it can tell (None where
        it cannot): whether the ``threads`` setting took effect."""
        return None

    def parity_rtol(self) -> float:
        """The parity tolerance as a fraction of torch's output range: PARITY_RTOL, unless the runtime documents
        why its kernels differ more (MNN's Winograd convolution)."""
        return PARITY_RTOL

    def parity(self, ref: str) -> dict | None:
        """Run ``infer`` on the inputs of torch's reference ``ref`` (``<model>.ref.npz``) and compare:
        ``{"max_abs_err", "tol", "ok"}``; None when the runtime has no ``infer`` (no parity figure)."""
        data = np.load(ref)
        feeds = {k.split(":", 1)[1]: data[k] for k in data.files if k.startswith("input:")}
        outs = sorted((int(k.split(":", 1)[1]), data[k]) for k in data.files if k.startswith("output:"))
        try:
            got = self.infer(feeds)
        except NotImplementedError:
            return None
        err, tol = parity_error(list(got), [o for _, o in outs], self.parity_rtol())
        return {"max_abs_err": err if math.isfinite(err) else None, "tol": tol, "ok": bool(err <= tol)}

    def run_fn(self) -> Callable[[], None]:
        """What ``sample`` calls once per run: ``run`` itself, or a runtime's cheaper bound call."""
        return self.run

    def executed_ops(self, min_runs: int = 20, min_seconds: float = 0.5) -> dict:
        """The nodes that ran after the runtime's own graph optimisation, with their mean time::

            {"nodes": [{"name", "op_type", "calls", "mean_us", "output_bytes", "mem_in_use_delta"}, ...],
             "runs": profiled runs, "peak_in_use_mb": ..., "arena_held_mb": ...}

        profiled over at least ``min_runs`` runs and ``min_seconds``. A runtime without per-op times returns
        no nodes; memory figures it does not have are None."""
        return {"nodes": [], "runs": 0, "peak_in_use_mb": None, "arena_held_mb": None}

    def close(self) -> None:
        pass

    # -- shared -----------------------------------------------------------------------------------------
    def _start_memory(self) -> None:
        from edgeprof.measure import memory

        memory.reset_peak()
        self._base_rss = memory.rss_mib()

    def _peak_since_start(self) -> float | None:
        from edgeprof.measure import memory

        return _delta(memory.peak_rss_mib(), self._base_rss)

    def _timed_load(self, create: Callable[[], T]) -> tuple[T, float, float | None]:
        """Run ``create`` (the runtime's loading of the artifact) from a fresh RSS baseline: its result, how long
        it took (ms) and the RSS peak it caused (MiB over the baseline)."""
        self._start_memory()
        t0 = time.perf_counter()
        result = create()
        return result, (time.perf_counter() - t0) * 1e3, self._peak_since_start()

    def _loaded(self, session_ms: float, peak: float | None, inputs: dict | None = None) -> dict:
        """What ``load`` returns: the load time, its RSS peak and the fed inputs' shapes (default: ``self.feeds``)."""
        shapes = inputs if inputs is not None else {k: list(v.shape) for k, v in self.feeds.items()}
        return {"session_ms": session_ms, "peak_rss_session_mb": peak, "inputs": shapes}

    def warmup(self, seconds: float = 0.2, min_runs: int = 3) -> dict:
        """Run until ``seconds`` have passed and at least ``min_runs`` runs; return the per-run estimate (and, with a
        cold cache, ``evict_ms``: what one eviction takes, which every cold sample spends untimed)."""
        runs = 0
        t0 = time.perf_counter()
        try:
            while runs < min_runs or time.perf_counter() - t0 < seconds:
                self.run()
                runs += 1
        except Exception as exc:
            raise RuntimeFailure(f"{self.settings.runtime} failed during warm-up: "
                                 f"{(str(exc).splitlines() or [type(exc).__name__])[0][:300]}") from None
        out = {"runs": runs, "est_ms": (time.perf_counter() - t0) * 1e3 / runs}
        if self._evictor is not None:  # what one cold sample costs beyond its run: an eviction (untimed, but spent)
            out["evict_ms"] = self._evictor.probe_ms()
        return out

    def calibrate(self, min_sample_ms: float = 1.0) -> dict:
        """Choose how many runs one sample times, so a sample lasts at least ``min_sample_ms``.

        Blocks of a millisecond or more are timed one run per sample (so p90/p99 are per-run latencies);
        faster models are timed in loops so the timer and loop overhead stay small against the sample.
        With a cold cache every sample is one run (each run is timed alone, after an eviction).
        """
        t0 = time.perf_counter_ns()
        for _ in range(5):
            self.run()
        est_ms = (time.perf_counter_ns() - t0) / 5e6
        self.inner_loops = 1 if self._evictor is not None else max(1, math.ceil(min_sample_ms / max(est_ms, 1e-6)))
        return {"inner_loops": self.inner_loops, "est_ms": est_ms}

    def sample(self, count: int = 1) -> list[float]:
        """``count`` samples, each the mean per-run time in ms of ``inner_loops`` back-to-back runs; with a cold
        cache, each one run timed alone right after the caches were evicted (the eviction is not timed)."""
        run = self.run_fn()
        clock = _clock
        out = []
        evictor = self._evictor
        if evictor is not None:
            for _ in range(count):
                evictor.evict()
                t0 = clock()
                run()
                out.append((clock() - t0) / 1e6)
            return out
        loops = range(self.inner_loops)
        for _ in range(count):
            t0 = clock()
            for _ in loops:
                run()
            out.append((clock() - t0) / 1e6 / self.inner_loops)
        return out

    def cache_state(self) -> dict:
        """The cache state this runner times in: ``{"cache", "evict_bytes", "evictions", "mean_evict_ms"}`` (the
        eviction buffer's size, how many evictions ``sample`` made, their mean untimed cost; 0/None when warm)."""
        ev = self._evictor
        return {"cache": self.cache, "evict_bytes": ev.nbytes if ev else 0, "evictions": ev.evictions if ev else 0,
                "mean_evict_ms": ev.mean_evict_ms() if ev else None}

    def peak_run_mb(self) -> float | None:
        """Peak RSS over the pre-load baseline since the first run began (MiB)."""
        return self._peak_since_start()


def _delta(peak: float | None, base: float | None) -> float | None:
    if peak is None or base is None:
        return None
    return max(0.0, peak - base)


class Runtime:
    """An inference runtime. Subclasses set the class attributes and implement ``version`` and ``runner``.

    ``spec`` is how the runtime was asked for (its built-in name or an import path); the settings it makes
    carry it, so a worker process imports the same runtime.
    """

    name: ClassVar[str] = ""
    extra: ClassVar[str] = ""  # the pip extra that installs it: pip install 'edgeprof[<extra>]'
    artifact_suffix: ClassVar[str] = ".onnx"
    settings_class: ClassVar[type[RuntimeSettings]] = RuntimeSettings
    per_op_times: ClassVar[bool] = False  # executed_ops gives per-node times
    per_op_source: ClassVar[str] = ""  # where those times come from, e.g. "onnxruntime profiler" (per_op_source)
    fusion_info: ClassVar[bool] = False  # executed_ops gives the nodes that ran after fusion
    # True when the runtime's op types are not the activation table's (it decomposes activations into its own
    # primitives): the activation's nodes are then those beyond the reference block's (by op type)
    act_nodes_beyond_reference: ClassVar[bool] = False

    def __init__(self, spec: str | None = None):
        self.spec = spec or self.name

    # -- identity ---------------------------------------------------------------------------------------
    @classmethod
    def version(cls) -> str:
        return ""

    @classmethod
    def available(cls) -> bool:
        return True

    def describe(self) -> dict:
        return {"name": self.name, "spec": self.spec, "version": self.version(),
                "per_op_times": self.per_op_times, "fusion_info": self.fusion_info}

    # -- settings ---------------------------------------------------------------------------------------
    def settings(self, **values) -> RuntimeSettings:
        """This runtime's settings from ``values``; a field it does not have is a one-line InputError."""
        known = [f.name for f in fields(self.settings_class) if f.name != "runtime"]
        unknown = [k for k in values if k not in known]
        if unknown:
            raise InputError(f"runtime {self.name} has no setting {', '.join(unknown)}; its settings: "
                             f"{', '.join(known)}")
        return self.settings_class(**values, runtime=self.spec)

    def settings_from_dict(self, values: dict) -> RuntimeSettings:
        """Settings from a stored dict (a manifest, a worker's start message); unknown keys are ignored."""
        known = {f.name for f in fields(self.settings_class)} - {"runtime"}
        return self.settings_class(**{k: v for k, v in values.items() if k in known}, runtime=self.spec)

    # -- models -----------------------------------------------------------------------------------------
    def convert(self, onnx_path: str | Path, out_dir: str | Path, source: ModelSource | None = None) -> Conversion:
        """The artifact this runtime loads, made from an ONNX file (identity for runtimes that read ONNX) by the
        runtime's standard conversion path; a runtime with its own format caches it by content in ``out_dir``
        (hash of the ONNX bytes, the converter's version and options). Runs in the parent, on the build side: it
        may import the runtime's converter (and torch, for converters that start from ``source``), never at
        module import. A model the converter or runtime cannot handle raises ``UnsupportedModel`` with the
        converter's one-line reason. The pool converts only files that do not already end in
        ``artifact_suffix``, so a bundle's converted artifacts are loaded as they are."""
        return Conversion(Path(onnx_path))

    def artifact_files(self, path: str | Path) -> list[Path]:
        """Every file the artifact at ``path`` needs to load (a bundle copies them all): the file itself by
        default; a runtime whose artifact is several files (ncnn's .param + .bin) lists them, ``path`` first."""
        return [Path(path)]

    def per_op_label(self, nodes: list[dict]) -> str:
        """The ``per_op_source`` column: where the per-op times of ``nodes`` came from, or that there are none."""
        if any(n.get("mean_us") is not None for n in nodes or []):
            return self.per_op_source or f"{self.name} per-op times"
        return "none" if self.per_op_times else f"none ({self.name} offers no per-op times)"

    def validate(self, path: str | Path, settings: RuntimeSettings, shapes: dict | None = None) -> None:
        """Parent-side check before any measuring: a missing, empty or corrupt file, or inputs that cannot be
        fed (unfed dynamic dims), is a one-line InputError."""
        check_file(path)

    def runner(self, path: str, settings: RuntimeSettings, shapes: dict | None = None, seed: int = 0) -> Runner:
        raise NotImplementedError


def check_file(path: str | Path, what: str = "model file") -> Path:
    """A readable, non-empty file; the runtime itself judges whether it is a valid model."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{what} is empty: {path}")
    return path
