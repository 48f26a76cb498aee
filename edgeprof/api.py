"""What the commands do, callable from Python: each CLI command parses, calls one of these, and renders.

- ``make_plan(**options)``: a ``SweepPlan`` from option values as typed (``"16,32,64"``) or as sequences,
  with the ``--model`` defaults, every name checked before torch is imported, and the ``--calib`` rules.
- ``profile(paths, ...)``: ONNX files, or one bundle folder made by ``edgeprof bundle``;
  ``profile_swapped(model, plan, ...)``: your ONNX model with each activation swapped in (``sweep --onnx``).
- ``acts_table()``: the activation table as a DataFrame (torch-free).
- ``per_op_table(csv_path, run_ids)``: where the time went in a run, from its per-op CSV.
- ``parse_threads("1,2,4")``: the thread counts of ``--threads`` (a sweep measures each as a configuration).
- ``threads_warning(threads)``: a one-line warning when more threads are asked for than cores are usable.
- ``default_models_dir()``: where exported models are cached ($EDGEPROF_MODELS_DIR, else the user's cache).

Nothing here imports torch; building happens later, in the pipeline.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from edgeprof.errors import InputError

if TYPE_CHECKING:
    from edgeprof.pipeline import SweepPlan

# A whole network takes an RGB image, at these sizes unless --imgsz says otherwise.
MODEL_WIDTH = 3
MODEL_IMGSZ = (320, 640)
MODELS_DIR_ENV = "EDGEPROF_MODELS_DIR"
RESULTS_DIR_ENV = "EDGEPROF_RESULTS_DIR"  # --results-dir
EXPORTERS = ("torchscript", "dynamo")  # the same as edgeprof.convert.onnx_export.EXPORTERS (which imports torch)
CALIB_SUFFIXES = (".npy", ".npz")

_INT_LISTS = ("widths", "depths", "imgsz", "batch")
_NAME_LISTS = ("acts", "blocks", "scales")
_OPTION_NAMES = {"scale": "scales"}  # the option's name where it differs from the plan's field
# options that say what a block is; a whole network (--model) fixes them itself
_NOT_WITH_MODEL = ("blocks", "widths", "depths", "scale", "kernel", "stride")


def model_defaults(model: str | Sequence[str], imgsz=None) -> dict:
    """The plan fields of whole networks: the networks as blocks, 3 input channels, 320 and 640 px."""
    return {"blocks": model, "widths": (MODEL_WIDTH,), "imgsz": imgsz if imgsz is not None else MODEL_IMGSZ}


def make_plan(**options) -> SweepPlan:
    """A checked ``SweepPlan`` from option values; ``None`` (or a missing option) takes the default.

    Options are the plan's fields, lists given as ``"16,32,64"`` or as sequences; ``scale`` sets ``scales``
    and ``model`` (``"yolo-n"``) measures whole networks (3 channels, ``imgsz`` 320 and 640 by default).
    Raises ``InputError`` naming what is wrong and what is valid, before anything is built.
    """
    from edgeprof.pipeline import SweepPlan

    given = {key: value for key, value in options.items() if value is not None}
    model = given.pop("model", None)
    if model:
        clash = [name for name in _NOT_WITH_MODEL if name in given]
        if clash:
            raise InputError(f"--{clash[0]} does not apply to --model (a whole network fixes its own blocks and "
                             f"sizes); give --imgsz and --batch to size it")
        given.update(model_defaults(model, given.get("imgsz")))
    fields = {f.name for f in dataclasses.fields(SweepPlan)}
    values = {}
    for key, value in given.items():
        name = _OPTION_NAMES.get(key, key)
        if name not in fields:
            raise TypeError(f"make_plan() got an unknown option {key!r}; options: {', '.join(sorted(fields))}")
        if name in _INT_LISTS or name in _NAME_LISTS:
            value = _parse_list(value, key, ints=name in _INT_LISTS)
        values[name] = value
    plan = SweepPlan(**values)
    check_plan(plan)
    return plan


def _parse_list(value, option: str, ints: bool) -> tuple:
    from edgeprof.spec import parse_int_list, parse_name_list

    text = value if isinstance(value, str) else ",".join(str(v) for v in value)
    return tuple(parse_int_list(text, option) if ints else parse_name_list(text, option))


def check_plan(plan) -> None:
    """Every name in the plan and every size, checked without torch: a typo fails in milliseconds."""
    from edgeprof.quantize import QUANT_MODES
    from edgeprof.spec.blocks import BLOCK_NAMES, MODEL_NAMES, block_kind
    from edgeprof.spec.imports import is_import_path
    from edgeprof.spec.plan import SCALES, SCALING_MODES, labelled_groups

    for block in plan.blocks:
        if is_import_path(block):
            block_kind(block)  # a user BlockKind: imported and checked
            continue
        _check_choice("--blocks", "block", block, BLOCK_NAMES + MODEL_NAMES,
                      f"valid blocks: {', '.join(BLOCK_NAMES)}; whole models (--model): {', '.join(MODEL_NAMES)}; "
                      "or your own BlockKind as module.path:NAME")
    for act in (*plan.acts, plan.baseline):
        check_act(act)
    for scale in plan.scales:
        _check_choice("--scale", "scale", scale, tuple(SCALES))
    _check_choice("--scaling", "scaling mode", plan.scaling, SCALING_MODES)
    _check_choice("--exporter", "exporter", plan.exporter, EXPORTERS)
    if plan.quantize is not None:
        _check_choice("--quantize", "quantization", plan.quantize, QUANT_MODES)
    if plan.calib is not None:
        if plan.quantize != "int8":
            raise InputError("--calib needs --quantize int8: calibration samples are for static INT8 quantization "
                             f"(got --quantize {plan.quantize or 'none'})")
        check_calib(plan.calib)
    labelled_groups(plan)  # sizes: positive, a kernel no larger than the input, widths blocks can take


def _check_choice(option: str, what: str, value: str, valid: Iterable[str], listing: str | None = None) -> None:
    valid = tuple(valid)
    if value in valid:
        return
    close = difflib.get_close_matches(str(value), valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    raise InputError(f"{option}: unknown {what} {value!r}{hint} {listing or 'valid: ' + ', '.join(valid)}")


def check_act(spec: str) -> None:
    """A registered activation spec (``leakyrelu:0.2``), or a user activation by import path that imports
    (an ``ActEntry`` is parsed with its parameters; a torch module is built later, by the pipeline)."""
    from edgeprof.spec.acts import ActEntry, parse_act, split_import_spec
    from edgeprof.spec.imports import import_object, is_import_path

    if not is_import_path(spec):
        parse_act(spec)
    elif isinstance(import_object(split_import_spec(spec)[0], "activation"), ActEntry):
        parse_act(spec)


def check_calib(path: str | Path) -> Path:
    """Calibration samples: an .npy (first axis = samples) or an .npz keyed by input name, numpy's own format."""
    import numpy as np

    path = Path(path)
    expected = ("expected an .npy of samples (first axis = samples, numpy.save) or an .npz with one such array "
                "per input name (numpy.savez)")
    if not path.is_file():
        raise InputError(f"--calib {path}: no such file; {expected}")
    if path.suffix.lower() not in CALIB_SUFFIXES:
        raise InputError(f"--calib {path}: a {path.suffix or 'suffix-less'} file; {expected}")
    try:
        loaded = np.load(path, allow_pickle=False, mmap_mode="r")  # an .npz is opened lazily: nothing is read
    except (OSError, ValueError, EOFError):  # numpy's own message here is about pickles
        raise InputError(f"--calib {path}: not a numpy .npy/.npz file; {expected}") from None
    if hasattr(loaded, "close"):
        loaded.close()
    return path


def parse_threads(threads: str | int | Sequence[int]) -> list[int]:
    """``"1,2,4"`` (or an int, or ints) -> the thread counts, in the order given, without repeats; an InputError
    naming ``--threads`` for a count that is not a whole number of at least 1."""
    if isinstance(threads, int):
        items = [str(threads)]
    else:
        items = threads.split(",") if isinstance(threads, str) else [str(t) for t in threads]
    counts = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            count = int(item)
        except ValueError:
            raise InputError(f"--threads: {item!r} is not a whole number (e.g. 1, or 1,2,4 in a sweep)") from None
        if count < 1:
            raise InputError(f"--threads: thread counts must be at least 1, got {count}")
        counts.append(count)
    if not counts:
        raise InputError("--threads: no thread count given (e.g. 1, or 1,2,4 in a sweep)")
    return list(dict.fromkeys(counts))


def runtime_settings(runtime: str | None = None, threads: int = 1, opt_level: str = "all", spinning: bool = False,
                     arena: bool = True):
    """The settings of ``runtime`` (a name or ``pkg.module:Class``; default onnxruntime). onnxruntime's own options
    (``opt_level``, ``spinning``, ``arena``) are an InputError with a runtime that has no such setting, unless left
    at their defaults."""
    from dataclasses import fields

    from edgeprof.runtime.registry import get_runtime

    rt = get_runtime(runtime)
    known = {f.name for f in fields(rt.settings_class)}
    values: dict = {"threads": threads}
    for key, value, default, flag in (("opt_level", str(opt_level), "all", "--opt-level"),
                                      ("spinning", spinning, False, "--spinning"),
                                      ("arena", arena, True, "--no-arena")):
        if key in known:
            values[key] = value
        elif value != default:
            raise InputError(f"{flag} is not a setting of runtime {rt.name}; its settings: "
                             f"{', '.join(sorted(known - {'runtime'}))}")
    return rt.settings(**values)


def resolve_runtimes(text: str | Sequence[str] | None) -> tuple[list[str], str]:
    """The runtimes ``--runtimes`` names (comma-separated built-in names or ``pkg.module:Class``; ``all`` = every
    built-in runtime installed here) and a one-line note of the built-in ones ``all`` left out (not installed, with
    the extra that installs each), empty when none were. A named runtime that is not installed is an InputError
    naming its extra; an unknown name lists the valid ones."""
    from edgeprof.runtime.registry import BUILTIN, DEFAULT_RUNTIME, get_runtime, missing_runtimes

    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else (text or [])) if t.strip()]
    if not items:
        return [DEFAULT_RUNTIME], ""
    if "all" in items:
        if len(items) > 1:
            raise InputError("--runtimes all already means every installed runtime; give it alone")
        missing = missing_runtimes()
        names = [name for name in BUILTIN if name not in missing]
        note = ("not installed here, so left out: " + ", ".join(
            f"{name} (pip install 'edgeprof[{extra}]')" if extra else name for name, extra in missing.items())
        ) if missing else ""
        return names, note
    names = list(dict.fromkeys(items))
    for name in names:
        get_runtime(name)  # unknown or not installed: one line naming the valid ones or the extra
    return names, ""


def runtime_settings_list(runtimes: Sequence[str], threads: int = 1, opt_level: str = "all",
                          spinning: bool = False, arena: bool = True) -> list:
    """Each runtime's settings for one sweep over several runtimes: ``threads`` for all; onnxruntime's own options
    (``opt_level``, ``spinning``, ``arena``) for the runtimes that have them, an InputError when none of them has
    one that was set away from its default."""
    from dataclasses import fields

    from edgeprof.runtime.registry import get_runtime

    out = []
    for name in runtimes:
        rt = get_runtime(name)
        known = {f.name for f in fields(rt.settings_class)}
        values = {"threads": threads}
        for key, value in (("opt_level", str(opt_level)), ("spinning", spinning), ("arena", arena)):
            if key in known:
                values[key] = value
        out.append(rt.settings(**values))
    if not any("opt_level" in s.as_dict() for s in out):  # none takes onnxruntime's options: say so if given
        runtime_settings(runtimes[0], threads, opt_level, spinning, arena)
    return out


def profile(paths: Sequence[str | Path], settings=None, options=None, shapes: dict | None = None,
            on_progress=None, roofline: bool = False, **record) -> tuple[pd.DataFrame, Path]:
    """Measure ONNX files interleaved (ratios to the first), or the sweep of one bundle folder; no torch.
    ``settings``: one runtime's, or for a bundle several runtimes' (each measured on its own artifacts).
    ``record``: where and how the run is recorded (``RecordOptions``: csv_path, metadata, resume, append)."""
    from edgeprof.bundle import is_bundle, run_bundle
    from edgeprof.measure import MeasureOptions, SessionSettings
    from edgeprof.pipeline import profile_models

    settings = settings or SessionSettings()
    options = options or MeasureOptions()
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and is_bundle(paths[0]):
        if shapes:
            raise InputError("--shape does not apply to a bundle: its models have fixed shapes")
        return run_bundle(paths[0], settings, options, on_progress=on_progress, roofline=roofline, **record)
    if isinstance(settings, list | tuple):
        if len(settings) != 1:
            raise InputError("several runtimes apply to a bundle folder; measure ONNX files with one --runtime")
        settings = settings[0]
    folder = next((p for p in paths if p.is_dir()), None)
    if folder is not None:
        raise InputError(f"{folder} is a folder but not an edgeprof bundle (no manifest.json); give ONNX files or "
                         "one bundle folder")
    check_shapes(paths, shapes, settings)
    return profile_models(paths, settings, options, shapes=shapes, on_progress=on_progress, roofline=roofline,
                          **record)


def profile_swapped(onnx_model: str | Path, plan, settings=None, options=None, shapes: dict | None = None,
                    models_dir: Path | None = None, on_progress=None, **record) -> tuple[pd.DataFrame, Path]:
    """Your ONNX model with each of ``plan.acts`` swapped in, measured interleaved (``sweep --onnx``)."""
    from edgeprof.measure import MeasureOptions, SessionSettings
    from edgeprof.pipeline import run_onnx_swap

    settings = settings or SessionSettings()
    check_shapes([onnx_model], shapes, settings)
    return run_onnx_swap(onnx_model, plan.acts, plan.baseline, settings, options or MeasureOptions(),
                         models_dir=models_dir or default_models_dir(), shapes=shapes, on_progress=on_progress,
                         roofline=plan.roofline, **record)


def check_shapes(paths: Sequence[str | Path], shapes: dict | None, settings=None) -> None:
    """Each ``--shape`` must name an input (or a named dynamic dimension) of the models: none is ignored."""
    if not shapes:
        return
    from edgeprof.measure import SessionSettings
    from edgeprof.runtime.onnxruntime.session import check_shape_names, create_session

    check_shape_names([create_session(p, settings or SessionSettings()) for p in paths], shapes)


def acts_table() -> pd.DataFrame:
    """The activation table (``edgeprof.spec.acts``, torch-free), one row per activation: name, aliases,
    parameters with defaults, family, formula and the ONNX ops torch's TorchScript exporter writes."""
    from edgeprof.spec.acts import entries

    return pd.DataFrame([{
        "name": a.name,
        "aliases": ", ".join(a.aliases),
        "params": ", ".join(f"{p}={d:g}" for p, d in zip(a.params, a.defaults, strict=True)),
        "family": a.family,
        "formula": a.formula,
        "onnx ops (torchscript, opset 17)": a.onnx_ops or "—",
    } for a in entries()])


def per_op_table(csv_path: str | Path, run_ids: Iterable[str]) -> pd.DataFrame | None:
    """Where the time went in these runs (onnxruntime's profiler, kernel time), from the per-op CSV beside
    ``csv_path``: one row per model; ``None`` when the profiler gave nothing."""
    from edgeprof.report.table import per_op_summary
    from edgeprof.results.rows import per_op_path, read_csv

    path = per_op_path(Path(csv_path))
    if not path.exists():
        return None
    ops = read_csv(path)
    ops = ops[ops["run_id"].isin(set(run_ids))]
    return per_op_summary(ops) if len(ops) else None


def threads_warning(threads: int) -> str | None:
    """A one-line warning when ``threads`` exceeds the cores this process may use (affinity, cgroup quota)."""
    from edgeprof.measure.host import cgroup_cpu_quota, usable_cores

    cores = usable_cores()
    quota = cgroup_cpu_quota()
    limit = min(cores, max(1, int(quota))) if quota else cores
    if threads <= limit:
        return None
    why = f"a cgroup quota of {quota:g} CPUs" if quota and int(quota) < cores else f"{cores} usable cores"
    return (f"--threads {threads} is more than this machine gives edgeprof ({why}): threads will wait for a core "
            "and the timings will not show what that many cores would do")


def default_models_dir() -> Path:
    """Where exported models are cached: $EDGEPROF_MODELS_DIR, else the user's cache folder (platformdirs)."""
    if os.environ.get(MODELS_DIR_ENV):
        return Path(os.environ[MODELS_DIR_ENV])
    from platformdirs import user_cache_path

    return user_cache_path("edgeprof") / "models"
