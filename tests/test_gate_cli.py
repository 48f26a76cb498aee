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
    DIES: dict[str, int] = {}  # sha256 -> the session in which its worker "dies"
    INTERRUPT_AT: int | None = None  # the session in which Ctrl-C is pressed

    def __init__(self, arms, settings, options=None, shapes=None, rng=None, on_progress=None):
        self.arms = {a.key: a for a in arms}
        self.options = options or gate_check.GateOptions()
        self.clock = "cpu"
        self.rng = np.random.default_rng(0)
        self.blocks = {a.key: [] for a in arms}
        self.inner_loops = {a.key: 1 for a in arms}
        self.sessions = 0
        self.failed = {}
        self.planned = []
        self._sha = {a.key: file_sha256(Path(a.path)) for a in arms}

    def median_ms(self, key):
        return float(np.median([b.value for b in self.blocks[key]])) if self.blocks[key] else math.nan

    def plan(self, sessions, arms, budget_s=None):
        self.planned.append((sessions, arms))

    def session(self, groups):
        if self.INTERRUPT_AT is not None and self.sessions == self.INTERRUPT_AT:
            raise KeyboardInterrupt
        for g in groups:
            for key in g.arms:
                if self.DIES.get(self._sha[key]) == self.sessions:
                    self.failed[key] = f"{self.arms[key].label} failed while being timed: worker process died " \
                                       f"(killed by signal SIGKILL)"
        groups = [g for g in groups if not any(a in self.failed for a in g.arms)]
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
    FakeInterleaver.DIES = {}
    FakeInterleaver.INTERRUPT_AT = None
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
    assert manifest["settings"] == {"threads": 1, "runtime": "onnxruntime", "cache": "warm", "inter_threads": 1,
                                    "opt_level": "all", "spinning": False, "arena": True,
                                    "provider": "CPUExecutionProvider",
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


def test_inconclusive_exits_4_unless_allowed_and_says_which_and_why(fake, saved, models, tmp_path):
    """A model timed so noisily that its interval still straddles +10% at the cap is not a clean pass."""
    fake.NOISE[file_sha256(models["relu"])] = 0.40
    summary = tmp_path / "summary.md"
    result = runner.invoke(app, ["check", "--baseline", str(saved), str(models["relu"]), str(models["mish"]),
                                 "--json", "-q"], env={"GITHUB_STEP_SUMMARY": str(summary)})
    report = json.loads(result.stdout)
    verdicts = {r["name"]: r["verdict"] for r in report["results"]}
    assert verdicts == {"relu": "inconclusive", "mish": "same"}, verdicts
    assert result.exit_code == 4 and report["exit_code"] == 4
    assert "1 of 2 model(s) inconclusive: a slowdown over 10% is still plausible for relu (" in result.stderr
    (undecided,) = report["undecided"]
    lo, hi = undecided["range_pct"]
    assert undecided["name"] == "relu" and lo < 10 < hi and "straddles" in undecided["reason"]
    assert undecided["sessions"] > 4  # it was measured further before giving up
    text = summary.read_text()
    assert "⚠️" in text and "(exit 4)" in text and "**Not judged**" in text and "`relu`: inconclusive" in text
    allowed = runner.invoke(app, ["check", "--baseline", str(saved), str(models["relu"]), "--allow-inconclusive",
                                  "-q"])
    assert allowed.exit_code == 0, allowed.output
    assert "inconclusive" in allowed.output and "--allow-inconclusive" in allowed.output


def test_a_regression_is_regressed_however_noisy_the_blocks(fake, saved, models, tmp_path):
    fake.SPEED_MS[file_sha256(models["mish"])] = 1.60
    fake.NOISE[file_sha256(models["mish"])] = 0.15
    slower = _as_current(tmp_path, "relu", models["mish"])
    result = runner.invoke(app, ["check", "--baseline", str(saved), str(slower), "--json", "-q"])
    (row,) = json.loads(result.stdout)["results"]
    assert result.exit_code == 1, result.output
    assert row["verdict"] == "regressed" and row["decision"]["noisy"] and row["ci_low_pct"] > 10


def test_a_worker_that_dies_is_a_failed_model_and_the_others_are_judged(fake, saved, models, tmp_path):
    fake.SPEED_MS[file_sha256(models["relu"])] = 1.0
    dying = _as_current(tmp_path, "mish", models["mish"])
    fake.DIES[file_sha256(models["mish"])] = 2  # both arms of "mish" share the file: its group dies in session 3
    result = runner.invoke(app, ["check", "--baseline", str(saved), str(models["relu"]), str(dying), "--json", "-q"])
    report = json.loads(result.stdout)
    rows = {r["name"]: r for r in report["results"]}
    assert rows["relu"]["verdict"] == "same"
    assert rows["mish"]["verdict"] == "failed" and "SIGKILL" in rows["mish"]["decision"]["reason"]
    assert result.exit_code == 3 and "1 of 2 model(s) failed while being measured: mish" in result.stderr
    assert report["undecided"][0]["name"] == "mish"


def test_ctrl_c_prints_what_was_decided_so_far_and_exits_130(fake, saved, models):
    fake.INTERRUPT_AT = 5
    fake.NOISE[file_sha256(models["relu"])] = 0.40  # undecided after the first look, so a 5th session is due
    result = runner.invoke(app, ["check", "--baseline", str(saved), str(models["relu"]), str(models["mish"]),
                                 "--json", "-q"])
    assert result.exit_code == 130, result.output
    report = json.loads(result.stdout)
    assert report["interrupted"] and report["exit_code"] == 130
    rows = {r["name"]: r for r in report["results"]}
    assert rows["mish"]["verdict"] == "same"  # decided at the first look: kept
    assert rows["relu"]["verdict"] == "inconclusive" and "interrupted after" in rows["relu"]["decision"]["reason"]
    assert "interrupted after 5 session(s); decided so far:" in result.stderr


def test_the_report_says_how_busy_the_host_was(fake, saved, models):
    result = runner.invoke(app, ["check", "--baseline", str(saved), str(models["relu"]), "--json", "-q"])
    load = json.loads(result.stdout)["load"]
    assert {"load_average_start", "load_average_end", "steal_pct", "other_cpu_cores", "loaded", "why"} <= set(load)
    assert isinstance(load["loaded"], bool)


def test_progress_plan_shrinks_as_models_are_decided(fake, saved, models):
    from edgeprof.gate.check import run_check
    from edgeprof.gate.models import from_files

    made = []
    real_init = fake.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        made.append(self)

    fake.__init__ = spy
    try:
        fake.NOISE[file_sha256(models["relu"])] = 0.40
        run_check(saved, from_files([models["relu"], models["mish"]]))
    finally:
        fake.__init__ = real_init
    plans = made[-1].planned
    assert plans[0] == (10, 4)  # at first: both models, up to the cap
    assert plans[1][1] == 2  # after the first look only relu's two arms go on


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
    assert result.exit_code == 4, result.output  # never pass or fail: inconclusive, even for a 2x slowdown
    report = json.loads(result.stdout)
    assert [r["verdict"] for r in report["results"]] == ["inconclusive"]
    assert any("another host" in w for w in report["warnings"])
    allowed = runner.invoke(app, ["check", "--baseline", str(saved), str(slower), "--mode", "stored",
                                  "--allow-inconclusive", "-q"])
    assert allowed.exit_code == 0
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
    (["--max-time", "-5"], "--max-time"),
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


def test_a_check_in_which_every_model_is_noisy_does_not_pass_silently(fake, saved, models):
    """All blocks noisy (IQR far over 10%): a model is cleared only if its CI lies wholly below +10% after the
    extra sessions; any other is inconclusive, and then the check exits 4 and names it."""
    for path in models.values():
        fake.NOISE[file_sha256(path)] = 0.40
    result = runner.invoke(app, ["check", "--baseline", str(saved), str(models["relu"]), str(models["mish"]),
                                 "--json", "-q"])
    report = json.loads(result.stdout)
    rows = report["results"]
    assert all(r["decision"]["noisy"] for r in rows)
    assert all(r["verdict"] in ("same", "inconclusive") for r in rows)
    assert all(r["ci_high_pct"] < 10 for r in rows if r["verdict"] == "same")  # cleared by the interval alone
    undecided = [r["name"] for r in rows if r["verdict"] == "inconclusive"]
    assert undecided  # with this seed, at least one stays undecided...
    assert result.exit_code == 4 and [u["name"] for u in report["undecided"]] == undecided  # ...and is no pass
    assert all(u["range_pct"][0] < 10 < u["range_pct"][1] for u in report["undecided"])
