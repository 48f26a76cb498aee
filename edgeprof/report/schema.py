"""The result CSV's columns, in order, with what each one means. One row per measured config."""

from __future__ import annotations

SCHEMA_VERSION = 1

# name -> meaning; the order here is the CSV's column order.
COLUMNS: dict[str, str] = {
    "act": "activation spec, canonical (e.g. relu, leakyrelu:0.2); empty for a model edgeprof did not build",
    "block": "YOLO-style block: conv, bottleneck, c3, c2f, sppf",
    "width": "input and output channels of the block",
    "depth": "bottlenecks in c3/c2f (1 for the others)",
    "imgsz": "input height = width in pixels",
    "batch": "batch size",
    "kernel": "kernel size of the conv block",
    "stride": "stride of the conv block",
    "params": "parameters of the torch model (BN included, before folding)",
    "macs": "multiply-accumulates of one forward pass (Conv2d/Linear layers)",
    "threads": "onnxruntime intra-op threads",
    "inter_threads": "onnxruntime inter-op threads",
    "opt_level": "onnxruntime graph optimisation level: disable, basic, extended, all",
    "spinning": "whether onnxruntime's idle threads spin (session.intra_op.allow_spinning)",
    "arena": "whether onnxruntime's CPU memory arena is on",
    "provider": "onnxruntime execution provider",
    "exporter": "torch ONNX exporter used (torchscript or dynamo)",
    "opset": "ONNX opset read from the written model",
    "median_ms": "median latency of one run, ms",
    "mean_ms": "mean latency, ms",
    "std_ms": "standard deviation of the samples, ms",
    "min_ms": "fastest sample, ms",
    "p90_ms": "90th percentile, ms",
    "p99_ms": "99th percentile, ms",
    "iqr_ms": "interquartile range of the samples, ms",
    "n": "number of timed samples",
    "inner_loops": "runs timed back to back per sample (1 = per-run latency)",
    "ci95_low_ms": "lower bound of the 95% CI of the median (order statistics)",
    "ci95_high_ms": "upper bound of the 95% CI of the median",
    "ci_reached": "whether the CI half-width got within the --rel-ci target",
    "noisy": "IQR over 10% of the median: treat this row's figures with care",
    "baseline": "activation the ratio is taken against",
    "ratio_to_baseline": "median of per-round paired ratios median(act)/median(baseline)",
    "ratio_ci95_low": "lower bound of the ratio's 95% CI (order statistics of paired log-ratios)",
    "ratio_ci95_high": "upper bound of the ratio's 95% CI",
    "fused": "activation fused into the Conv by onnxruntime (no separate activation node ran)",
    "act_ops": "op types the activation ran as after optimisation, joined by +; empty when fused",
    "act_ops_exported": "op types the activation was exported as, joined by +",
    "session_ms": "session creation time, ms",
    "first_run_ms": "first inference time (includes lazy set-up), ms",
    "peak_rss_session_mb": "worker's peak RSS during session creation over its baseline, MiB (--isolate)",
    "peak_rss_run_mb": "worker's peak RSS during inference over its pre-session baseline, MiB (--isolate)",
    "parity_max_abs_err": "max abs difference between torch and onnxruntime outputs at export",
    "model": "path of the ONNX file measured",
    "status": "ok, failed or interrupted",
    "error": "why the row failed",
    "run_id": "identifies the sweep this row came from (its results JSON has the metadata)",
}

FIGURE_COLUMNS = [c for c in COLUMNS if c.endswith(("_ms", "_mb")) or c.startswith("ratio")]
