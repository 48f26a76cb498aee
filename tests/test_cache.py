"""--cache warm|cold: the eviction buffer's size, an eviction before every timed run and never inside the timed
interval (shared Runner.sample, every runtime), the worker's report of it, the cache column, the resume key, the
run metadata and the option's one-line error."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import cli_ok, one_line_error
from typer.testing import CliRunner

from edgeprof.cli import app
from edgeprof.errors import InputError
from edgeprof.measure import MeasureOptions, SessionSettings, measure
from edgeprof.results.recorder import RESUME_KEYS, resume_key, runs_of
from edgeprof.results.schema import DTYPES, SCHEMA
from edgeprof.runtime import base
from edgeprof.runtime import cache as cache_module
from edgeprof.runtime.base import Runner, RuntimeSettings, settings_columns
from edgeprof.runtime.cache import EVICT_ENV, MIB, Evictor, eviction_size

runner = CliRunner()
FAST = ["--max-time", "0.2", "--min-samples", "6", "--no-isolate", "--quiet", "--format", "csv"]


# -- the eviction buffer's size ---------------------------------------------------------------------------------
def _fake_sysfs(root, sizes: dict[str, tuple[str, str]]):
    """A /sys/devices/system/cpu/cpu0/cache lookalike: index name -> (type, size)."""
    for name, (kind, size) in sizes.items():
        d = root / name
        d.mkdir(parents=True)
        (d / "type").write_text(kind + "\n")
        (d / "size").write_text(size + "\n")
        (d / "coherency_line_size").write_text("64\n")
    return root


def test_eviction_buffer_is_twice_the_largest_data_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(EVICT_ENV, raising=False)
    sysfs = _fake_sysfs(tmp_path, {"index0": ("Data", "48K"), "index1": ("Instruction", "64M"),
                                   "index2": ("Unified", "2048K"), "index3": ("Unified", "32M")})
    size = eviction_size(sysfs, mem_total=64 << 30)
    assert size.llc_bytes == 32 * MIB and size.evict_bytes == 64 * MIB  # the instruction cache does not count
    assert "index3" in size.how and size.line_bytes == 64
    capped = eviction_size(sysfs, mem_total=512 * MIB)  # a worker per model holds one: at most 1/16 of memory
    assert capped.evict_bytes == 32 * MIB and "capped" in capped.how


def test_eviction_buffer_falls_back_and_can_be_set_by_hand(tmp_path, monkeypatch):
    monkeypatch.delenv(EVICT_ENV, raising=False)

    def no_sysconf(name):
        raise ValueError(name)

    monkeypatch.setattr(cache_module.os, "sysconf", no_sysconf)
    unknown = eviction_size(tmp_path / "nothing")
    assert unknown.llc_bytes is None and unknown.evict_bytes == cache_module.FALLBACK_BYTES
    assert "fallback" in unknown.how
    monkeypatch.setenv(EVICT_ENV, "3")
    assert eviction_size(tmp_path / "nothing").evict_bytes == 3 * MIB
    monkeypatch.setenv(EVICT_ENV, "lots")
    with pytest.raises(InputError, match=EVICT_ENV):
        eviction_size(tmp_path / "nothing")


def test_an_eviction_reads_and_writes_every_cache_line_of_the_buffer():
    ev = Evictor(256 * 1024, line_bytes=64)
    for _ in range(3):
        ev.evict()
    lines = ev.buffer[::8]  # one uint64 word per 64-byte line
    assert len(lines) == 256 * 1024 // 64 and (lines == 1 + 3).all()  # each read, incremented and written back
    assert ev.evictions == 3 and ev.mean_evict_ms() > 0


# -- the timed loop: an eviction between every two timed runs, never inside the timed interval -------------------
class _LoggingEvictor(Evictor):
    def __init__(self, log: list, nbytes: int):
        super().__init__(nbytes)
        self.log = log

    def evict(self) -> None:
        self.log.append("evict")
        super().evict()


class _LoggingRunner(Runner):
    """A runner whose run, clock reads and evictions are written to one log, in the order they happen."""

    def __init__(self, log: list, settings: RuntimeSettings):
        super().__init__("model.fake", settings)
        self.log = log
        if self._evictor is not None:  # the same size as the shared one, with its own log and count
            self._evictor = _LoggingEvictor(log, self._evictor.nbytes)

    def run(self) -> None:
        self.log.append("run")


@pytest.fixture
def logged_clock(monkeypatch):
    log: list[str] = []
    ticks = iter(range(0, 10**12, 1000))

    def clock() -> int:
        log.append("clock")
        return next(ticks)

    monkeypatch.setattr(base, "_clock", clock)
    monkeypatch.setenv(EVICT_ENV, "1")
    return log


def test_cold_evicts_before_every_timed_run_outside_the_timed_interval(logged_clock):
    log = logged_clock
    runner_ = _LoggingRunner(log, RuntimeSettings(cache="cold"))
    assert runner_.calibrate(min_sample_ms=1e6)["inner_loops"] == 1  # cold: each run timed alone, however fast
    log.clear()
    samples = runner_.sample(count=4)
    assert log == ["evict", "clock", "run", "clock"] * 4
    assert samples == [0.001] * 4  # only the run's interval: 1000 ns between the two clock reads
    state = runner_.cache_state()
    assert state["cache"] == "cold" and state["evict_bytes"] == 1 * MIB and state["evictions"] == 4


def test_warm_times_back_to_back_runs_without_evicting(logged_clock):
    log = logged_clock
    runner_ = _LoggingRunner(log, RuntimeSettings())
    runner_.inner_loops = 3
    runner_.sample(count=2)
    assert log == ["clock", "run", "run", "run", "clock"] * 2
    assert runner_.cache_state() == {"cache": "warm", "evict_bytes": 0, "evictions": 0, "mean_evict_ms": None}


class _CopyRunner(Runner):
    """Copies 384 KiB into another 384 KiB: small enough to stay in the caches between warm runs, so a warm run reads
    it from there and a cold one from slower memory."""

    def load(self) -> dict:
        self.src = np.random.default_rng(0).standard_normal(96 * 1024).astype(np.float32)
        self.dst = np.empty_like(self.src)
        return {}

    def run(self) -> None:
        np.copyto(self.dst, self.src)


def test_cold_runs_are_slower_than_warm_ones_on_a_cache_sized_copy(monkeypatch):
    monkeypatch.setenv(EVICT_ENV, "32")  # 16x a 2 MiB L2: enough to push 768 KiB out of the private caches
    warm, cold = _CopyRunner("a", RuntimeSettings()), _CopyRunner("b", RuntimeSettings(cache="cold"))
    for r in (warm, cold):
        r.load()
        r.warmup(seconds=0.01)
    warm_ms, cold_ms = [], []
    for _ in range(15):  # interleaved, so drift of a loaded machine touches both alike
        warm_ms += warm.sample(count=4)[1:]  # the first run after the cold runner's eviction refills the caches
        cold_ms += cold.sample(count=3)
    assert np.median(cold_ms) > np.median(warm_ms)


# -- through the worker process, and in measure() -----------------------------------------------------------------
def test_the_worker_reports_the_eviction_buffer_and_count(tiny_models, monkeypatch):
    from edgeprof.runtime.worker import WorkerRunner

    monkeypatch.setenv(EVICT_ENV, "2")  # the worker inherits it
    for cache, evict_bytes in (("cold", 2 * MIB), ("warm", 0)):
        worker = WorkerRunner(str(tiny_models["relu"]), SessionSettings(cache=cache).as_dict())
        try:
            worker.load()
            worker.first_run()
            worker.warmup(seconds=0.01)
            calibrated = worker.calibrate(min_sample_ms=1.0)
            assert len(worker.sample(count=7)) == 7
            state = worker.cache_state()
        finally:
            worker.close()
        assert state["cache"] == cache and state["evict_bytes"] == evict_bytes
        assert state["evictions"] == (7 if cache == "cold" else 0)
        assert (calibrated["inner_loops"] == 1) == (cache == "cold")  # a tiny model is looped only when warm


def test_a_cold_samples_cost_includes_its_eviction_so_bursts_hold_fewer(tiny_models, monkeypatch):
    """The burst sizing and the budget follow what a sample spends: with a cold cache, its untimed eviction too."""
    from edgeprof.measure.pool import WorkerPool

    monkeypatch.setenv(EVICT_ENV, "64")
    costs = {}
    for cache in ("warm", "cold"):
        with WorkerPool(SessionSettings(cache=cache), isolate=False) as pool:
            pool.start({0: str(tiny_models["relu"])})
            setups, failed = pool.prepare_all(0.01, 1.0)
            assert not failed
            costs[cache] = setups[0].sample_ms
            evictions = pool.runners[0].cache_state()["evictions"]
        assert evictions == 0  # probing the eviction's cost is not one of sample()'s evictions
    assert costs["cold"] > 2 * costs["warm"]  # 64 MiB touched takes milliseconds; a tiny block's run far less


def test_the_eviction_buffer_is_not_in_the_memory_figures(tiny_models, monkeypatch):
    monkeypatch.setenv(EVICT_ENV, "128")
    opts = MeasureOptions(max_time=0.3, min_samples=6, min_rounds=3, warmup_s=0.02, sessions=3)
    [warm] = measure([str(tiny_models["relu"])], SessionSettings(), opts)
    [cold] = measure([str(tiny_models["relu"])], SessionSettings(cache="cold"), opts)
    assert warm.status == cold.status == "ok" and cold.inner_loops == 1
    # the buffer is made (and written) before the worker's memory baseline: 128 MiB resident, not counted
    assert cold.peak_rss_run_mb < warm.peak_rss_run_mb + 64


# -- settings, the column, the resume key, metadata and the option --------------------------------------------
def test_settings_carry_the_cache_state_as_a_column_of_its_own():
    cold = SessionSettings(cache="cold")
    assert cold.row()["cache"] == "cold" and "cache" not in cold.row()["runtime_settings"]
    assert "cache" not in cold.specific() and "cold cache" in cold.label()
    assert SessionSettings().row()["cache"] == "warm" and "cache" not in SessionSettings().label()
    assert settings_columns({"threads": 1})["cache"] == "warm"  # a settings dict from before the setting
    with pytest.raises(InputError, match="valid: warm, cold"):
        SessionSettings(cache="lukewarm")


def test_cache_column_and_resume_key():
    column = next(c for c in SCHEMA if c.name == "cache")
    assert DTYPES["cache"] == "string" and column.problem("cold") is None and column.problem("hot")
    assert "cache" in RESUME_KEYS
    row = {"act": "relu", "width": 8, **SessionSettings().row()}
    assert resume_key(row) != resume_key({**row, "cache": "cold"})


def test_profile_cold_records_the_setting_and_resume_never_takes_warm_for_cold(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv(EVICT_ENV, "2")
    csv = tmp_path / "r.csv"
    models = [str(tiny_models["relu"]), str(tiny_models["mish"])]
    cli_ok(runner.invoke(app, ["profile", *models, "--cache", "cold", "--csv", str(csv), *FAST]))
    rows = pd.read_csv(csv)
    assert list(rows["cache"]) == ["cold", "cold"] and set(rows["status"]) == {"ok"}
    assert "cache" not in rows["runtime_settings"].iloc[0]
    [run] = runs_of(json.loads(csv.with_suffix(".json").read_text()))
    assert run["settings"]["cache"] == "cold"
    assert run["cache"]["state"] == "cold" and run["cache"]["evict_bytes"] == 2 * MIB

    result = runner.invoke(app, ["profile", *models, "--cache", "warm", "--csv", str(csv), "--resume", *FAST])
    cli_ok(result)
    note = next(line for line in result.output.splitlines() if "resuming" in line)
    assert "0 of 2 configs already measured" in note and "the CSV has them only with --cache cold" in note
    assert sorted(pd.read_csv(csv)["cache"]) == ["cold", "cold", "warm", "warm"]

    result = runner.invoke(app, ["profile", *models, "--cache", "cold", "--csv", str(csv), "--resume", *FAST])
    cli_ok(result)
    assert "2 of 2 configs already measured" in result.output and len(pd.read_csv(csv)) == 4


@pytest.mark.parametrize("command", [["sweep"], ["profile", "x.onnx"]])
def test_a_bad_cache_value_is_one_line(command):
    line = one_line_error(runner.invoke(app, [*command, "--cache", "hot"]))
    assert "--cache" in line and "'hot' is not one of" in line and "warm" in line and "cold" in line


def test_sweep_cold_with_another_runtime_gets_the_same_eviction(at_repo_root, tmp_path, monkeypatch):
    """The eviction is in the shared Runner.sample: a runtime written in one file (tests/_fake_runtime.py) gets it
    with nothing of its own."""
    monkeypatch.setenv(EVICT_ENV, "2")
    csv = tmp_path / "sweep.csv"
    cli_ok(runner.invoke(app, ["sweep", "--runtime", "tests._fake_runtime:FakeRuntime", "--acts", "relu,mish",
                               "--widths", "8", "--imgsz", "32", "--no-roofline", "--no-act-alone", "--cache", "cold",
                               "--models-dir", str(tmp_path / "models"), "--csv", str(csv), "--max-time", "0.3",
                               "--min-samples", "6", "--quiet"]))
    rows = pd.read_csv(csv)
    assert set(rows["cache"]) == {"cold"} and set(rows["status"]) == {"ok"}
    assert set(rows["inner_loops"]) == {1}  # each run timed alone, however fast the fake runtime is
    assert set(rows["runtime_settings"]) == {"work=4.0"}  # the cache state is not one of the runtime's own settings
