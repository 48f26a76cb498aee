"""The lab's parts that need no Ray cluster: the missing-Ray message, device selection and refusal, where the head
listens, shipping, the cross-device table, and the device task run without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from test_torch_free import BLOCK_TORCH
from typer.testing import CliRunner

from edgeprof.cli import app
from edgeprof.errors import InputError
from edgeprof.lab.cluster import is_public, join_command, public_head_warning
from edgeprof.lab.devices import Device, refusals, select
from edgeprof.lab.sweep import cross_device_table
from tests.conftest import one_line_error

runner = CliRunner()


@pytest.mark.parametrize("command", [["lab", "devices"], ["lab", "sweep", "--acts", "relu"],
                                     ["lab", "join", "10.0.0.5", "--name", "pi5"]])
def test_without_ray_one_line_names_the_extra(monkeypatch, command):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    line = one_line_error(runner.invoke(app, command))
    assert "pip install 'edgeprof[lab]'" in line


def test_lab_help_works_without_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    result = runner.invoke(app, ["lab", "sweep", "--help"])
    assert result.exit_code == 0 and "--devices" in result.output and "--shard" in result.output


def test_select_devices():
    assert select("all", ["a", "b"]) == ["a", "b"]
    assert select("b,a,b", ["a", "b"]) == ["b", "a"]
    with pytest.raises(InputError, match="no device named c in the lab; devices: a, b"):
        select("a,c", ["a", "b"])
    with pytest.raises(InputError, match="give it alone"):
        select("all,a", ["a", "b"])
    with pytest.raises(InputError, match="no device in the lab"):
        select("all", [])


def _device(name, runtimes, version="0.1.0", **info):
    return Device(name, "node", "10.0.0.2", info={"runtimes": runtimes, "edgeprof": version,
                                                  "host_fingerprint": "f", **info})


def test_refusals_name_the_missing_runtime_and_its_extra():
    devices = [_device("ok", {"onnxruntime": "1.32.0", "ncnn": "1.0"}),
               _device("bare", {"onnxruntime": "1.32.0"}),
               _device("old", {"onnxruntime": "1.32.0", "ncnn": "1.0"}, version="0.0.9"),
               Device("gone", "node", "", info={"error": "probe failed: NodeDiedError"})]
    out = refusals(devices, {"onnxruntime": "", "ncnn": "ncnn"}, "0.1.0")
    assert "ok" not in out
    assert out["bare"] == "runtime ncnn not installed (pip install 'edgeprof[ncnn]' on the device)"
    assert "edgeprof 0.0.9 there, 0.1.0 here" in out["old"]
    assert out["gone"] == "probe failed: NodeDiedError"


def test_public_addresses_are_told_apart():
    assert not is_public("10.1.2.3") and not is_public("192.168.0.9:6379") and not is_public("127.0.0.1")
    assert not is_public("fd00::1")
    assert is_public("8.8.8.8") and is_public("8.8.8.8:6379")
    assert public_head_warning("10.0.0.5") is None
    assert "no authentication" in public_head_warning("8.8.8.8")


def test_join_command_names_the_device_resource():
    command = join_command("10.0.0.5", "jetson-1")
    assert command[1:4] == ["start", "--address", "10.0.0.5:6379"]
    assert json.loads(command[command.index("--resources") + 1]) == {"edgeprof-device:jetson-1": 1}
    assert command[command.index("--num-cpus") + 1] == "0" and "--disable-usage-stats" in command
    with pytest.raises(InputError, match="device name"):
        join_command("10.0.0.5", "bad name")


def test_join_dry_run_prints_the_command(monkeypatch):
    pytest.importorskip("ray", reason="needs Ray: pip install 'edgeprof[lab]'")
    result = runner.invoke(app, ["lab", "join", "10.0.0.5", "--name", "pi5", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "start --address 10.0.0.5:6379" in result.output and "edgeprof-device:pi5" in result.output


def test_cross_device_table_one_column_per_device():
    def rows(ratio):
        return pd.DataFrame([
            {"block": "conv", "width": 8, "imgsz": 16, "act": "relu", "runtime": "onnxruntime", "status": "ok",
             "ratio_to_baseline": 1.0, "ratio_ci95_low": 1.0, "ratio_ci95_high": 1.0},
            {"block": "conv", "width": 8, "imgsz": 16, "act": "mish", "runtime": "onnxruntime", "status": "ok",
             "ratio_to_baseline": ratio, "ratio_ci95_low": ratio - 0.1, "ratio_ci95_high": ratio + 0.1},
            {"block": "conv", "width": 8, "imgsz": 16, "act": "silu", "runtime": "onnxruntime", "status": "failed",
             "ratio_to_baseline": None, "ratio_ci95_low": None, "ratio_ci95_high": None}])

    table = cross_device_table({"pi5": rows(3.0), "x86": rows(2.0)})
    assert list(table.columns) == ["block", "size", "act", "pi5", "x86"]
    mish = table[table["act"] == "mish"].iloc[0]
    assert mish["pi5"] == "3.00× [2.90–3.10]" and mish["x86"] == "2.00× [1.90–2.10]"
    assert "silu" not in set(table["act"])  # a failed row is no ratio




@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    pytest.importorskip("torch")
    from edgeprof.api import make_plan
    from edgeprof.bundle import make_bundle

    plan = make_plan(acts="relu,hardswish", widths="8", imgsz="16,24", act_alone=False, roofline=False)
    return make_bundle(plan, tmp_path_factory.mktemp("lab") / "bundle").parent


def test_device_task_runs_without_torch_and_checks_the_manifest(tiny_bundle, tmp_path):
    """The device side, run as a device runs it (no Ray needed to call it): unpacks the shipped files, checks them
    against the manifest, measures one size group, returns rows; with torch unimportable."""
    import pickle

    from edgeprof.lab.shipping import bundle_files, pack

    digest, files = pack({name: tiny_bundle / name for name in bundle_files(tiny_bundle)})
    shipped = tmp_path / "shipped.pkl"
    shipped.write_bytes(pickle.dumps({"digest": digest, "payload": [files]}))
    code = BLOCK_TORCH + (
        "import pickle, json\n"
        "from edgeprof.lab.tasks import measure_groups\n"
        f"shipped = pickle.loads(open({str(shipped)!r}, 'rb').read())\n"
        "session = {'runtimes': ['onnxruntime'], 'threads': 1, 'opt_level': 'all', 'spinning': False, 'arena': True,"
        " 'cache': 'warm'}\n"
        "options = {'sessions': 1, 'max_time': 0.2, 'min_samples': 6, 'rel_ci': 0.5}\n"
        "out = measure_groups(shipped, [1], session, options, '', 'dev-x', {}, roofline=False)\n"
        "print(json.dumps({'acts': sorted(r['act'] for r in out['rows']),"
        " 'imgsz': sorted({int(r['imgsz']) for r in out['rows']}), 'torch': 'torch' in sys.modules}))\n")
    env = {**__import__("os").environ, "EDGEPROF_LAB_DIR": str(tmp_path / "lab")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"acts": ["hardswish", "relu"], "imgsz": [24], "torch": False}

    # a file changed on the device after unpacking: refused by its SHA-256 before anything runs
    unpacked = tmp_path / "lab" / "dev-x" / digest
    model = next((unpacked / "models").glob("*.onnx"))
    model.write_bytes(model.read_bytes() + b"x")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0 and "does not match its manifest" in proc.stderr


@pytest.mark.parametrize("args, expected", [
    (["--resume"], "--resume needs --out"),
    (["--timeout", "0"], "--timeout must be positive"),
    (["--outlier", "-1"], "--outlier must be a positive fraction"),
    (["--bundle", "b", "--acts", "relu"], "leave out --acts"),
])
def test_sweep_usage_errors_are_one_line_before_ray_starts(args, expected):
    pytest.importorskip("ray", reason="needs Ray: pip install 'edgeprof[lab]'")
    import ray

    line = one_line_error(runner.invoke(app, ["lab", "sweep", *args]))
    assert expected in line
    assert not ray.is_initialized()  # refused before any Ray instance was started


def test_shard_outlier_is_the_device_slower_than_the_median_by_more_than_the_fraction():
    from edgeprof.lab.sweep import _outliers
    from edgeprof.spec import BlockSpec

    spec = BlockSpec(block="conv", act="relu", width=8, imgsz=16)

    def frame(ms):
        return pd.DataFrame([{"block": "conv", "width": 8, "imgsz": 16, "act": "relu", "status": "ok",
                              "median_ms": ms},
                             {"block": "conv", "width": 8, "imgsz": 16, "act": "mish", "status": "ok",
                              "median_ms": ms * 9}])

    lines = _outliers({"a": frame(1.00), "b": frame(1.05), "c": frame(1.30)}, [spec], "relu", 0.10)
    assert len(lines) == 1 and lines[0].startswith("c: ") and "1.24x the devices' median 1.05 ms" in lines[0]
    assert _outliers({"a": frame(1.00), "b": frame(1.05)}, [spec], "relu", 0.10) == []


def test_a_device_with_another_runtime_version_is_named_with_both_versions(tmp_path):
    """run_lab refuses such a device (unless --any-version) with this line, before anything runs."""
    from edgeprof.lab.sweep import version_mismatches

    (tmp_path / "manifest.json").write_text(json.dumps({"runtimes": [{"name": "onnxruntime", "version": "1.32.0"}]}))
    found = version_mismatches(tmp_path, [_device("same", {"onnxruntime": "1.32.0"}),
                                          _device("older", {"onnxruntime": "1.20.1"}),
                                          _device("unknown", {"onnxruntime": "?"})], ["onnxruntime"])
    assert found == {"older": "onnxruntime 1.20.1 there, the bundle was made with 1.32.0"}
