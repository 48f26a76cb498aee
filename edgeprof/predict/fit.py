"""Predictors, one per kernel kind (one for every conv), fitted on a collected dataset and saved with the host and
runtime they belong to.

**Library: scikit-learn** rather than LightGBM: nn-Meter's kernel predictors were scikit-learn random forests,
so the method is the published one; a forest gives out-of-bag predictions for free, which this module uses for
the interval and adaptive sampling uses to find where the predictors are least sure; and a few hundred rows per
kind is far below where LightGBM's speed would matter. Both ship wheels for x86-64 and aarch64 with their own
OpenMP library; the forests here are fitted with ``n_jobs=1``, and nothing is fitted or predicted while a worker
process is timing a model.

**Model per kind**: the target is log(kernel ms); the features are log(1 + x) of ``kernels.FEATURES``. A power
law in the work (``Trend``: log ms linear in log MACs and log elements, with non-negative slopes) carries the trend,
so a model beyond the sampled range extrapolates along it, which a forest alone cannot; a random forest on all
the features fits what the trend leaves (its residuals).
**One model for every conv**: a conv kernel's kind names what ran fused into it (``Conv+Relu``,
``Conv+HardSwish``), but the fused op changes little of its cost, and each fused kind alone has few rows (HardSwish
fuses into NCHWc convs only inside whole networks; an activation's networks are a seventeenth of them). So every conv
kind is one model (``CONV``), fitted on all their rows with one indicator column per fused op seen at least
``MIN_ROWS`` times: the forest learns a fused op's extra cost where the data shows one, and a fused op never
collected is predicted as a plain conv (and says so).
**Interval**: the 5% and 95% quantiles of each kind's out-of-bag log residuals; a model's interval sums each
kernel's bounds (errors of one kind on one host move together, so they are not assumed to cancel). A kind the
dataset lacks (an activation never collected) is predicted by the closest kind fitted (a conv with a fused op never
seen as a plain conv; any other op by an elementwise model on its elements), and says so.

A predictor is a pickle (scikit-learn's own way to save models; load only files you made) with a JSON sidecar
holding its identity, which is checked *before* the pickle is read: another host or runtime version is refused.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeprof.errors import InputError
from edgeprof.predict.kernels import FEATURES, Kernel
from edgeprof.predict.store import check_identity, require_file

PREDICTOR_SCHEMA = 2
MIN_ROWS = 4  # a kind with fewer rows is predicted by its fallback
GENERIC = "*elementwise"  # the fallback of every non-conv kind
CONV = "*conv"  # the one model of every conv kind, whatever ran fused into it (its kind is a feature)


IN_NETWORK = len(FEATURES)  # the column after the features: 1 for a kernel measured inside a whole network


def _features(rows, in_network) -> np.ndarray:
    """log(1 + x) of the kernel features, then whether the kernel ran inside a network (what is predicted)."""
    x = np.log1p(np.maximum(np.asarray(rows, dtype=float), 0.0))
    flags = np.broadcast_to(np.asarray(in_network, dtype=float), (x.shape[0],))
    return np.column_stack([x, flags])


@dataclass
class KindModel:
    """The predictor of one kernel kind: ridge trend + forest on its residuals, in log ms."""

    kind: str
    rows: int
    linear: object
    forest: object | None
    q_low: float  # 5% quantile of out-of-bag log residuals
    q_high: float  # 95% quantile
    oob_abs_pct: float  # median |error| out of bag, percent
    oob: np.ndarray | None = None  # out-of-bag log predictions of the training rows (adaptive sampling)

    def predict_log(self, x: np.ndarray) -> np.ndarray:
        y = self.linear.predict(x)
        if self.forest is not None:
            y = y + self.forest.predict(x)
        return y


class Trend:
    """log ms = a + b·log(1 + MACs) + c·log(1 + elements in and out) + d·(inside a network), b, c, d >= 0 (a power
    law in the work done, which extrapolates sanely beyond the sampled sizes); for kinds without MACs, no b."""

    def __init__(self) -> None:
        self.model = None
        self.columns: list[int] = []

    def fit(self, x: np.ndarray, y: np.ndarray) -> Trend:
        from sklearn.linear_model import LinearRegression

        cols = [FEATURES.index("macs")] if np.ptp(x[:, FEATURES.index("macs")]) > 0 else []
        self.columns = cols
        self.model = LinearRegression(positive=True).fit(self._design(x), y)
        return self

    def _design(self, x: np.ndarray) -> np.ndarray:
        moved = np.expm1(x[:, FEATURES.index("in_elements")]) + np.expm1(x[:, FEATURES.index("out_elements")])
        elements = np.log1p(moved)
        return np.column_stack([*(x[:, c] for c in self.columns), elements, x[:, IN_NETWORK]])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(self._design(x))


def fused_of(kind: str) -> str:
    """What ran fused into a conv kernel (``Conv+HardSwish`` -> ``HardSwish``; a plain ``Conv`` -> "")."""
    return kind.split("+", 1)[1] if "+" in kind else ""


def conv_rows(kinds) -> np.ndarray:
    """Which of ``kinds`` are conv kernels (``Conv``, ``Conv+Relu``, ...): the rows of the pooled conv model."""
    return np.char.startswith(np.asarray(kinds, dtype=str), "Conv")


def _conv_features(x: np.ndarray, kinds, fused: list[str]) -> np.ndarray:
    """A conv's features and one indicator column per fused op the pooled conv model knows."""
    onehot = np.array([[1.0 if fused_of(str(k)) == f else 0.0 for f in fused] for k in kinds]).reshape(len(x), -1)
    return np.column_stack([x, onehot])


def _fit_kind(kind: str, x: np.ndarray, y: np.ndarray, trees: int, seed: int) -> KindModel:
    from sklearn.ensemble import RandomForestRegressor

    linear = Trend().fit(x, y)
    trend = linear.predict(x)
    forest, oob = None, trend
    if len(y) >= 8:
        forest = RandomForestRegressor(n_estimators=trees, min_samples_leaf=2, max_features=0.8, oob_score=True,
                                       random_state=seed, n_jobs=1).fit(x, y - trend)
        oob_res = np.asarray(forest.oob_prediction_, dtype=float)
        oob = trend + np.where(np.isfinite(oob_res), oob_res, 0.0)
    residuals = y - oob
    q_low, q_high = (float(np.quantile(residuals, 0.05)), float(np.quantile(residuals, 0.95))) if len(y) >= 5 \
        else (-0.5, 0.5)
    return KindModel(kind, len(y), linear, forest, min(0.0, q_low), max(0.0, q_high),
                     float(np.median(np.abs(np.expm1(residuals))) * 100), oob)


@dataclass
class Predictor:
    """Per-kind models with the identity of the host and runtime they were fitted on."""

    identity: dict
    overhead_ms: float
    models: dict[str, KindModel]
    fusion: dict = field(default_factory=dict)
    conv_fused: list[str] = field(default_factory=list)  # the fused ops the pooled conv model (CONV) was fitted on
    created: str = ""
    rows: int = 0
    samples: int = 0
    schema: int = PREDICTOR_SCHEMA

    def model_for(self, kind: str) -> tuple[KindModel, str]:
        """The model of ``kind``, or its fallback and the fallback's name. Every conv kind is predicted by the
        pooled conv model; one whose fused op it never saw, as a plain conv (and says so)."""
        if kind.startswith("Conv") and CONV in self.models:
            known = not fused_of(kind) or fused_of(kind) in self.conv_fused
            return self.models[CONV], kind if known else "Conv"
        if kind in self.models:
            return self.models[kind], kind
        if GENERIC in self.models:
            return self.models[GENERIC], GENERIC
        raise InputError(f"the predictor has no model for kernel kind {kind!r} nor a fallback; collect more data")

    def predict(self, kernels: list[Kernel]) -> list[tuple[float, float, float, str]]:
        """Per kernel: (ms, low ms, high ms, the kind whose model predicted it)."""
        out: list[tuple[float, float, float, str]] = [(0.0, 0.0, 0.0, "")] * len(kernels)
        groups: dict[str, list[int]] = {}
        for i, k in enumerate(kernels):
            groups.setdefault(k.kind, []).append(i)
        for kind, idx in groups.items():
            model, used = self.model_for(kind)
            x = _features([kernels[i].features() for i in idx], 1.0)
            if model.kind == CONV:
                x = _conv_features(x, [used] * len(idx), self.conv_fused)
            logs = model.predict_log(x)
            for i, lg in zip(idx, logs, strict=True):
                ms = float(math.exp(lg))
                out[i] = (ms, ms * math.exp(model.q_low), ms * math.exp(model.q_high), used)
        return out

    def oob_error_by_row(self, df) -> np.ndarray:
        """|out-of-bag log error| of each dataset row under its kind's model (rows of unfitted kinds: 0)."""
        err = np.zeros(len(df))
        kinds = df["kind"].astype(str).to_numpy()
        positions = {kind: np.flatnonzero(kinds == kind) for kind in self.models if kind not in (GENERIC, CONV)}
        if CONV in self.models:
            positions[CONV] = np.flatnonzero(conv_rows(kinds))
        y = np.log(np.maximum(df["kernel_ms"].to_numpy(dtype=float), 1e-6))
        for kind, pos in positions.items():
            model = self.models[kind]
            if model.oob is not None and len(pos) == len(model.oob):
                err[pos] = np.abs(y[pos] - model.oob)
        return err

    def summary(self) -> list[dict]:
        return [{"kind": k, "rows": m.rows, "oob_median_abs_pct": round(m.oob_abs_pct, 2),
                 "interval_pct": [round(math.expm1(m.q_low) * 100, 1), round(math.expm1(m.q_high) * 100, 1)]}
                for k, m in sorted(self.models.items())]

    def meta(self) -> dict:
        return {"schema": self.schema, **self.identity, "created": self.created, "rows": self.rows,
                "samples": self.samples, "overhead_ms": self.overhead_ms, "kinds": self.summary(),
                "conv_fused": self.conv_fused, "fusion": self.fusion}


def fit_predictor(df, identity: dict, fusion: dict | None = None, trees: int = 150, seed: int = 0) -> Predictor:
    """Fit one model per kernel kind of the dataset ``df`` (``collect.read_dataset``), one for every conv kind
    (``CONV``) and the elementwise fallback; ``overhead_ms`` is the median of the batches' probe figures."""
    df = df[np.isfinite(df["kernel_ms"].astype(float)) & (df["kernel_ms"].astype(float) > 0)]
    if df.empty:
        raise InputError("the dataset has no measured kernels yet; run edgeprof predict collect (a longer --budget)")
    x_all = _features(df[list(FEATURES)].to_numpy(dtype=float), df["in_network"].to_numpy(dtype=float))
    y_all = np.log(df["kernel_ms"].to_numpy(dtype=float))
    kinds = df["kind"].astype(str).to_numpy()
    models: dict[str, KindModel] = {}
    conv = conv_rows(kinds)
    for kind in sorted(set(kinds[~conv])):
        mask = kinds == kind
        if mask.sum() >= MIN_ROWS:
            models[kind] = _fit_kind(kind, x_all[mask], y_all[mask], trees, seed)
    conv_fused: list[str] = []
    if conv.sum() >= MIN_ROWS:  # one model for every conv: a fused op changes little of a conv's cost, and each
        # fused kind alone has few rows (HardSwish fuses only inside networks)
        counts: dict[str, int] = {}
        for k in kinds[conv]:
            counts[fused_of(k)] = counts.get(fused_of(k), 0) + 1
        conv_fused = sorted(f for f, n in counts.items() if f and n >= MIN_ROWS)
        models[CONV] = _fit_kind(CONV, _conv_features(x_all[conv], kinds[conv], conv_fused), y_all[conv], trees,
                                 seed)
    generic = ~conv
    if generic.sum() >= MIN_ROWS:
        cols = [FEATURES.index("in_elements"), FEATURES.index("out_elements"), FEATURES.index("inputs"), IN_NETWORK]
        mask_x = np.zeros_like(x_all[generic])
        mask_x[:, cols] = x_all[generic][:, cols]
        models[GENERIC] = _fit_kind(GENERIC, mask_x, y_all[generic], trees, seed)
    if not models:
        raise InputError(f"the dataset has too few kernels to fit (need {MIN_ROWS} of a kind); collect longer")
    overhead = df.drop_duplicates("sample")["overhead_ms"].astype(float)
    overhead = overhead[np.isfinite(overhead)]
    return Predictor(identity=dict(identity), overhead_ms=float(overhead.median()) if len(overhead) else 0.0,
                     models=models, fusion=fusion or {}, conv_fused=conv_fused,
                     created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     rows=len(df), samples=int(df["sample"].nunique()))


def meta_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def save_predictor(predictor: Predictor, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as handle:
        pickle.dump(predictor, handle, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    meta_path(path).write_text(json.dumps(predictor.meta(), indent=1, default=str))
    return path


def load_predictor(path: str | Path, identity: dict | None = None, force: bool = False) -> tuple[Predictor, list[str]]:
    """The predictor at ``path``, after checking its sidecar's identity against ``identity`` (this host and
    runtime): another host, runtime, runtime version or settings is a one-line ``InputError`` unless ``force``.
    Returns the predictor and the differences that ``force`` let through."""
    path = require_file(Path(path), "predictor", "fit one on this host with: edgeprof predict collect")
    meta_file = meta_path(path)
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        raise InputError(f"the predictor {path} has no readable identity file {meta_file.name}; fit it again with "
                         "edgeprof predict collect") from None
    if meta.get("schema") != PREDICTOR_SCHEMA:
        raise InputError(f"the predictor {path} has schema {meta.get('schema')}, this edgeprof reads "
                         f"{PREDICTOR_SCHEMA}; fit it again with edgeprof predict collect")
    diffs = check_identity(meta, identity, what=f"the predictor {path}", force=force,
                           hint="collect on this host (edgeprof predict collect) or pass --force") if identity else []
    try:
        with path.open("rb") as handle:
            predictor = pickle.load(handle)
    except ModuleNotFoundError as exc:
        raise InputError(f"reading the predictor {path} needs {exc.name}: pip install 'edgeprof[predict]'") from None
    except Exception as exc:
        raise InputError(f"cannot read the predictor {path}: {type(exc).__name__}") from None
    return predictor, diffs
