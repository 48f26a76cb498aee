"""The result CSV's columns, in order: name, dtype and meaning of each. One row per measured config.

``COLUMNS`` (name -> meaning) fixes the order; the dtype lists below give each column its pandas dtype
(float64 where a column is in none of them); ``SCHEMA`` joins the two into one ``Column`` per column, which
``to_frame``/``read_results`` use for dtypes, the run recorder for checking rows it resumes from, and
``markdown_table`` for the README's column table.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeprof.runtime.cache import CACHE_STATES

SCHEMA_VERSION = 1

# name -> meaning; the order here is the CSV's column order.
COLUMNS: dict[str, str] = {
    "precision": "fp32, or int8 for a quantized variant (--quantize int8)",
    "act": "activation spec, canonical (e.g. relu, leakyrelu:0.2); empty for a model edgeprof did not build",
    "block": "block kind (edgeprof.spec.blocks): conv, bottleneck, c3, c2f, sppf, act, a whole model, or a "
             "user BlockKind's import path",
    "width": "input and output channels of the block",
    "depth": "bottlenecks in blocks with a chain of them (c3, c2f; 1 for the others)",
    "imgsz": "input height = width in pixels",
    "batch": "batch size",
    "kernel": "kernel size of the conv block",
    "stride": "stride of the conv block",
    "scaling": "how the sizes of the sweep grow: width, depth or imgsz (only that one varies), fixed-tensor "
               "(width grows, width*imgsz^2 fixed), preset (--scale), grid (several vary) or single (one size)",
    "scale": "YOLO scale preset (n, s, m, l, x) of the row, if any",
    "params": "parameters of the torch model (BN included, before folding)",
    "macs": "multiply-accumulates of one forward pass (Conv2d/Linear layers)",
    "runtime": "inference runtime that ran the model: onnxruntime, another built-in one (--runtimes), or your own "
               "as pkg.module:Class (--runtime)",
    "threads": "compute threads of the runtime (onnxruntime: intra-op threads)",
    "threads_effective": "the thread count the runtime reports it uses, read back from its own API (empty where it "
                         "cannot tell): whether the threads setting took effect",
    "runtime_settings": "the runtime's other settings as key=value;key=value (onnxruntime: inter_threads, "
                        "opt_level, spinning, arena, provider)",
    "cache": "cache state of the timed runs (--cache): warm (runs back to back) or cold (the caches evicted before "
             "every timed run, untimed, by touching a buffer twice the last-level cache; each run timed alone)",
    "exporter": "torch ONNX exporter used (torchscript or dynamo)",
    "opset": "ONNX opset read from the written model",
    "converter": "what made the runtime's artifact from the ONNX file (empty for a runtime that reads ONNX as is)",
    "converter_version": "version of that converter",
    "median_ms": "median latency of one run, ms",
    "mean_ms": "mean latency, ms",
    "std_ms": "standard deviation of the samples, ms",
    "min_ms": "fastest sample, ms",
    "p90_ms": "90th percentile, ms",
    "p99_ms": "99th percentile, ms",
    "iqr_ms": "interquartile range of the samples, ms",
    "n": "number of timed samples",
    "inner_loops": "runs timed back to back per sample (1 = per-run latency)",
    "sessions": "fresh worker processes (sessions) the model was timed in (--sessions, more when their offsets held "
                "a ratio's CI up)",
    "ci95_low_ms": "lower bound of the 95% CI of the median (order statistics, widened by the spread between "
                   "sessions)",
    "ci95_high_ms": "upper bound of the 95% CI of the median",
    "ci_target": "what the rounds stopped on: ratio (the ratio's CI; the default) or absolute (the median's CI)",
    "ci_reached": "whether the CI of ci_target got within the --rel-ci target",
    "noisy": "IQR of the samples over 10% of the median (CSV only: the table's notes say what to act on; a "
             "bimodal host sets it even where the ratio is well determined)",
    "levels": "distinct levels the per-round medians fall into: 1, or 2 and more for a bimodal host (a gap between "
              "them over 3x the spread inside each)",
    "baseline": "activation the ratio is taken against",
    "ratio_to_baseline": "median of per-round paired ratios median(act)/median(baseline)",
    "ratio_ci95_low": "lower bound of the ratio's 95% CI (order statistics of paired log-ratios, widened by the spread "
                      "between sessions)",
    "ratio_ci95_high": "upper bound of the ratio's 95% CI",
    "between_session_share": "share of the spread of the per-round ratios (without a ratio: of the per-round medians) "
                             "that lies between sessions (variance components; empty with one session)",
    "ratio_to_fp32": "int8 rows: paired ratio of the quantized block's time to the float block's",
    "quant_max_abs_err": "int8 rows: max abs difference of outputs from the float model on a seeded input",
    "quant_rel_err": "int8 rows: quant_max_abs_err as a fraction of the float output's range",
    "fused": "activation fused into the Conv by the runtime, read from its own executed graph (no separate "
             "activation node ran)",
    "act_ops": "op types the activation ran as after optimisation, joined by +; empty when fused",
    "act_ops_exported": "op types the activation was exported as, joined by +",
    "session_ms": "session creation time, ms",
    "first_run_ms": "first inference time (includes lazy set-up), ms",
    "peak_rss_session_mb": "worker's peak RSS during session creation over its baseline, MiB (--isolate)",
    "peak_rss_run_mb": "worker's peak RSS during inference over its pre-session baseline, MiB (--isolate)",
    "act_alone_ms": "median latency of the activation alone on a tensor of the block's output shape, ms",
    "act_alone_elements": "elements of that tensor",
    "conv_alone_ms": "median latency of the same block without an activation, ms",
    "fused_by_timing": "nn-Meter's rule: T(conv) + T(act) - T(conv+act) > 0.5 * min(T(conv), T(act))",
    "achieved_gflops": "2 * macs / median time: the block's achieved GFLOP/s",
    "frac_peak_gflops": "achieved_gflops / this machine's peak (edgeprof machine, same threads)",
    "act_alone_gbs": "activation alone: one read + one write of its fp32 tensor / act_alone_ms, GB/s",
    "frac_bandwidth": "act_alone_gbs / this machine's measured bandwidth (edgeprof machine, same threads)",
    "act_share": "share of the block's kernel time (onnxruntime profiler) spent in the activation's ops",
    "weights_mb": "static estimate: bytes of the graph's weights, MiB",
    "act_peak_mb": "static estimate: peak live activation bytes by liveness over the graph, MiB",
    "runtime_peak_in_use_mb": "the runtime's own peak bytes in use, MiB (onnxruntime: its profiler, arena on "
                              "only; empty for runtimes without it)",
    "runtime_arena_held_mb": "bytes the runtime's memory arena held, MiB (onnxruntime: its profiler, arena on "
                             "only; empty for runtimes without it)",
    "per_op_runs": "profiled runs the per-op figures (act_ops, act_share, <csv>-ops.csv) are averaged over",
    "per_op_source": "where the per-op times came from (e.g. onnxruntime profiler), or none when the runtime offers "
                     "none",
    "parity_max_abs_err": "max abs difference between torch and onnxruntime outputs at export",
    "runtime_parity_max_abs_err": "max abs difference between the runtime's outputs (on its own artifact) and "
                                  "torch's on the export's seeded input; over 1e-3 of torch's output range the row "
                                  "is failed",
    "model": "path of the model measured (for a runtime with its own format, the ONNX file its artifact was "
             "converted from)",
    "status": "ok, failed, unsupported (the runtime or its converter cannot handle the model) or interrupted",
    "error": "why the row failed or is unsupported (the converter's one-line reason)",
    "run_id": "identifies the sweep this row came from (its results JSON has the metadata)",
    "host_fingerprint": "class of host: CPU model, ISA flags, cores, cgroup quota (rows of different hosts never mix)",
    "cpu_model": "CPU model name",
    "runtime_version": "version of the runtime",
    "load_1m": "1-minute load average of the machine when the row's timed rounds ended (for a row without them, "
               "when its group finished)",
    "cpu_mhz": "current frequency of the cores the model's worker ran on, MHz, mean of readings before and after "
               "its timed rounds (cpufreq, else /proc/cpuinfo; empty where not exposed)",
    "cpu_max_mhz": "maximum frequency of those cores, MHz (cpufreq's cpuinfo_max_freq; empty where not exposed)",
    "temp_c": "CPU temperature after the timed rounds, °C (hottest CPU thermal zone or hwmon sensor; empty where "
              "none is exposed)",
    "steal_pct": "% of all CPU time the hypervisor gave to other guests during the group's timed rounds "
                 "(/proc/stat)",
    "other_cpu_share": "CPU time other processes used during the group's timed rounds, in cores (1.0 = one core "
                       "busy throughout; edgeprof and its workers excluded)",
    "ctx_voluntary": "voluntary context switches of the worker that timed the model (all its threads; the same for "
                     "every model of its size, which share that worker) over the first session's rounds",
    "ctx_involuntary": "involuntary context switches (preemptions) of that worker over the first session's rounds",
    "contended": "measured while another process took the core: over 200 involuntary switches per second on a CPU, "
                 "other processes over half a core beyond the cores the runtime's threads left free, or over 10% "
                 "steal",
}

STATUSES = ("ok", "failed", "unsupported", "interrupted")

# dtypes by column; every other column is float64
BOOL_COLUMNS = ("ci_reached", "noisy", "fused", "fused_by_timing", "contended")
INT_COLUMNS = ("width", "depth", "imgsz", "batch", "kernel", "stride", "params", "macs", "threads",
               "opset", "n", "inner_loops", "threads_effective", "act_alone_elements", "per_op_runs",
               "ctx_voluntary", "ctx_involuntary", "sessions", "levels")
STR_COLUMNS = ("precision", "scaling", "scale", "act", "block", "runtime", "runtime_settings", "cache", "exporter",
               "converter", "converter_version", "per_op_source",
               "ci_target", "baseline", "act_ops", "act_ops_exported", "model", "status", "error", "run_id",
               "host_fingerprint", "cpu_model", "runtime_version")


@dataclass(frozen=True)
class Column:
    """One CSV column: its name, its pandas dtype (string, Int64, boolean or float64) and what it means."""

    name: str
    dtype: str
    meaning: str

    def problem(self, text: str) -> str | None:
        """Why ``text`` (a CSV cell, empty = missing) cannot be a value of this column; None when it can."""
        if text == "":
            return None
        if self.dtype == "Int64":
            try:
                int(text)
            except ValueError:
                return "not a whole number"
        elif self.dtype == "boolean":
            if text not in ("True", "False"):
                return "not True or False"
        elif self.dtype == "float64":
            try:
                float(text)
            except ValueError:
                return "not a number"
        elif self.name == "status" and text not in STATUSES:
            return f"not one of {', '.join(STATUSES)}"
        elif self.name == "cache" and text not in CACHE_STATES:
            return f"not one of {', '.join(CACHE_STATES)}"
        return None


def _dtype(name: str) -> str:
    return ("boolean" if name in BOOL_COLUMNS else "Int64" if name in INT_COLUMNS else
            "string" if name in STR_COLUMNS else "float64")


SCHEMA: tuple[Column, ...] = tuple(Column(name, _dtype(name), meaning) for name, meaning in COLUMNS.items())
DTYPES: dict[str, str] = {c.name: c.dtype for c in SCHEMA}


def markdown_table() -> str:
    """The README's table of CSV columns, generated from the schema."""
    lines = ["| column | type | meaning |", "| --- | --- | --- |"]
    kinds = {"string": "text", "Int64": "integer", "boolean": "true/false", "float64": "number"}
    lines += [f"| `{c.name}` | {kinds[c.dtype]} | {c.meaning} |" for c in SCHEMA]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m edgeprof.results.schema > the README's "CSV columns" table
    print(markdown_table(), end="")
