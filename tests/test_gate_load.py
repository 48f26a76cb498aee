"""The gate's load probe: figures from /proc/stat and os.times, and when a host counts as loaded."""

import os

import pytest

from edgeprof.gate import load


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc/stat")
def test_probe_sees_this_process_busy_and_does_not_count_it_as_other():
    probe = load.LoadProbe()
    start = os.times()
    while os.times().user + os.times().system < start.user + start.system + 0.2:  # 0.2 s of CPU, however slow
        pass
    out = probe.finish()
    assert out["own_cpu_cores"] * out["wall_s"] >= 0.18  # this process's own work (rounding aside)...
    assert out["other_cpu_cores"] >= 0  # ...is not counted as the other processes' share
    assert 0 <= out["steal_pct"] <= 100
    assert isinstance(out["loaded"], bool) and (out["loaded"] == bool(out["why"]))


def test_a_host_counts_as_loaded_when_others_are_busy(monkeypatch):
    ticks = os.sysconf("SC_CLK_TCK")
    stats = iter([[0, 0, 0, 0, 0, 0, 0, 0], [ticks, 0, 0, ticks, 0, 0, 0, 0]])  # 1 s of others' CPU in 1 s
    monkeypatch.setattr(load, "_proc_stat", lambda: next(stats))
    monkeypatch.setattr(load, "_own_cpu_s", lambda: 0.0)
    monkeypatch.setattr(load, "_loadavg", lambda: [0.5, 0.5, 0.5])
    clock = iter([100.0, 101.0])
    monkeypatch.setattr(load.time, "monotonic", lambda: next(clock))
    out = load.LoadProbe().finish()
    assert out["other_cpu_cores"] == pytest.approx(1.0)
    assert out["loaded"] and "other processes kept 1.00" in out["why"]
    assert load.describe(out).startswith("loaded host: load average 0.5 → 0.5")
