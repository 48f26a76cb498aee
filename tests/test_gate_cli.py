"""`edgeprof baseline save` and `edgeprof check` through the CLI: exit codes, output, the baseline's schema and
its errors. Timing is replaced by a seeded fake (the real thing is in test_gate_e2e.py), so these run in seconds."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error as _one_line_error
from typer.testing import CliRunner

from edgeprof.cli import app
from edgeprof.gate import check as gate_check
from edgeprof.gate.measure import Block
from edgeprof.spec import file_sha256

runner = CliRunner()


class FakeInterleaver:
    """Stands in for edgeprof.gate.measure.Interleaver: per-file speeds (``SPEED_MS`` by sha256) with seeded
    lognormal noise (``NOISE`` by sha256, default 1%) and a per-session offset of 0.5%."""

    SPEED_MS: dict[str, float] = {}
    NOISE: dict[str, float] = {}

    def __init__(self, arms, settings, options=None, shapes=None, rng=None, on_progress=None):
        self.arms = {a.key: a for a in arms}
        self.options = options or gate_check.GateOptions()
        self.clock = "cpu"
        self.rng = np.random.default_rng(0)
        self.blocks = {a.key: [] for a in arms}
        self.inner_loops = {a.key: 1 for a in arms}
        self.sessions = 0
        self._sha = {a.key: file_sha256(Path(a.path)) for a in arms}

    def median_ms(self, key):
        return float(np.median([b.value for b in self.blocks[key]])) if self.blocks[key] else math.nan

    def plan_more(self, sessions):
        pass

    def session(self, groups):
        logs = {pk: [] for g in groups for pk, _, _ in g.pairs}
        offsets = {k: self.rng.normal(0, 0.005) for g in groups for k in g.arms}
        for r in range(self.options.rounds):
            for g in groups:
                values = {}
                for key in g.arms:
                    sha = self._sha[key]
                    noise = self.rng.normal(0, self.NOISE.get(sha, 0.01))
                    ms = self.SPEED_MS.get(sha, 1.0) * math.exp(offsets[key] + noise)
                    values[key] = ms
                    self.blocks[key].append(Block(self.sessions, r, [ms], cpu_ms=ms, wait_ms=0.0, value=ms))
                for pk, num, den in g.pairs:
                    logs[pk].append(math.log(values[num] / values[den]))
        self.sessions += 1
        return logs


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(gate_check, "Interleaver", FakeInterleaver)
    FakeInterleaver.SPEED_MS = {}
    FakeInterleaver.NOISE = {}
    return FakeInterleaver


@pytest.fixture
def models(tmp_path):
    from conftest import conv_act_model

    src = tmp_path / "src"
    src.mkdir()
    return {"relu": conv_act_model(src / "relu.onnx", "relu"), "mish": conv_act_model(src / "mish.onnx", "mish")}


@pytest.fixture
def saved(fake, models, tmp_path):
    out = tmp_path / "baseline"
    result = runner.invoke(app, ["baseline", "save", str(models["relu"]), str(models["mish"]), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out




def _check(baseline, *args, env=None):
    return runner.invoke(app, ["check", "--baseline", str(baseline), *map(str, args), "-q"], env=env)


def _as_current(tmp_path, name: str, content_from: Path) -> Path:
    """A current model named ``name`` whose content is ``content_from``'s."""
    cur = tmp_path / "cur"
    cur.mkdir(exist_ok=True)
    return Path(shutil.copyfile(content_from, cur / f"{name}.onnx"))


# -- the baseline folder --------------------------------------------------------------------------


def test_save_writes_models_by_hash_and_a_versioned_manifest(saved, models):
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["kind"] == "edgeprof-baseline"
    assert [m["name"] for m in manifest["models"]] == ["relu", "mish"]
    for m in manifest["models"]:
        assert m["file"] == f"models/{m['sha256']}.onnx"
        assert file_sha256(saved / m["file"]) == file_sha256(models[m["name"]]) == m["sha256"]
        assert m["source"] == "onnx" and m["spec"] is None
        assert len(m["stored_sessions"]) == 6 and all(len(s) == 6 for s in m["stored_sessions"])
        assert len(m["blocks"]["a"]) == 36 and m["blocks"]["a"][0]["samples_ms"]
        assert m["aa"]["verdict"] == "same" and len(m["aa"]["sessions_log_ratios"]) == 6
    assert {"cpu_model", "isa_flags", "usable_cores", "cgroup_cpu_quota", "kernel"} <= set(manifest["host"])
    assert manifest["host_fingerprint"] and manifest["versions"]["onnxruntime"]
    assert manifest["settings"] == {"threads": 1, "runtime": "onnxruntime", "inter_threads": 1, "opt_level": "all",
                                    "spinning": False, "arena": True, "provider": "CPUExecutionProvider",
                                    "execution_mode": "sequential"}
    assert manifest["reference"]["sha256"] == file_sha256(gate_check.REFERENCE_PATH)
    assert (saved / manifest["reference"]["file"]).is_file()


def test_saving_again_replaces_the_baseline_and_drops_unused_models(saved, models):
    result = runner.invoke(app, ["baseline", "save", str(models["relu"]), "-o", str(saved), "-q"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((saved / "manifest.json").read_text())
    assert [m["name"] for m in manifest["models"]] == ["relu"]
    assert len(list((saved / "models").glob("*.onnx"))) == 2  # relu and the reference


def test_save_refuses_a_folder_that_is_not_a_baseline(fake, models, tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["baseline", "save", str(models["relu"]), "-o", str(tmp_path / "precious"), "-q"])
    assert "not an edgeprof baseline" in _one_line_error(result)
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"


def test_save_rejects_two_models_with_one_name(fake, models, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    twin = shutil.copyfile(models["mish"], other / "relu.onnx")
    result = runner.invoke(app, ["baseline", "save", str(models["relu"]), str(twin), "-o", str(tmp_path / "b"), "-q"])
    assert "two models are named 'relu'" in _one_line_error(result)


# -- verdicts and exit codes ------------------------------------------------------------------------


def test_unchanged_models_pass(saved, models):
    result = _check(saved, models["relu"], models["mish"])
    assert result.exit_code == 0, result.output
    assert result.output.count("same") >= 2 and "no regression in 2 model(s)" in result.output


def test_a_real_slowdown_fails_with_exit_1(fake, saved, models, tmp_path):
    fake.SPEED_MS[file_sha256(models["mish"])] = 1.30
    slower = _as_current(tmp_path, "relu", models["mish"])  # "relu" now has mish's (slower) graph
    result = _check(saved, slower, models["mish"])
    assert result.exit_code == 1, result.output
    assert "regressed" in result.output
    assert "edgeprof: error: 1 of 2 model(s) regressed by more than 10%: relu (+3" in result.output


def test_json_report(fake, saved, models, tmp_path):
    fake.SPEED_MS[file_sha256(models["mish"])] = 0.80
    faster = _as_current(tmp_path, "relu", models["mish"])
    result = runner.invoke(app, ["check", "--baseline", str(saved), str(faster), "--json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["exit_code"] == 0 and report["mode"] == "relative"
    (row,) = report["results"]
    assert row["name"] == "relu" and row["verdict"] == "faster"
    assert row["change_pct"] == pytest.approx(-20, abs=2) and row["ci_low_pct"] < row["change_pct"] < row["ci_high_pct"]
    assert row["decision"]["sessions"] == 4 and row["decision"]["blocks"] == 24
    assert len(row["sessions_log_ratios"]) == 4
    assert report["not_checked"] == ["mish"] and any("mish" in w for w in report["warnings"])


def test_noisy_and_inconclusive_warn_but_pass_unless_strict(fake, saved, models, tmp_path):
    fake.NOISE[file_sha256(models["relu"])] = 0.30
    result = _check(saved, models["relu"])
    assert result.exit_code == 0, result.output
    assert "noisy" in result.output
    strict = runner.invoke(app, ["check", "--baseline", str(saved), str(models["relu"]), "--strict", "-q"])
    assert strict.exit_code == 1 and "--strict" in strict.output


def test_markdown_summary_goes_to_github_step_summary(saved, models, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    result = _check(saved, models["relu"], models["mish"], env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 0, result.output
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "### edgeprof check" in text
    assert "| relu |" in text and "same" in text


def test_stored_mode_on_the_same_host(fake, saved, models):
    result = runner.invoke(app, ["check", "--baseline", str(saved), str(models["relu"]), "--mode", "stored", "--json",
                                 "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"][0]["verdict"] == "same"


def test_stored_mode_on_another_host_is_inconclusive(fake, saved, models, tmp_path):
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["host_fingerprint"] = "0000000000"
    manifest["host"]["cpu_model"] = "Some Other CPU"
    (saved / "manifest.json").write_text(json.dumps(manifest))
    fake.SPEED_MS[file_sha256(models["mish"])] = 2.0
    slower = _as_current(tmp_path, "relu", models["mish"])
    result = runner.invoke(app, ["check", "--baseline", str(saved), str(slower), "--mode", "stored", "--json", "-q"])
    assert result.exit_code == 0, result.output  # never pass or fail: inconclusive, even for a 2x slowdown
    report = json.loads(result.stdout)
    assert [r["verdict"] for r in report["results"]] == ["inconclusive"]
    assert any("another host" in w for w in report["warnings"])
    strict = runner.invoke(app, ["check", "--baseline", str(saved), str(slower), "--mode", "stored", "--strict", "-q"])
    assert strict.exit_code == 1
    relative = runner.invoke(app, ["check", "--baseline", str(saved), str(slower), "-q"])  # re-measures: judged here
    assert relative.exit_code == 1 and "another host" in relative.output


# -- usage errors: one line, exit 2 -----------------------------------------------------------------


def test_missing_baseline_option_is_a_usage_error(models):
    result = runner.invoke(app, ["check", str(models["relu"])])
    assert result.exit_code == 2 and "--baseline" in result.output


@pytest.mark.parametrize("args, needle", [
    (["--threshold", "0"], "--threshold"),
    (["--alpha", "0.9"], "--alpha"),
    (["--max-time", "0"], "--max-time"),
    (["--acts", "relu"], "not both"),
])
def test_bad_options(saved, models, args, needle):
    assert needle in _one_line_error(_check(saved, models["relu"], *args))


def test_missing_current_model(saved, tmp_path):
    assert "ONNX file not found" in _one_line_error(_check(saved, tmp_path / "gone.onnx"))


def test_no_current_model_matches_by_name(saved, models, tmp_path):
    other = _as_current(tmp_path, "detector", models["relu"])
    line = _one_line_error(_check(saved, other))
    assert "matches a baseline model by name" in line and "relu, mish" in line


def test_onnx_baseline_needs_current_files(saved):
    assert "give the current ONNX files" in _one_line_error(_check(saved))


def test_missing_baseline_folder(models, tmp_path):
    line = _one_line_error(_check(tmp_path / "nope", models["relu"]))
    assert "does not exist" in line and "edgeprof baseline save" in line


def test_folder_without_manifest(models, tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no manifest.json" in _one_line_error(_check(tmp_path / "empty", models["relu"]))


def _edit(saved, fn):
    path = saved / "manifest.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d.update(schema_version=0), "schema_version 0, made by an older edgeprof"),
    (lambda d: d.update(schema_version=99), "made by a newer edgeprof"),
    (lambda d: d.pop("schema_version"), "schema_version is missing"),
    (lambda d: d.update(kind="something"), "not an edgeprof baseline manifest"),
    (lambda d: d.pop("host_fingerprint"), "host_fingerprint is missing"),
    (lambda d: d["models"][1].pop("sha256"), "models[1].sha256 is missing"),
    (lambda d: d["models"][0].update(stored_sessions="x"), "models[0].stored_sessions has the wrong type"),
    (lambda d: d.update(models=[]), "lists no models"),
    (lambda d: d["models"][0].update(file="../../etc/passwd"), "is not models/<sha256>.onnx"),
])
def test_malformed_manifests(saved, models, edit, needle):
    _edit(saved, edit)
    line = _one_line_error(_check(saved, models["relu"]))
    assert needle in line


def test_manifest_that_is_not_json(saved, models):
    (saved / "manifest.json").write_text('{"schema_version": 1, "models": [')
    assert "is not valid JSON (line 1" in _one_line_error(_check(saved, models["relu"]))


def test_baseline_model_file_that_no_longer_exists(saved, models):
    manifest = json.loads((saved / "manifest.json").read_text())
    (saved / manifest["models"][0]["file"]).unlink()
    line = _one_line_error(_check(saved, models["relu"]))
    assert "baseline model 'relu' is missing its file models/" in line and "re-save" in line
    stored = runner.invoke(app, ["check", "--baseline", str(saved), str(models["relu"]), "--mode", "stored", "-q"])
    assert stored.exit_code == 0, stored.output  # stored mode does not need the baseline's models


def test_baseline_model_file_changed_on_disk(saved, models):
    manifest = json.loads((saved / "manifest.json").read_text())
    shutil.copyfile(models["mish"], saved / manifest["models"][0]["file"])
    assert "does not match its sha256" in _one_line_error(_check(saved, models["relu"]))
