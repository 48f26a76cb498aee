"""Predict an ONNX model's latency on this host: its kernels as the runtime runs them, each predicted, summed.

``predict_model(path)`` splits the model into the kernels of onnxruntime's optimised graph (``kernels``), predicts
each with its kind's model (``fit``) and adds what one run costs beyond its kernels (the probe's overhead). The
interval sums each kernel's bounds. ``predict_acts`` does that for the model with each activation swapped in
(``edgeprof.swap``) and, with ``measure``, measures them all interleaved beside the prediction.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeprof.errors import InputError
from edgeprof.predict.kernels import split_kernels


@dataclass
class KernelPrediction:
    name: str
    kind: str
    op_type: str
    fused: str
    ms: float
    low_ms: float
    high_ms: float
    predicted_by: str  # the kind whose model predicted it (another kind when this one was never collected)
    macs: int = 0
    out_elements: int = 0


@dataclass
class Prediction:
    """A model's predicted latency, its interval and its breakdown; ``measured_ms`` when it was also measured."""

    model: str
    predicted_ms: float
    low_ms: float
    high_ms: float
    overhead_ms: float
    kernels: list[KernelPrediction]
    convs: int
    activations_fused: int
    predict_s: float
    act: str = ""
    measured_ms: float | None = None
    measured_ci: tuple[float, float] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def error_pct(self) -> float | None:
        if self.measured_ms is None or not self.measured_ms > 0:
            return None
        return (self.predicted_ms / self.measured_ms - 1) * 100

    def by_kind(self) -> list[dict]:
        """The breakdown by kernel kind, largest first: count, ms, share of the prediction, what was fused."""
        groups: dict[str, dict] = {}
        for k in self.kernels:
            g = groups.setdefault(k.kind, {"kind": k.kind, "count": 0, "ms": 0.0, "fused": k.fused,
                                           "predicted_by": set()})
            g["count"] += 1
            g["ms"] += k.ms
            g["predicted_by"].add(k.predicted_by)
        out = []
        for g in sorted(groups.values(), key=lambda g: -g["ms"]):
            by = sorted(g.pop("predicted_by"))
            g["predicted_by"] = "" if by == [g["kind"]] else ",".join(by)
            g["share"] = g["ms"] / self.predicted_ms if self.predicted_ms > 0 else math.nan
            out.append(g)
        return out

    def to_dict(self, kernels: bool = True) -> dict:
        data = {"model": self.model, "act": self.act or None, "predicted_ms": self.predicted_ms,
                "interval_ms": [self.low_ms, self.high_ms], "overhead_ms": self.overhead_ms,
                "measured_ms": self.measured_ms,
                "measured_ci95_ms": list(self.measured_ci) if self.measured_ci else None,
                "error_pct": self.error_pct, "convs": self.convs, "activations_fused": self.activations_fused,
                "predict_s": self.predict_s, "by_kind": self.by_kind(), "warnings": self.warnings}
        if kernels:
            data["kernels"] = [vars(k) for k in self.kernels]
        return data


def _resolve(predictor, settings, force: bool):
    """The predictor to use: a Predictor as is, a path, or this host's default; with the differences ``force``
    let through."""
    from edgeprof.predict.fit import Predictor, load_predictor
    from edgeprof.predict.store import default_predictor, identity_of

    if isinstance(predictor, Predictor):
        return predictor, []
    if settings is None:
        from edgeprof.runtime.onnxruntime.session import SessionSettings

        settings = SessionSettings()
    path = Path(predictor) if predictor is not None else default_predictor(settings)
    return load_predictor(path, identity_of(settings), force=force)


def settings_of(predictor) -> object:
    """The runtime settings a predictor was fitted with (its threads and optimisation settings)."""
    from edgeprof.runtime.base import decode_settings
    from edgeprof.runtime.onnxruntime.session import SessionSettings

    ident = predictor.identity
    raw = decode_settings(ident.get("runtime_settings", ""))
    kwargs = {}
    for key, value in raw.items():
        if key in ("inter_threads",):
            kwargs[key] = int(value)
        elif key in ("spinning", "arena"):
            kwargs[key] = value == "true"
        elif key in ("opt_level", "provider"):
            kwargs[key] = value
    return SessionSettings(threads=int(ident.get("threads") or 1), **kwargs)


def predict_model(path: str | Path, predictor=None, force: bool = False, settings=None) -> Prediction:
    """The predicted latency of the ONNX model ``path`` with its breakdown.

    ``predictor``: a ``Predictor``, a path to one, or None for this host's default (``edgeprof predict collect``
    fits it). A predictor of another host, runtime or runtime version is refused unless ``force``.
    """
    t0 = time.perf_counter()
    pred, diffs = _resolve(predictor, settings, force)
    graph = split_kernels(path, settings_of(pred))
    unknown = [k.name for k in graph.kernels if not k.shapes_known]
    values = pred.predict(graph.kernels)
    kernels = [KernelPrediction(k.name, k.kind, k.op_type, k.fused, ms, lo, hi, used, k.macs, k.out_elements)
               for k, (ms, lo, hi, used) in zip(graph.kernels, values, strict=True)]
    total = pred.overhead_ms + sum(k.ms for k in kernels)
    low = pred.overhead_ms + sum(k.low_ms for k in kernels)
    high = pred.overhead_ms + sum(k.high_ms for k in kernels)
    warnings = [f"forced: the predictor belongs to another {d}" for d in diffs]
    if unknown:
        warnings.append(f"{len(unknown)} kernels with shapes not known here (predicted from partial features), e.g. "
                        f"{unknown[0]}")
    fallback = sorted({k.kind for k in kernels if k.predicted_by != k.kind})
    if fallback:
        warnings.append(f"kinds never collected, predicted by another kind's model: {', '.join(fallback)}")
    return Prediction(str(path), total, low, high, pred.overhead_ms, kernels, graph.convs, graph.activations_fused,
                      time.perf_counter() - t0, warnings=warnings)


def predict_acts(path: str | Path, acts: list[str] | None = None, predictor=None, force: bool = False,
                 measure: bool = False, measure_options=None, on_progress=None) -> list[Prediction]:
    """Predictions of ``path`` as it is and with each activation of ``acts`` swapped in (``edgeprof.swap``); with
    ``measure``, every variant is also measured (interleaved, fresh worker processes) and ``measured_ms`` set."""
    from edgeprof.errors import EdgeprofError

    pred, diffs = _resolve(predictor, None, force)
    settings = settings_of(pred)
    with tempfile.TemporaryDirectory(prefix="edgeprof-predict-") as tmp:
        variants: list[tuple[str, Path]] = [("", Path(path))]
        for act in acts or []:
            from edgeprof.swap import swap_model

            out = Path(tmp) / f"{Path(path).stem}_{act.replace(':', '_')}.onnx"
            try:
                swap_model(path, act, out=out)
            except EdgeprofError as exc:
                raise InputError(f"--acts {act}: {exc}") from None
            variants.append((act, out))
        results = []
        for act, file in variants:
            p = predict_model(file, pred, force=True, settings=settings)
            p.model, p.act = str(path), act
            p.warnings = [f"forced: the predictor belongs to another {d}" for d in diffs] + \
                [w for w in p.warnings if not w.startswith("forced")]
            results.append(p)
        if measure:
            from edgeprof.measure.interleave import MeasureOptions, median_interval
            from edgeprof.measure.interleave import measure as run_measure

            options = measure_options or MeasureOptions(ci_target="absolute", rel_ci=0.02, sessions=2)
            measured = run_measure([str(f) for _, f in variants], settings, options, on_progress=on_progress)
            for p, m in zip(results, measured, strict=True):
                if m.status == "ok":
                    p.measured_ms = m.stats["median_ms"]
                    ci = median_interval(m)
                    if math.isfinite(ci.lo):
                        p.measured_ci = (ci.lo, ci.hi)
                else:
                    p.warnings.append(f"measuring failed: {m.error}")
    return results
