"""The models a gate compares, each with the name that matches it to its baseline.

A model's name is ``BlockSpec.slug()`` for a block edgeprof built (``conv-k3s1_mish_w32_i160_b1``)
and the file's stem for an ONNX file (``models/detector.onnx`` -> ``detector``), so the same command
line before and after a change yields the same names. Building blocks needs torch; that import
happens only when sweep options are given, so checking ONNX files works without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeprof.errors import InputError
from edgeprof.pipeline import DEFAULT_ACTS
from edgeprof.spec import file_sha256


@dataclass(frozen=True)
class GateModel:
    name: str
    path: Path
    sha256: str
    source: str  # "onnx" (a file the user gave) or "block" (built by edgeprof)
    spec: dict | None = None  # BlockSpec.as_dict() for built blocks
    export: dict | None = None  # exporter, opset, seed of built blocks

    def describe(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "source": self.source, "spec": self.spec,
                "export": self.export, "original_path": str(self.path)}


@dataclass(frozen=True)
class BuildOptions:
    """Sweep-style options that say which blocks to build; ``None`` fields were not given."""

    acts: str | None = None
    blocks: str | None = None
    widths: str | None = None
    depths: str | None = None
    imgsz: str | None = None
    batch: str | None = None
    kernel: int | None = None
    stride: int | None = None

    def given(self) -> bool:
        return any(v is not None for v in (self.acts, self.blocks, self.widths, self.depths, self.imgsz,
                                           self.batch, self.kernel, self.stride))


# What `baseline save` builds when given neither files nor build options: the default sweep's blocks.
DEFAULT_BUILD = BuildOptions(acts=",".join(DEFAULT_ACTS))


def choose_models(files: list[Path] | None, build: BuildOptions, models_dir: Path, opset: int = 17,
                  exporter: str = "torchscript", default: BuildOptions | None = DEFAULT_BUILD,
                  on_progress=None) -> list[GateModel] | None:
    """The models a gate measures: ONNX files, or blocks built from options, never both; with neither, the
    ``default`` blocks (``None``: the caller decides, as `check` does by rebuilding the baseline's blocks)."""
    if files and build.given():
        raise InputError("give either ONNX files or sweep options (--acts, --widths, ...), not both")
    if files:
        return from_files(files)
    chosen = build if build.given() else default
    if chosen is None:
        return None
    return from_options(chosen, models_dir, opset=opset, exporter=exporter, on_progress=on_progress)





def from_files(paths: list[Path]) -> list[GateModel]:
    """ONNX files named by their stem; the names must be unique."""
    from edgeprof.runtime.onnxruntime.session import check_model_file

    models: list[GateModel] = []
    seen: dict[str, Path] = {}
    for p in paths:
        path = check_model_file(p)
        if path.suffix.lower() != ".onnx":
            raise InputError(f"{path}: expected an .onnx file")
        name = path.stem
        if name in seen:
            raise InputError(f"two models are named {name!r} ({seen[name]} and {path}); models are matched to the "
                             f"baseline by file stem, so give them distinct file names")
        seen[name] = path
        models.append(GateModel(name=name, path=path, sha256=file_sha256(path), source="onnx"))
    return models


def plan_from_options(opts: BuildOptions):
    """A SweepPlan from the options given, with the sweep's defaults for the rest."""
    from edgeprof.pipeline import SweepPlan
    from edgeprof.spec import parse_int_list, parse_name_list

    base = SweepPlan()
    return SweepPlan(
        acts=tuple(parse_name_list(opts.acts, "acts")) if opts.acts is not None else base.acts,
        blocks=tuple(parse_name_list(opts.blocks, "blocks")) if opts.blocks is not None else base.blocks,
        widths=tuple(parse_int_list(opts.widths, "widths")) if opts.widths is not None else base.widths,
        depths=tuple(parse_int_list(opts.depths, "depths")) if opts.depths is not None else base.depths,
        imgsz=tuple(parse_int_list(opts.imgsz, "imgsz")) if opts.imgsz is not None else base.imgsz,
        batch=tuple(parse_int_list(opts.batch, "batch")) if opts.batch is not None else base.batch,
        kernel=opts.kernel if opts.kernel is not None else base.kernel,
        stride=opts.stride if opts.stride is not None else base.stride,
    )


def specs_from_options(opts: BuildOptions) -> list:
    """The BlockSpecs the options describe (the sweep's groups, flattened), activations canonical."""
    from edgeprof.api import check_plan

    plan = plan_from_options(opts)
    check_plan(plan)  # names and sizes, before torch is imported

    from edgeprof.blocks.activations import canonical_act
    from edgeprof.pipeline import plan_groups
    from edgeprof.spec import BlockSpec

    specs = [BlockSpec(**{**spec.as_dict(), "act": canonical_act(spec.act)}) for group in plan_groups(plan)
             for spec in group]
    return list(dict.fromkeys(specs))


def build(specs: list, models_dir: Path, opset: int = 17, exporter: str = "torchscript", seed: int = 0,
          on_progress=None) -> list[GateModel]:
    """Export (or reuse from the cache) each block; names are their slugs."""
    from edgeprof.convert.onnx_export import export_block

    progress = on_progress or (lambda message, fraction: None)
    models: list[GateModel] = []
    for i, spec in enumerate(specs):
        progress(f"exporting {spec.slug()}", i / max(1, len(specs)))
        result = export_block(spec, Path(models_dir), opset=opset, exporter=exporter, seed=seed)
        models.append(GateModel(
            name=result.spec.slug(), path=Path(result.path), sha256=result.onnx_sha256, source="block",
            spec=result.spec.as_dict(), export={"exporter": result.exporter, "opset": result.opset, "seed": seed},
        ))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise InputError("two blocks have the same name; give each size or activation once")
    return models


def from_options(opts: BuildOptions, models_dir: Path, opset: int = 17, exporter: str = "torchscript",
                 seed: int = 0, on_progress=None) -> list[GateModel]:
    return build(specs_from_options(opts), models_dir, opset, exporter, seed, on_progress)
