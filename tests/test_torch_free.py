"""The profiler runs where torch is not installed: proved by importing and running with torch unimportable."""

import json
import subprocess
import sys

# torch made unimportable as on a device without it: a finder that refuses it. (Not sys.modules['torch'] = None:
# libraries such as scipy take a 'torch' key in sys.modules to mean torch is loaded, and then fail on None.)
BLOCK_TORCH = (
    "import sys\n"
    "class _NoTorch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r} (blocked)', name=name)\n"
    "sys.meta_path.insert(0, _NoTorch())\n"
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True, timeout=120)


def test_profile_package_imports_without_torch():
    proc = _run("import edgeprof.measure, edgeprof.results.rows, edgeprof.pipeline, edgeprof.cli\nprint('ok')")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_torch_really_is_blocked():
    proc = _run("import torch")
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr


def test_profile_command_runs_without_torch(tiny_models, tmp_path):
    csv = tmp_path / "out.csv"
    code = (
        "from edgeprof.cli import app\n"
        f"app([ 'profile', {str(tiny_models['relu'])!r}, {str(tiny_models['mish'])!r}, '--max-time', '0.3',"
        f" '--min-samples', '10', '--csv', {str(csv)!r}, '--format', 'json', '--quiet'])\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[1]["ratio_to_baseline"] > 1.0  # conv+mish is slower than conv+relu
    assert csv.exists() and csv.with_suffix(".json").exists()


def test_acts_command_and_the_planner_need_no_torch():
    code = ("from edgeprof.cli import app\n"
            "import edgeprof.spec.plan as plan\n"
            "assert plan.plan_sizes(plan.SweepPlan(widths=(8,)))[0]['scaling'] == 'single'\n"
            "app(['acts', '--format', 'json'])\n")
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["mish"]["onnx ops (torchscript, opset 17)"] == "Softplus+Tanh+Mul"
    assert "swish" in rows["silu"]["aliases"]
