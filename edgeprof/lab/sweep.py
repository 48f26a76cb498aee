"""One sweep on many devices: the head ships a bundle, runs each size group on each device as a Ray task (one at a
time per device, by the device's resource), and writes each device's rows, as each group finishes, to a CSV of its
own (with its per-op CSV and metadata JSON), the same files `edgeprof profile DIR` writes on the device itself.

- Faults: a device whose node dies, whose task fails or hangs past ``timeout`` is reported and left out for the
  rest of the run; its finished groups are kept and the other devices go on. ``resume`` re-runs only what the
  CSVs lack (the device's own recorder decides, as `edgeprof profile --resume` does).
- Ctrl-C: the remote tasks are cancelled, every finished row is kept, ``LabInterrupted`` (exit 130).
- ``shard``: the size groups are spread over devices of one class (one host fingerprint), each measured on one
  device, and the first group is measured on every device as the shared reference: a device whose reference
  baseline is slower than the others' median by more than ``outlier`` is reported.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from edgeprof.errors import EdgeprofError, InputError, RuntimeFailure
from edgeprof.lab.cluster import device_nodes, import_ray, resource_name
from edgeprof.lab.devices import Device, list_devices, refusals, select
from edgeprof.measure import MeasureOptions

DEFAULT_TIMEOUT_S = 1800.0
DEFAULT_OUTLIER = 0.10
LOCK = ".lab.lock"


class LabInterrupted(EdgeprofError):
    """Ctrl-C during a lab sweep: the remote tasks were cancelled, finished rows kept."""

    exit_code = 130


@dataclass(frozen=True)
class Session:
    """The runtime settings a device builds for itself (by name: the head need not have the device's runtimes)."""

    runtimes: tuple[str, ...] = ()
    threads: int = 1
    opt_level: str = "all"
    spinning: bool = False
    arena: bool = True
    cache: str = "warm"

    def as_dict(self) -> dict:
        return {"runtimes": list(self.runtimes), "threads": self.threads, "opt_level": self.opt_level,
                "spinning": self.spinning, "arena": self.arena, "cache": self.cache}


@dataclass
class LabResult:
    """What a lab sweep did: each device's CSV, the rows this run measured per device, the devices that failed or
    were refused (name -> reason), the shard's outliers (one line each) and each task's start and end on its device
    (``tasks``: device, groups, start, end, pid)."""

    out_dir: Path
    csv_paths: dict[str, Path]
    rows: dict[str, pd.DataFrame]
    failed: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    outliers: list[str] = field(default_factory=list)
    tasks: list[dict] = field(default_factory=list)

    def all_rows(self) -> dict[str, pd.DataFrame]:
        """Every row in each device's CSV (this run's and, with --resume, earlier ones)."""
        from edgeprof.results.rows import read_results

        return {name: read_results(path) for name, path in self.csv_paths.items() if path.exists()}


class TaskClock:
    """A tiny actor the device tasks tell when they start: the head times a hung task from then, not from when it
    was queued behind another sweep's task on the same device."""

    def __init__(self):
        self.starts: dict[str, float] = {}

    def started(self, key: str, when: float) -> None:
        self.starts[key] = when

    def get(self) -> dict[str, float]:
        return dict(self.starts)


def _lock(out_dir: Path):
    import fcntl
    import os

    fd = os.open(out_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise InputError(f"{out_dir} is being written by another edgeprof lab run; wait for it or give another "
                         "--out") from None
    return fd


def run_lab(
    bundle_dir: str | Path,
    out_dir: str | Path,
    devices: str = "all",
    session: Session = Session(),
    options: MeasureOptions = MeasureOptions(),
    resume: bool = False,
    shard: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
    outlier: float = DEFAULT_OUTLIER,
    roofline: bool = True,
    on_progress: Callable[[str, float], None] | None = None,
    on_rows: Callable[[str, pd.DataFrame], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    any_version: bool = False,
) -> LabResult:
    """Measure the bundle in ``bundle_dir`` on the lab's devices (``devices``: all, or names) and write
    ``out_dir/<device>.csv`` for each. Needs a connected Ray (``edgeprof.lab.cluster.connect``). A device whose
    runtime version differs from the one the bundle was made with is refused, unless ``any_version`` (then it
    runs, with a note: its rows record the version they were measured with)."""
    import dataclasses
    import os

    from edgeprof import __version__
    from edgeprof.bundle import bundle_runtimes, load_bundle
    from edgeprof.lab.shipping import ship

    ray = import_ray()
    progress = on_progress or (lambda message, fraction: None)
    note = on_note or (lambda message: None)
    if timeout <= 0:
        raise InputError(f"--timeout must be positive (seconds a size group may take on a device), got {timeout:g}")
    bundle_dir = Path(bundle_dir)
    plan, groups = load_bundle(bundle_dir)  # the head checks the bundle too, before shipping it
    made_for = bundle_runtimes(bundle_dir)
    runtimes = list(session.runtimes) or list(made_for)
    unknown = [r for r in runtimes if r not in made_for]
    if unknown:
        raise InputError(f"bundle {bundle_dir} has no artifacts for runtime {', '.join(unknown)}; it was made for "
                         f"{', '.join(made_for)}")
    session = dataclasses.replace(session, runtimes=tuple(runtimes))
    needed = {r: made_for[r] for r in runtimes}

    names = select(devices, list(device_nodes()))
    progress("probing the devices", 0.0)
    probed = list_devices(probe_busy=True, names=names, timeout=None)  # a busy device: wait for it
    refused = refusals(probed, needed, __version__)
    other_versions = version_mismatches(bundle_dir, [d for d in probed if d.name not in refused], runtimes)
    if not any_version:
        refused.update({n: f"{why}; --any-version measures it anyway" for n, why in other_versions.items()})
    gone = [n for n in names if n not in {d.name for d in probed}]
    refused.update({n: "left the lab before it could be probed" for n in gone})
    usable = [d for d in probed if d.name not in refused]
    if not usable:
        raise InputError("no device can run this sweep: " + "; ".join(f"{n}: {r}" for n, r in refused.items()))
    for name, reason in refused.items():
        note(f"device {name} refused: {reason}")
    for name, why in other_versions.items():
        if name not in refused:
            note(f"device {name}: {why}; its rows record the version they were measured with")
    if shard:
        classes: dict[str, list[str]] = {}
        for d in usable:
            classes.setdefault(d.fingerprint, []).append(d.name)
        if len(classes) > 1:
            raise InputError("--shard spreads configs over identical devices, but these differ (host fingerprint: "
                             + "; ".join(f"{fp}: {', '.join(ns)}" for fp, ns in classes.items())
                             + "); give --devices of one class")

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write results to {out_dir}: {exc.strerror or exc}") from None
    csv_paths = {d.name: out_dir / f"{d.name}.csv" for d in usable}
    held = [p for p in csv_paths.values() if p.exists() and p.stat().st_size > 0]
    if held and not resume:
        raise InputError(f"{out_dir} already holds results ({', '.join(p.name for p in held)}): add --resume to "
                         "continue that run, or give a new --out")
    lock_fd = _lock(out_dir)
    try:
        return _run(ray, bundle_dir, groups, out_dir, usable, csv_paths, refused, session, options, resume, shard,
                    timeout, outlier, roofline, plan.baseline, ship, progress, on_rows, note)
    finally:
        os.close(lock_fd)


def version_mismatches(bundle_dir: Path, devices: list[Device], runtimes: list[str]) -> dict[str, str]:
    """Device name -> one line naming each runtime whose version there differs from the one the bundle was made
    with (a device that cannot tell its version is not judged)."""
    from edgeprof.bundle import MANIFEST

    try:
        made = {r.get("name"): r.get("version") for r in json.loads((bundle_dir / MANIFEST).read_text())["runtimes"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    out = {}
    for d in devices:
        differ = [f"{r} {d.runtimes.get(r)} there, the bundle was made with {made[r]}" for r in runtimes
                  if made.get(r) and d.runtimes.get(r) not in (None, "?", made[r])]
        if differ:
            out[d.name] = ", ".join(differ)
    return out


def _existing(paths: list[Path]) -> str:
    """The rows of these CSVs as one CSV text (one header), for a device's recorder to resume from."""
    text, header = [], None
    for path in paths:
        if not path.exists() or path.stat().st_size == 0:
            continue
        lines = path.read_text().splitlines(keepends=True)
        if header is None:
            header = lines[0]
            text.append(header)
        text += [line for line in lines[1:] if line.endswith("\n")]
    return "".join(text)


def _record(csv_path: Path, result: dict) -> pd.DataFrame:
    """Append a task's rows (and per-op rows) to the device's CSV and its run to the JSON beside it."""
    from edgeprof.results.recorder import runs_of
    from edgeprof.results.rows import append_per_op, append_rows, per_op_path, to_frame, write_metadata

    append_rows(csv_path, result["rows"])
    append_per_op(per_op_path(csv_path), result["ops"])
    meta_path = csv_path.with_suffix(".json")
    try:
        runs = runs_of(json.loads(meta_path.read_text())) if meta_path.exists() else []
    except (OSError, ValueError, AttributeError):
        runs = []
    write_metadata(csv_path, {"runs": [*runs, result["run"]]})
    return to_frame(result["rows"])


def _why(exc: BaseException) -> str:
    ray = import_ray()
    cause = getattr(exc, "cause", None)
    if isinstance(cause, EdgeprofError):
        return str(cause)
    if isinstance(exc, ray.exceptions.NodeDiedError | ray.exceptions.WorkerCrashedError):
        return "its node died or left the lab mid-task"
    if isinstance(exc, ray.exceptions.TaskCancelledError):
        return "its task was cancelled"
    first = str(cause or exc).strip().splitlines()
    return f"{type(cause or exc).__name__}: {first[-1][:200] if first else ''}"


def _run(ray, bundle_dir, groups, out_dir, usable: list[Device], csv_paths, refused, session, options, resume,
         shard, timeout, outlier, roofline, baseline, ship, progress, on_rows, note) -> LabResult:
    from dataclasses import asdict

    from edgeprof.lab.tasks import measure_groups

    result = LabResult(out_dir=out_dir, csv_paths=csv_paths, rows={d.name: pd.DataFrame() for d in usable},
                       refused=dict(refused))
    n_groups = len(groups)
    if shard:
        lanes = {d.name: [0] for d in usable}  # the shared reference group, on every device
        shared = list(range(1, n_groups))
    else:
        lanes = {d.name: list(range(n_groups)) for d in usable}
        shared = []
    progress(f"shipping the bundle to {len(usable)} device(s)", 0.0)
    shipped = ship(bundle_dir)
    head_node = ray.get_runtime_context().get_node_id()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    clock = ray.remote(TaskClock).options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
        head_node, soft=False)).remote()  # beside this driver: it lives as long as the run
    sweep_id = uuid.uuid4().hex[:12]
    import sys

    run_info = {"sweep_id": sweep_id, "shard": shard, "devices": [d.name for d in usable],
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}  # the head's, not the Ray worker's
    task = ray.remote(measure_groups)
    inflight: dict = {}  # ref -> (device, groups, key, submitted)
    reasons: dict[str, str] = {}  # ref key -> why the head cancelled it
    done = 0

    def submit(name: str, gs: list[int]) -> None:
        key = f"{sweep_id}:{name}:{','.join(map(str, gs))}"
        existing = _existing(list(csv_paths.values()) if shard else [csv_paths[name]]) if resume else ""
        ref = task.options(num_cpus=0, resources={resource_name(name): 1}, max_retries=0,
                           name=f"edgeprof-lab:{name}:{gs}").remote(
            shipped, gs, session.as_dict(), asdict(options), existing, name, run_info, clock, key, roofline)
        inflight[ref] = (name, gs, key, time.time())

    def next_work(name: str) -> list[int] | None:
        if lanes.get(name):
            return [lanes[name].pop(0)]
        if shared:
            return [shared.pop(0)]
        return None

    def fail(name: str, gs: list[int], why: str) -> None:
        result.failed[name] = why
        note(f"device {name} failed: {why}; its finished groups are kept, the run goes on without it")
        lanes.pop(name, None)
        if shard:
            shared[:0] = [g for g in gs if g != 0]  # another device of the class measures it

    try:
        busy = set()
        while True:
            for name in [d.name for d in usable]:
                if name in busy or name in result.failed:
                    continue
                gs = next_work(name)
                if gs is not None:
                    submit(name, gs)
                    busy.add(name)
            if not inflight:
                break
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                name, gs, key, _submitted = inflight.pop(ref)
                busy.discard(name)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    fail(name, gs, reasons.get(key) or _why(exc))
                    continue
                frame = _record(csv_paths[name], out)
                result.rows[name] = pd.concat([result.rows[name], frame]) if len(result.rows[name]) else frame
                result.tasks.append({k: out[k] for k in ("device", "groups", "start", "end", "pid")})
                done += 1
                left = sum(len(v) for v in lanes.values()) + len(shared) + len(inflight)
                progress(f"{name}: size group {gs[0] + 1}/{n_groups} done", done / max(done + left, 1))
                if on_rows is not None and len(frame):
                    on_rows(name, frame)
            if not inflight:
                continue
            try:
                starts = ray.get(clock.get.remote(), timeout=30)
            except ray.exceptions.RayError:  # the clock is beside this driver; if it cannot answer, time from queuing
                starts = {key: submitted for (_, _, key, submitted) in inflight.values()}
            alive = device_nodes()
            now = time.time()
            for ref, (name, gs, key, _submitted) in list(inflight.items()):
                if key in reasons:
                    continue
                started = starts.get(key)
                if started is not None and now - started > timeout:
                    reasons[key] = f"size group {gs[0] + 1} did not finish within --timeout {timeout:g} s; cancelled"
                    ray.cancel(ref, force=True)
                elif started is None and name not in alive:
                    reasons[key] = "it left the lab"
                    ray.cancel(ref, force=True)
    except KeyboardInterrupt:
        for ref in inflight:
            ray.cancel(ref, force=True)
        kept = sum(len(f) for f in result.rows.values())
        raise LabInterrupted(f"interrupted; the remote tasks were cancelled and {kept} measured rows kept in "
                             f"{out_dir}; to continue, run the same command with --out {out_dir} --resume") from None
    except BaseException:  # rows that cannot be written, a bug: no task is left running on a device
        for ref in inflight:
            ray.cancel(ref, force=True)
        raise
    if shard:
        result.outliers = _outliers(result.all_rows(), groups[0][0], baseline, outlier)
    if len(result.failed) == len(usable):
        raise RuntimeFailure("every device failed: " + "; ".join(f"{n}: {r}" for n, r in result.failed.items()))
    return result


def _outliers(frames: dict[str, pd.DataFrame], reference_group, baseline: str, outlier: float) -> list[str]:
    """Devices whose time for the shared reference (the first group's baseline block) is over the devices' median
    by more than ``outlier`` (a fraction), one line each, with the figures."""
    import statistics

    spec = reference_group[0]
    times = {}
    for name, df in frames.items():
        if not len(df):
            continue
        hit = df[(df["block"] == spec.block) & (df["width"] == spec.width) & (df["imgsz"] == spec.imgsz)
                 & (df["act"] == baseline) & (df["status"] == "ok")]
        if len(hit):
            times[name] = float(hit["median_ms"].iloc[-1])
    if len(times) < 2:
        return []
    middle = statistics.median(times.values())
    return [f"{name}: the shared reference ({spec.block} w{spec.width} {spec.imgsz}px {baseline}) took {t:.4g} ms, "
            f"{t / middle:.2f}x the devices' median {middle:.4g} ms: a slow outlier"
            for name, t in sorted(times.items()) if t > middle * (1 + outlier)]


def cross_device_table(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per block size and activation, one column per device: the ratio to the baseline there (its 95% CI
    in brackets), for rows measured fine; empty where a device has no such row."""
    cells: dict[tuple, dict[str, str]] = {}
    order: list[tuple] = []
    for name, df in frames.items():
        for _, r in df.iterrows():
            if r.get("status") not in ("ok",):
                continue
            key = (r["block"], f"w{r['width']} {r['imgsz']}px", r["act"], r["runtime"])
            if key not in cells:
                cells[key] = {}
                order.append(key)
            ratio, lo, hi = r.get("ratio_to_baseline"), r.get("ratio_ci95_low"), r.get("ratio_ci95_high")
            if pd.isna(ratio):
                cells[key][name] = "—"
            elif pd.isna(lo) or pd.isna(hi):
                cells[key][name] = f"{ratio:.2f}×"
            else:
                cells[key][name] = f"{ratio:.2f}× [{lo:.2f}–{hi:.2f}]"
    several_runtimes = len({k[3] for k in order}) > 1
    rows = []
    for key in order:
        row = {"block": key[0], "size": key[1], "act": key[2], **({"runtime": key[3]} if several_runtimes else {})}
        row.update({name: cells[key].get(name, "") for name in frames})
        rows.append(row)
    return pd.DataFrame(rows)
