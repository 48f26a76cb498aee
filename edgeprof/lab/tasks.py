"""What runs on a device: the probe (what this machine is and which runtimes it has) and the measurement of size
groups of a shipped bundle. No torch and no Ray import here: the head wraps these functions as Ray tasks, and a
device needs only the on-device install (``pip install 'edgeprof[lab]'`` plus its runtimes)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from edgeprof.lab.shipping import materialize


def probe() -> dict:
    """This machine: host info and fingerprint, the edgeprof version, the built-in runtimes installed with their
    versions (found without importing them)."""
    from edgeprof import __version__
    from edgeprof.measure.host import fingerprint, host_info
    from edgeprof.runtime.registry import BUILTIN, get_runtime, missing_runtimes

    info = host_info()
    missing = missing_runtimes()
    runtimes = {}
    for name in BUILTIN:
        if name not in missing:
            try:
                runtimes[name] = get_runtime(name).version() or "?"
            except Exception:  # noqa: BLE001 (a runtime that cannot say its version is still listed)
                runtimes[name] = "?"
    return {"host": info, "host_fingerprint": fingerprint(info), "edgeprof": __version__, "runtimes": runtimes,
            "pid": os.getpid()}


def measure_groups(shipped: dict, group_indices: list[int], session: dict, options: dict, existing_csv: str,
                   device: str, run_info: dict, clock=None, key: str = "", roofline: bool = True) -> dict:
    """Measure size groups ``group_indices`` of the shipped bundle here, as `edgeprof profile DIR` would (the same
    interleaved rounds, the same rows), and return the rows, the per-op rows and this run's metadata.

    ``shipped``: the bundle as ``edgeprof.lab.shipping.ship`` put it in the object store (fetched only when this
    device has not unpacked that bundle before). ``existing_csv``: the text of the rows already measured
    (with --resume; configs there are not measured again). ``clock``: an actor told when the task starts (the head
    times hung tasks from then)."""
    import dataclasses
    import json

    from edgeprof.api import runtime_settings_list
    from edgeprof.bundle import load_bundle
    from edgeprof.measure import MeasureOptions
    from edgeprof.pipeline import SweepPlan, run_groups
    from edgeprof.results.rows import per_op_path, read_csv

    started = time.time()
    if clock is not None:
        clock.started.remote(key, started)
    bundle_dir = materialize(shipped, device)
    names = session["runtimes"]
    settings = runtime_settings_list(names, session["threads"], session["opt_level"], session["spinning"],
                                     session["arena"])
    settings = [dataclasses.replace(s, cache=session["cache"]) for s in settings]
    loaded = {rt.runtime: load_bundle(bundle_dir, rt.runtime) for rt in settings}  # SHA-256 of every file checked
    plan, groups = loaded[settings[0].runtime]
    plan = SweepPlan(**{**plan.as_dict(), "roofline": plan.roofline and roofline})
    chosen = [(groups[g][0], groups[g][1]) for g in group_indices]
    index = {id(groups[g][0]): g for g in group_indices}

    def get_models(group, stage, runtime):
        return loaded[runtime.runtime][1][index[id(group)]][2]

    with tempfile.TemporaryDirectory(prefix="edgeprof-lab-") as tmp:
        csv_path = Path(tmp) / f"{device}.csv"
        if existing_csv:
            csv_path.write_text(existing_csv)
        lab = {"device": device, "groups": group_indices, **{k: v for k, v in run_info.items() if k != "command"}}
        metadata = {"bundle": str(bundle_dir), "lab": lab, **({"command": run_info["command"]}
                                                               if run_info.get("command") else {})}
        df, path = run_groups(plan, chosen, get_models, settings, MeasureOptions(**options), None,
                              csv_path=csv_path, metadata=metadata, resume=bool(existing_csv))
        run_id = df["run_id"].iloc[0] if len(df) else None
        rows = df.to_dict("records")  # this run's rows only (the recorder's own, with the schema's dtypes)
        ops_file = per_op_path(path)
        ops = []
        if run_id is not None and ops_file.exists():
            frame = read_csv(ops_file)
            ops = frame[frame["run_id"] == run_id].to_dict("records")
        runs = json.loads(path.with_suffix(".json").read_text()).get("runs") or [{}]
    return {"rows": rows, "ops": ops, "run": runs[-1], "device": device, "groups": group_indices,
            "start": started, "end": time.time(), "pid": os.getpid()}


def check_on_device(shipped: dict, current: list[dict], mode: str, rule: dict, options: dict, shapes: dict | None,
                    device: str, clock=None, key: str = "") -> dict:
    """Run the regression gate here: the shipped baseline folder against the shipped current models (``current``:
    each one's ``GateModel`` fields, its path relative to the shipped folder). Returns the ``CheckReport``."""
    from edgeprof.gate import baseline as bl
    from edgeprof.gate.check import CheckInterrupted, run_check
    from edgeprof.gate.decide import DecisionRule
    from edgeprof.gate.measure import GateOptions
    from edgeprof.gate.models import GateModel

    started = time.time()
    if clock is not None:
        clock.started.remote(key, started)
    folder = materialize(shipped, device)
    base = bl.load(folder / "baseline")
    models = [GateModel(**{**m, "path": folder / m["path"]}) for m in current]
    try:
        report = run_check(base, models, mode=mode, rule=DecisionRule(**rule), options=GateOptions(**options),
                           shapes=shapes)
    except CheckInterrupted as exc:
        report = exc.report
    return {"report": report, "device": device, "start": started, "end": time.time(), "pid": os.getpid()}
