"""Every option shared by two or more commands, declared once: groups of options as typed records.

A command names the groups it takes as parameters (``plan: PlanFlags``); ``with_groups`` puts each group's
options into the command's signature for Typer (under the group's ``--help`` panel) and hands the command
one record per group, which also knows which of its options were given on the command line (``given``).
"""

import dataclasses
import functools
import inspect
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, get_type_hints

import typer
from typer.core import TyperCommand, TyperGroup

from edgeprof.api import MODEL_IMGSZ, MODELS_DIR_ENV, RESULTS_DIR_ENV
from edgeprof.spec.blocks import blocks_help, depths_help, models_help
from edgeprof.spec.plan import SweepPlan

_PLAN = SweepPlan()  # the library's defaults, shown in --help
# the panels of --help
_BLOCKS, _EXPORT, _RUNTIME, _MEASURE, _OUTPUT = "Blocks and sizes", "Export", "Runtime", "Measurement", "Output"


def _csv(values) -> str:
    return ",".join(map(str, values))


class _FlagsTakeNoValue:
    """Flags (``--per-op``, ``--arena/--no-arena``, ``--help``) shown in --help without a ``<bool>`` value."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Command(_FlagsTakeNoValue, TyperCommand):
    """Every edgeprof command: ``app.command(name, cls=Command)``."""


class Group(_FlagsTakeNoValue, TyperGroup):
    """Every edgeprof command group: ``typer.Typer(cls=Group)``."""


class OptLevel(StrEnum):
    disable = "disable"
    basic = "basic"
    extended = "extended"
    all = "all"


class CacheState(StrEnum):
    warm = "warm"
    cold = "cold"


class CiTarget(StrEnum):
    ratio = "ratio"
    absolute = "absolute"


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    md = "md"


@dataclass(frozen=True)
class OptionGroup:
    """Options that travel together. Subclasses declare fields as ``Annotated[type, typer.Option(...)]``."""

    given: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @classmethod
    def cli_parameters(cls) -> list[inspect.Parameter]:
        hints = get_type_hints(cls, include_extras=True)
        return [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
                for f in dataclasses.fields(cls) if f.name != "given"]

    def values(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "given"}

    def given_values(self) -> dict:
        """Only the options given on the command line (or by environment variable)."""
        return {name: value for name, value in self.values().items() if name in self.given}


@dataclass(frozen=True)
class BlockFlags(OptionGroup):
    """Which blocks to build, at which sizes (sweep, bundle, baseline save, check)."""

    acts: Annotated[str, typer.Option(
        "--acts", "-a", rich_help_panel=_BLOCKS, help="Activations, comma-separated; see `edgeprof acts`. "
        "Parameters after ':' (leakyrelu:0.2); your own as module:Class.")] = _csv(_PLAN.acts)
    blocks: Annotated[str, typer.Option("--blocks", "-b", rich_help_panel=_BLOCKS,
                                        help=blocks_help())] = _csv(_PLAN.blocks)
    widths: Annotated[str, typer.Option("--widths", "-w", rich_help_panel=_BLOCKS,
                                        help="Channel widths, comma-separated.")] = _csv(_PLAN.widths)
    depths: Annotated[str, typer.Option("--depths", rich_help_panel=_BLOCKS, help=depths_help())] = \
        _csv(_PLAN.depths)
    imgsz: Annotated[str | None, typer.Option(
        "--imgsz", rich_help_panel=_BLOCKS, show_default=False,
        help=f"Input sizes in pixels, comma-separated (default {_csv(_PLAN.imgsz)} for blocks, "
        f"{_csv(MODEL_IMGSZ)} for --model).")] = None
    batch: Annotated[str, typer.Option("--batch", rich_help_panel=_BLOCKS,
                                       help="Batch sizes, comma-separated.")] = _csv(_PLAN.batch)
    kernel: Annotated[int, typer.Option("--kernel", rich_help_panel=_BLOCKS,
                                        help="Kernel size of the conv block.")] = _PLAN.kernel
    stride: Annotated[int, typer.Option("--stride", rich_help_panel=_BLOCKS,
                                        help="Stride of the conv block.")] = _PLAN.stride


@dataclass(frozen=True)
class ExportFlags(OptionGroup):
    """How built blocks are exported."""

    opset: Annotated[int, typer.Option("--opset", rich_help_panel=_EXPORT,
                                       help="ONNX opset to export (the written one is recorded).")] = _PLAN.opset
    exporter: Annotated[str, typer.Option("--exporter", rich_help_panel=_EXPORT,
                                          help="torchscript (fast) or dynamo (needs onnxscript).")] = _PLAN.exporter


Roofline = Annotated[bool, typer.Option(
    "--roofline/--no-roofline", rich_help_panel=_MEASURE, help="Report achieved GFLOP/s and GB/s as fractions of "
    "this machine's ceilings (measured once, cached).")]


@dataclass(frozen=True)
class PlanFlags(BlockFlags):
    """Everything a sweep plan says (sweep, bundle): the blocks and sizes, and how to grow and compare them."""

    scale: Annotated[str | None, typer.Option(
        "--scale", rich_help_panel=_BLOCKS, help="YOLO scale presets instead of --widths/--depths: n,s,m,l,x "
        "(YOLOv8 multipliers on a P3-stage C2f: 256 ch, 6 bottlenecks at l).")] = None
    scaling: Annotated[str, typer.Option(
        "--scaling", rich_help_panel=_BLOCKS, help="How sizes grow: auto (from what varies), grid, width, depth, "
        "imgsz, or fixed-tensor (width grows, width*imgsz^2 kept; --imgsz is the side at the first width).")] = \
        _PLAN.scaling
    model: Annotated[str | None, typer.Option("--model", "-m", rich_help_panel=_BLOCKS, help=models_help())] = None
    baseline: Annotated[str, typer.Option("--baseline", rich_help_panel=_BLOCKS,
                                          help="Activation the ratios are taken against.")] = _PLAN.baseline
    act_alone: Annotated[bool, typer.Option(
        "--act-alone/--no-act-alone", rich_help_panel=_MEASURE, help="Also time each activation alone on the block's "
        "output tensor (act_alone_ms, fused_by_timing).")] = _PLAN.act_alone
    roofline: Roofline = _PLAN.roofline
    quantize: Annotated[str | None, typer.Option(
        "--quantize", rich_help_panel=_EXPORT, help="Also measure quantized variants: int8 (onnxruntime static QDQ, "
        "calibrated on seeded inputs or --calib) or int8-dynamic.")] = None
    calib: Annotated[str | None, typer.Option(
        "--calib", rich_help_panel=_EXPORT, help="With --quantize int8: calibration samples, an .npy "
        "(first axis = samples) or an .npz keyed by input name.")] = None
    seed: Annotated[int, typer.Option("--seed", rich_help_panel=_EXPORT,
                                      help="Seed for weights, inputs and round order.")] = _PLAN.seed


RuntimeOpt = Annotated[str | None, typer.Option(
    "--runtime", rich_help_panel=_RUNTIME, show_default=False,
    help="Inference runtime: onnxruntime (default; for a bundle or baseline, the one it was made for) or your own as "
    "pkg.module:Class.")]


RuntimesOpt = Annotated[str | None, typer.Option(
    "--runtimes", rich_help_panel=_RUNTIME, show_default=False,
    help="Several runtimes in one run (sweep, bundle, profile of a bundle), comma-separated: onnxruntime,openvino,... "
    "or all (every built-in runtime installed here). --runtime R is the one-runtime spelling.")]


def _check_threads(value: str | None) -> str | None:
    """--threads: one thread count, or several (1,2,4), each at least 1; a usage error (one line) otherwise."""
    from edgeprof.api import parse_threads
    from edgeprof.errors import InputError

    if value is not None:
        try:
            parse_threads(value)
        except InputError as exc:
            raise typer.BadParameter(str(exc).removeprefix("--threads: ")) from None
    return value


@dataclass(frozen=True)
class SessionFlags(OptionGroup):
    """The runtime's settings that move latency (recorded in every row)."""

    runtime: RuntimeOpt = None
    runtimes: RuntimesOpt = None
    threads: Annotated[str, typer.Option("--threads", rich_help_panel=_RUNTIME, callback=_check_threads,
                                         help="The runtime's compute threads (onnxruntime: intra-op; 1 = one big "
                                         "core). sweep takes several, comma-separated (1,2,4): each is a "
                                         "configuration of its own, measured and compared apart.")] = "1"
    opt_level: Annotated[OptLevel, typer.Option("--opt-level", rich_help_panel=_RUNTIME,
                                                help="onnxruntime graph optimisation level.")] = OptLevel.all
    spinning: Annotated[bool, typer.Option("--spinning/--no-spinning", rich_help_panel=_RUNTIME,
                                           help="Let idle onnxruntime threads spin "
                                           "(session.intra_op.allow_spinning).")] = False
    arena: Annotated[bool, typer.Option("--arena/--no-arena", rich_help_panel=_RUNTIME,
                                        help="onnxruntime's CPU memory arena.")] = True

    def runtime_names(self) -> tuple[list[str] | None, str]:
        """The runtimes asked for (``--runtimes``, or ``--runtime`` alone; None when neither was given) and the
        one-line note of those ``--runtimes all`` left out."""
        from edgeprof.api import resolve_runtimes
        from edgeprof.errors import InputError

        if self.runtimes is not None and self.runtime is not None:
            raise InputError("give --runtime (one runtime) or --runtimes (several), not both")
        if self.runtimes is not None:
            return resolve_runtimes(self.runtimes)
        return ([self.runtime] if self.runtime else None), ""

    def thread_counts(self, several: bool = False) -> list[int]:
        """The thread counts ``--threads`` gives; more than one only where ``several`` (sweep), else a usage error."""
        from edgeprof.api import parse_threads
        from edgeprof.errors import InputError

        counts = parse_threads(self.threads)
        if len(counts) > 1 and not several:
            raise InputError(f"--threads {self.threads}: this command measures with one thread count; several (each "
                             "a configuration of its own) apply to sweep")
        return counts

    def settings(self, runtime: str | None = None, threads: int | None = None):
        """The settings of ``runtime`` (default: ``--runtime``, or the one runtime ``--runtimes`` names) from the
        options given, with ``threads`` (default: the one count ``--threads`` gives); several ``--runtimes`` or
        thread counts are a usage error here (a command that measures with one)."""
        from edgeprof.api import runtime_settings
        from edgeprof.errors import InputError

        if runtime is None and self.runtimes is not None:
            names, _ = self.runtime_names()
            if len(names) != 1:
                raise InputError("this command measures with one runtime: give --runtime R (--runtimes "
                                 f"{self.runtimes} names {len(names)})")
            runtime = names[0]
        threads = self.thread_counts()[0] if threads is None else threads
        return runtime_settings(runtime or self.runtime, threads, self.opt_level.value, self.spinning, self.arena)

    def settings_list(self, names: list[str] | None = None, several_threads: bool = False) -> list:
        """Each runtime's settings, for a run over several (``--runtimes``; default the one of ``--runtime``); with
        ``several_threads`` (sweep), once per thread count ``--threads`` gives, each a configuration of its own
        (runtime by runtime, and thread count by thread count within a runtime)."""
        from edgeprof.api import runtime_settings_list

        counts = self.thread_counts(several_threads)
        names = names or self.runtime_names()[0] or [None]
        if names == [None] or len(names) == 1:
            return [self.settings(names[0], threads) for threads in counts]
        per_count = [runtime_settings_list(names, threads, self.opt_level.value, self.spinning, self.arena)
                     for threads in counts]
        return [settings[i] for i in range(len(names)) for settings in per_count]


@dataclass(frozen=True)
class MeasureFlags(OptionGroup):
    """When to stop measuring, how each model is isolated, and the cache state of its timed runs."""

    rel_ci: Annotated[float, typer.Option("--rel-ci", rich_help_panel=_MEASURE, help="Stop when every ratio's "
                                          "95% CI (--ci-target absolute: every median's) is within ± this fraction."
                                          )] = 0.02
    ci_target: Annotated[CiTarget, typer.Option(
        "--ci-target", rich_help_panel=_MEASURE, help="What --rel-ci stops on: ratio (each ratio to the baseline, "
        "paired) or absolute (each model's median).")] = CiTarget.ratio
    sessions: Annotated[int, typer.Option(
        "--sessions", min=1, max=50, rich_help_panel=_MEASURE, help="Fresh worker processes the models in a ratio "
        "are timed in (all the models of one comparison in each), each with the same rounds; the CIs cover the "
        "offsets between them. Ratios short of --rel-ci get more sessions, widest first, up to 3x this.")] = 8
    max_time: Annotated[float, typer.Option("--max-time", rich_help_panel=_MEASURE,
                                            help="Time budget in seconds per model, for a model timed in bursts of "
                                            "runs; one whose single run is longer gets proportionally more.")] = 3.0
    total_time: Annotated[float | None, typer.Option(
        "--total-time", rich_help_panel=_MEASURE, show_default=False, help="Cap in seconds on the whole run's "
        "measuring beyond each model's minimum rounds (default: no cap but --max-time).")] = None
    min_samples: Annotated[int, typer.Option("--min-samples", rich_help_panel=_MEASURE,
                                             help="At least this many timed samples per model.")] = 20
    isolate: Annotated[bool, typer.Option("--isolate/--no-isolate", rich_help_panel=_MEASURE,
                                          help="Fresh worker processes: one per model for its load and memory "
                                          "figures, one per session for the timing (--no-isolate: all in this "
                                          "process, no memory figures).")] = True
    cache: Annotated[CacheState, typer.Option(
        "--cache", rich_help_panel=_MEASURE, help="Cache state of the timed runs: warm (back to back) or cold (the "
        "caches evicted before every timed run, untimed, by touching a buffer twice the last-level cache; each run "
        "timed alone). Recorded in the cache column.")] = CacheState.warm

    def with_cache(self, settings: list) -> list:
        """The runtimes' settings with this ``--cache`` (a field every runtime's settings have); a bad value is a
        one-line InputError naming the valid ones."""
        import dataclasses

        cache = getattr(self.cache, "value", self.cache)
        return [dataclasses.replace(s, cache=cache) for s in settings]

    def options(self, seed: int = 0):
        from edgeprof.measure import MeasureOptions

        return MeasureOptions(rel_ci=self.rel_ci, max_time=self.max_time, min_samples=self.min_samples,
                              isolate=self.isolate, seed=seed, ci_target=self.ci_target.value, sessions=self.sessions,
                              total_time=self.total_time)


Quiet = Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel=_OUTPUT,
                                     help="No progress bar; each library warning once.")]
Shape = Annotated[list[str] | None, typer.Option(
    "--shape", rich_help_panel=_BLOCKS, help="Shape for dynamic inputs: images=1x3x640x640, 1x3x640x640 (the only "
    "input) or a named dimension, batch=1.")]
ModelsDir = Annotated[Path | None, typer.Option(
    "--models-dir", envvar=MODELS_DIR_ENV, rich_help_panel=_OUTPUT, show_default=False,
    help="Where exported models are cached (default: the user's cache folder).")]
Threads = Annotated[int, typer.Option("--threads", min=1, help="The runtime's compute threads (onnxruntime: "
                                      "intra-op; 1 = one big core).")]


@dataclass(frozen=True)
class OutputFlags(OptionGroup):
    """Where results go and how they are printed (sweep, profile)."""

    per_op: Annotated[bool, typer.Option("--per-op", rich_help_panel=_OUTPUT, help="Also print where the time goes "
                                         "inside each model (onnxruntime's profiler; always saved as <csv>-ops.csv).")
                      ] = False
    csv: Annotated[Path | None, typer.Option("--csv", rich_help_panel=_OUTPUT, show_default=False,
                                             help="CSV to write (default: a new file in --results-dir).")] = None
    results_dir: Annotated[Path, typer.Option("--results-dir", envvar=RESULTS_DIR_ENV, rich_help_panel=_OUTPUT,
                                              help="Folder of new result CSVs (without --csv).")] = Path("results")
    resume: Annotated[bool, typer.Option("--resume", rich_help_panel=_OUTPUT, help="Continue the run in --csv: "
                                         "configs already there with the same settings are not measured again.")
                      ] = False
    append: Annotated[bool, typer.Option("--append", rich_help_panel=_OUTPUT, help="Add this run's rows to an "
                                         "existing --csv (without it, a non-empty --csv is refused).")] = False
    fmt: Annotated[Format, typer.Option("--format", "-f", rich_help_panel=_OUTPUT,
                                        help="How to print the results on stdout.")] = Format.table
    quiet: Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel=_OUTPUT, help="No progress bar, no rows as "
                                        "each size finishes, no summary of onnxruntime's quantizer warnings; each "
                                        "library warning once.")] = False
    columns: Annotated[str | None, typer.Option(
        "--columns", rich_help_panel=_OUTPUT, show_default=False,
        help="The table's columns, comma-separated, in the order given, of: block, size, threads, act, median, p90, "
        "ci, ratio, fp32, int8-err, fused, by-timing, ran-as, params, macs, act-alone, peak, peak-mib, est-mib, notes "
        "(default: block,size,act,median,ratio,fused,ran-as and, where rows have them, threads, the INT8 columns "
        "and notes).")] = None
    wide: Annotated[bool, typer.Option("--wide", rich_help_panel=_OUTPUT, help="Show every column of the table, "
                                       "however wide (by default it fits the terminal, leaving out columns).")] = False

    def table_columns(self) -> tuple[str, ...] | None:
        """The columns --columns names, checked (None: the default ones); --columns with --wide is an error."""
        from edgeprof.errors import InputError
        from edgeprof.report.table import parse_columns

        if self.columns is None:
            return None
        if self.wide:
            raise InputError("--wide shows every column and --columns picks some: give one of them")
        return parse_columns(self.columns)

    def record(self, prefix: str, on_rows=None) -> dict:
        """The pipelines' RecordOptions: the CSV (--csv, else a new file in --results-dir), --resume, --append, and
        ``on_rows``, called with the rows of each job as they are recorded."""
        from edgeprof.pipeline import new_csv_path

        csv = self.csv if self.csv is not None or self.resume else new_csv_path(self.results_dir, prefix=prefix)
        return {"csv_path": csv, "resume": self.resume, "append": self.append, "on_rows": on_rows}


def with_groups(fn):
    """Expand each parameter of ``fn`` typed as an ``OptionGroup`` into that group's options for Typer, and
    call ``fn`` with one record per group (its ``given`` says which options came from the command line)."""
    hints = get_type_hints(fn, include_extras=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, type[OptionGroup]] = {}
    for p in inspect.signature(fn).parameters.values():
        annotation = hints.get(p.name, p.annotation)
        if isinstance(annotation, type) and issubclass(annotation, OptionGroup):
            groups[p.name] = annotation
            params += annotation.cli_parameters()
        else:
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=annotation))
    params.append(inspect.Parameter("cli_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))
    names = [p.name for p in params]
    assert len(names) == len(set(names)), f"{fn.__name__}: an option is declared twice: {names}"

    @functools.wraps(fn)
    def wrapper(**kwargs):
        ctx = kwargs.pop("cli_context")
        for name, group in groups.items():
            values = {p.name: kwargs.pop(p.name) for p in group.cli_parameters()}
            given = frozenset(k for k in values if _given(ctx, k))
            kwargs[name] = group(**values, given=given)
        return fn(**kwargs)

    del wrapper.__wrapped__
    wrapper.__signature__ = inspect.Signature(params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


def _given(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
