"""Predict a model's latency from kernel measurements (nn-Meter's method) on this host and runtime.

``collect`` measures the kernels YOLO-style networks are made of (as onnxruntime runs them after its fusions) at
sampled configurations into a dataset CSV; ``fit`` trains one predictor per kernel kind; ``model`` splits an ONNX
file into the runtime's kernels (``kernels``) and sums their predictions. From Python::

    from edgeprof.predict import predict_model
    prediction = predict_model("yolo.onnx")          # the predictor of this host and runtime version
    prediction.predicted_ms, prediction.low_ms, prediction.high_ms, prediction.kernels
"""

from __future__ import annotations


def __getattr__(name: str):
    if name in ("predict_model", "predict_acts", "Prediction"):
        from edgeprof.predict import model

        return getattr(model, name)
    if name in ("collect", "CollectOptions"):
        from edgeprof.predict import collect

        return getattr(collect, name)
    if name in ("fit_predictor", "load_predictor", "Predictor"):
        from edgeprof.predict import fit

        return getattr(fit, name)
    raise AttributeError(name)


__all__ = ["CollectOptions", "Prediction", "Predictor", "collect", "fit_predictor", "load_predictor", "predict_acts",
           "predict_model"]
