"""The lab end to end on a multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``): every node a
device with its own ``edgeprof-device:NAME`` resource. A small sweep on every device, a device killed mid-run and
the run resumed, two sweeps at once never measuring on one device at the same time, a device that lacks the
bundle's runtime refused. Skipped where Ray is not installed (the ``lab`` extra)."""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest
from typer.testing import CliRunner

ray = pytest.importorskip("ray", reason="the lab tests need Ray: pip install 'edgeprof[lab]'")
pytest.importorskip("torch", reason="the lab's head builds its bundle with torch")

from edgeprof.cli import app  # noqa: E402
from edgeprof.lab import run_lab  # noqa: E402
from edgeprof.measure import MeasureOptions  # noqa: E402
from edgeprof.results.rows import read_results  # noqa: E402
from tests.conftest import one_line_error  # noqa: E402

runner = CliRunner()
QUICK = MeasureOptions(sessions=1, max_time=0.2, min_samples=6, rel_ci=0.5)
ACTS = ["hardswish", "relu"]


def _device(name: str) -> dict:
    return {"num_cpus": 0, "resources": {f"edgeprof-device:{name}": 1}}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A head node that is device dev-a, and devices dev-b and dev-c; the test process is the lab's head."""
    from ray.cluster_utils import Cluster

    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEPROF_LAB_DIR", str(tmp_path_factory.mktemp("lab-devices")))
    mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "resources": {"edgeprof-device:dev-a": 1}})
    nodes = {"dev-b": cluster.add_node(**_device("dev-b")), "dev-c": cluster.add_node(**_device("dev-c"))}
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster, nodes
    finally:
        ray.shutdown()
        cluster.shutdown()
        mp.undo()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """Two size groups (imgsz 16 and 24) of two activations: quick to measure."""
    from edgeprof.api import make_plan
    from edgeprof.bundle import make_bundle

    plan = make_plan(acts=",".join(ACTS), widths="8", imgsz="16,24", act_alone=False, roofline=False)
    return make_bundle(plan, tmp_path_factory.mktemp("lab") / "bundle").parent


def _configs(path) -> list[tuple]:
    df = read_results(path)
    return sorted((r["act"], int(r["imgsz"])) for _, r in df.iterrows())


def _run(bundle, out, **kwargs):
    return run_lab(bundle, out, options=QUICK, roofline=False, timeout=600, **kwargs)


def test_devices_lists_every_node_with_its_runtimes(lab):
    result = runner.invoke(app, ["lab", "devices", "--format", "json"])
    assert result.exit_code == 0, result.output
    listed = {d["device"]: d for d in json.loads(result.output)}
    assert set(listed) >= {"dev-a", "dev-b", "dev-c"}
    assert all("onnxruntime" in d["runtimes"] and d["busy"] == "no" and d["fingerprint"] for d in listed.values())


def test_sweep_on_every_device_kill_one_then_resume(lab, bundle, tmp_path):
    cluster, nodes = lab
    out = tmp_path / "run"
    driver = ray.get_runtime_context().get_node_id()
    # the device to kill: a node this test process (the lab's head) is not attached to
    victim = next(name for name, node in nodes.items() if node.unique_id != driver)
    others = sorted({"dev-a", "dev-b", "dev-c"} - {victim})
    killed = []

    def on_rows(device, rows):  # the victim dies after its first size group, before its second is sent
        if device == victim and not killed:
            cluster.remove_node(nodes[victim], allow_graceful=False)
            killed.append(device)

    result = _run(bundle, out, on_rows=on_rows)
    assert killed == [victim]
    assert list(result.failed) == [victim] and "left the lab" in result.failed[victim]
    full = sorted((a, s) for a in ACTS for s in (16, 24))
    assert all(_configs(out / f"{name}.csv") == full for name in others)
    first = _configs(out / f"{victim}.csv")
    assert len(first) == 2 and len({s for _, s in first}) == 1  # its finished group is kept
    assert (out / "dev-a-ops.csv").exists() and json.loads((out / "dev-a.json").read_text())["runs"]

    nodes[victim] = cluster.add_node(**_device(victim))  # the device comes back
    cluster.wait_for_nodes()
    again = _run(bundle, out, resume=True)
    assert not again.failed
    assert _configs(out / f"{victim}.csv") == full  # only the missing group was measured
    assert len(again.rows[victim]) == 2 and all(len(again.rows[name]) == 0 for name in others)

    # `edgeprof report` reads the per-device files; the CLI's cross-device table has a column per device
    table = runner.invoke(app, ["lab", "sweep", "--bundle", str(bundle), "--out", str(out), "--resume", "--quiet",
                                "--format", "md", "--sessions", "1", "--max-time", "0.2", "--min-samples", "6"])
    assert table.exit_code == 0, table.output
    header = next(line for line in table.output.splitlines() if line.startswith("| block"))
    assert all(name in header for name in ("dev-a", "dev-b", "dev-c"))
    print(table.output)
    report = runner.invoke(app, ["report", *(str(out / f"{n}.csv") for n in ("dev-a", "dev-b", "dev-c")), "--out",
                                 str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    assert (tmp_path / "report" / "report.md").exists()


def test_a_task_past_its_timeout_is_cancelled_and_its_device_freed(lab, bundle, tmp_path):
    from edgeprof.errors import RuntimeFailure
    from edgeprof.lab.cluster import busy_devices

    with pytest.raises(RuntimeFailure, match=r"dev-b: size group 1 did not finish within --timeout 0.5 s"):
        run_lab(bundle, tmp_path / "t", devices="dev-b", options=QUICK, roofline=False, timeout=0.5)
    deadline = time.monotonic() + 60
    while busy_devices(["dev-b"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not busy_devices(["dev-b"])  # the cancelled task gave the device back


def test_two_sweeps_at_once_never_share_a_device(lab, bundle, tmp_path):
    results, errors = {}, []

    def sweep(tag):
        try:
            results[tag] = _run(bundle, tmp_path / tag, devices="dev-a,dev-b")
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=sweep, args=(tag,)) for tag in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors
    for device in ("dev-a", "dev-b"):
        spans = sorted((t["start"], t["end"]) for r in results.values() for t in r.tasks if t["device"] == device)
        assert len(spans) == 4  # two size groups from each sweep
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end, f"{device}: two measurements overlapped ({spans})"


def test_device_lacking_the_runtime_is_refused_before_anything_runs(lab, bundle, tmp_path):
    """A bundle that also needs a runtime no device has (as from a head with more runtimes installed)."""
    needy = tmp_path / "needy"
    shutil.copytree(bundle, needy)
    manifest = json.loads((needy / "manifest.json").read_text())
    manifest["runtimes"].append({"name": "tensorrt", "version": "10.0", "extra": "tensorrt"})
    (needy / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["lab", "sweep", "--bundle", str(needy), "--out", str(tmp_path / "out"),
                                 "--devices", "dev-a", "--quiet"])
    line = one_line_error(result)
    assert "dev-a: runtime tensorrt not installed (pip install 'edgeprof[tensorrt]' on the device)" in line
    assert not (tmp_path / "out" / "dev-a.csv").exists()


def test_unknown_device_is_one_line(lab, bundle, tmp_path):
    result = runner.invoke(app, ["lab", "sweep", "--bundle", str(bundle), "--out", str(tmp_path / "o"),
                                 "--devices", "dev-z"])
    assert "no device named dev-z in the lab; devices: dev-a, dev-b" in one_line_error(result)


def test_shard_spreads_groups_and_measures_the_reference_everywhere(lab, bundle, tmp_path):
    result = _run(bundle, tmp_path / "shard", devices="dev-a,dev-b", shard=True)
    assert not result.failed
    groups = sorted(g for t in result.tasks for g in t["groups"])
    assert groups == [0, 0, 1]  # the reference on both devices, the other group on one
    assert isinstance(result.outliers, list)


def test_check_on_every_device_names_the_devices_that_regressed(lab, tmp_path):
    """A baseline of Conv+Relu and a current model of the same name that is Conv+Mish (several times slower): the
    gate regresses on every device, and the lab's one line names each."""
    from edgeprof.gate.check import save_baseline
    from edgeprof.gate.measure import GateOptions
    from edgeprof.gate.models import BuildOptions, choose_models
    from edgeprof.lab.check import check_devices, outcome
    from edgeprof.measure import SessionSettings
    from tests.conftest import conv_act_model

    quick = GateOptions(block_ms=5, rounds=4, first_sessions=4, max_sessions=4, max_sessions_noisy=8,
                        save_sessions=4, warmup_s=0.02)
    (tmp_path / "src").mkdir()
    (tmp_path / "cur").mkdir()
    relu = conv_act_model(tmp_path / "src" / "block.onnx", "relu", channels=16, size=32)
    mish = conv_act_model(tmp_path / "cur" / "block.onnx", "mish", channels=16, size=32)
    save_baseline(choose_models([relu], BuildOptions(), tmp_path / "m"), tmp_path / "baseline", SessionSettings(),
                  quick)
    current = choose_models([mish], BuildOptions(), tmp_path / "m")
    reports, reasons = check_devices(tmp_path / "baseline", current, "dev-a,dev-b", options=quick)
    assert not reasons and set(reports) == {"dev-a", "dev-b"}
    code, message = outcome(reports, reasons)
    assert code == 1 and message.startswith("regressed on dev-a: ") and "; dev-b: " in message
