"""Device state beside every result: readers on fake /proc and /sys files, None where nothing is exposed, the
contended rule on synthetic figures, and the columns of a sweep's CSV (fake runtime) read back with their dtypes."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import cli_ok
from typer.testing import CliRunner

from edgeprof.measure import devstate
from edgeprof.measure.devstate import DeviceState, ProcessState, Snapshot, device_states, is_contended
from edgeprof.measure.host import load_average
from edgeprof.results.schema import COLUMNS, DTYPES

DEVICE_COLUMNS = ("cpu_mhz", "cpu_max_mhz", "temp_c", "load_1m", "steal_pct", "other_cpu_share", "ctx_voluntary",
                  "ctx_involuntary", "contended")
LINUX = os.path.exists("/proc/self/status")


def write(root: Path, path: str, text: str) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def stat_line(pid: int, comm: str, utime: int, stime: int, cpu: int) -> str:
    """A /proc/<pid>/stat line: pid (comm) state, then fields 4.. with utime/stime at 14/15 and processor at 39."""
    fields = ["S"] + ["0"] * 49
    fields[11], fields[12], fields[36] = str(utime), str(stime), str(cpu)
    return f"{pid} ({comm}) " + " ".join(fields) + "\n"


def status(voluntary: int, involuntary: int) -> str:
    return (f"Name:\tpython\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t{voluntary}\n"
            f"nonvoluntary_ctxt_switches:\t{involuntary}\n")


# -- readers ----------------------------------------------------------------------------------------------
def test_proc_stat_is_parsed_and_split_into_other_processes_and_steal():
    assert devstate.parse_cpu_ticks("cpu  10 1 5 100 3 0 2 7 0 0\ncpu0 5 0 2 50 1 0 1 3 0 0\n") == \
        [10, 1, 5, 100, 3, 0, 2, 7]
    assert devstate.parse_cpu_ticks("cpu  10 1 5 100\n") == [10, 1, 5, 100, 0, 0, 0, 0]  # an old kernel
    assert devstate.parse_cpu_ticks("intr 1 2 3\n") is None and devstate.parse_cpu_ticks("") is None
    # 2 s of wall time at 100 ticks/s on 2 CPUs: 300 busy ticks (3 CPU-seconds), of which 1 s was ours; 20 stolen
    use = devstate.cpu_use([0] * 8, [200, 0, 100, 80, 0, 0, 0, 20], own_s=1.0, wall_s=2.0, per_second=100)
    assert use["other_cores"] == pytest.approx(1.0) and use["own_cores"] == pytest.approx(0.5)
    assert use["steal_pct"] == pytest.approx(5.0)
    assert devstate.cpu_use([0] * 8, [0] * 8, own_s=0.0, wall_s=1.0)["steal_pct"] == 0.0


def test_frequency_per_core_from_cpufreq_with_cpuinfo_as_the_fallback(tmp_path):
    for cpu, (cur, top) in enumerate([(600000, 1800000)] * 2 + [(2400000, 2400000)] * 2):  # 2 LITTLE + 2 big
        write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", f"{cur}\n")
        write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq", f"{top}\n")
    write(tmp_path, "sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq", "1\n")  # not a core
    assert devstate.core_mhz(tmp_path) == {0: 600.0, 1: 600.0, 2: 2400.0, 3: 2400.0}
    assert devstate.mean_mhz(devstate.core_mhz(tmp_path), {2, 3}) == 2400.0  # the cores the worker ran on
    assert devstate.mean_mhz(devstate.core_max_mhz(tmp_path), {0}) == 1800.0
    assert devstate.mean_mhz(devstate.core_mhz(tmp_path)) == 1500.0  # no core known: the mean of all
    assert devstate.mean_mhz(devstate.core_mhz(tmp_path), {9}) == 1500.0

    vm = tmp_path / "vm"  # a VM: no cpufreq, /proc/cpuinfo's "cpu MHz" per processor
    (vm / "sys/devices/system/cpu/cpu0").mkdir(parents=True)
    (vm / "sys/devices/system/cpu/cpu1").mkdir(parents=True)
    write(vm, "proc/cpuinfo", "processor\t: 0\ncpu MHz\t\t: 2599.998\n\nprocessor\t: 1\ncpu MHz\t\t: 2400.5\n\n")
    assert devstate.core_mhz(vm) == {0: 2599.998, 1: 2400.5}
    assert devstate.mean_mhz(devstate.core_mhz(vm), {1}) == 2400.5
    assert devstate.core_max_mhz(vm) == {} and devstate.mean_mhz(devstate.core_max_mhz(vm), {1}) is None


def test_temperature_prefers_the_cpu_sensor_and_ignores_implausible_readings(tmp_path):
    write(tmp_path, "sys/class/thermal/thermal_zone0/type", "acpitz\n")
    write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "80000\n")
    write(tmp_path, "sys/class/thermal/thermal_zone1/type", "x86_pkg_temp\n")
    write(tmp_path, "sys/class/thermal/thermal_zone1/temp", "61500\n")
    write(tmp_path, "sys/class/thermal/thermal_zone2/type", "cpu-thermal\n")
    write(tmp_path, "sys/class/thermal/thermal_zone2/temp", "-273000\n")  # a broken sensor
    assert devstate.temperature_c(tmp_path) == 61.5

    board = tmp_path / "board"  # only a board sensor in thermal, the CPU's in hwmon
    write(board, "sys/class/thermal/thermal_zone0/type", "acpitz\n")
    write(board, "sys/class/thermal/thermal_zone0/temp", "27800\n")
    write(board, "sys/class/hwmon/hwmon1/name", "coretemp\n")
    write(board, "sys/class/hwmon/hwmon1/temp1_input", "55000\n")
    write(board, "sys/class/hwmon/hwmon1/temp2_input", "57000\n")
    assert devstate.temperature_c(board) == 57.0
    (board / "sys/class/hwmon/hwmon1/name").write_text("nvme\n")  # no CPU sensor at all: the hottest of any
    assert devstate.temperature_c(board) == 57.0
    (board / "sys/class/hwmon/hwmon1/temp1_input").unlink()
    (board / "sys/class/hwmon/hwmon1/temp2_input").unlink()
    assert devstate.temperature_c(board) == 27.8


def test_a_worker_s_context_switches_are_summed_over_its_threads(tmp_path):
    write(tmp_path, "proc/4242/stat", stat_line(4242, "python (worker) x", 150, 50, 3))
    write(tmp_path, "proc/4242/status", status(1, 1))  # the main thread's only: not what is summed
    write(tmp_path, "proc/4242/task/4242/status", status(100, 7))
    write(tmp_path, "proc/4242/task/4242/stat", stat_line(4242, "python", 100, 40, 3))
    write(tmp_path, "proc/4242/task/4250/status", status(20, 3))
    write(tmp_path, "proc/4242/task/4250/stat", stat_line(4250, "ort-pool", 50, 10, 1))
    assert devstate.parse_pid_stat(stat_line(1, "a) (b", 3, 4, 2)) == (7, 2)  # a name with parentheses
    assert devstate.parse_ctx_switches(status(5, 6)) == (5, 6) and devstate.parse_ctx_switches("Name: x\n") is None
    state = devstate.process_state(4242, tmp_path)
    assert (state.ctx_voluntary, state.ctx_involuntary) == (120, 10)
    assert state.cpu_s == pytest.approx(200 / devstate.ticks_per_second()) and state.cores == {1, 3}


def test_absent_files_give_none(tmp_path):
    assert devstate.cpu_ticks(tmp_path) is None
    assert devstate.core_mhz(tmp_path) == {} and devstate.core_max_mhz(tmp_path) == {}
    assert devstate.mean_mhz({}) is None
    assert devstate.temperature_c(tmp_path) is None
    assert devstate.process_state(4242, tmp_path) is None
    assert load_average(tmp_path) is None
    write(tmp_path, "proc/loadavg", "1.52 0.80 0.33 2/301 1234\n")
    assert load_average(tmp_path) == [1.52, 0.8, 0.33]
    states = device_states(Snapshot(0.0, None, 0.0, {}, {"m": None}), Snapshot(1.0, None, 0.0, {}, {"m": None}),
                           {"m": 1.0}, threads=1, cores=2, root=tmp_path / "empty")
    assert states["m"] == DeviceState()  # nothing known: every column empty, contended unknown


@pytest.mark.skipif(not LINUX, reason="needs Linux /proc")
def test_this_process_reads_live():
    state = devstate.process_state(os.getpid())
    assert state.ctx_voluntary >= 0 and state.ctx_involuntary >= 0 and state.cpu_s > 0
    assert state.cores and all(0 <= c < 4096 for c in state.cores)
    assert devstate.cpu_ticks() is not None and load_average() is not None


# -- the contended rule -----------------------------------------------------------------------------------
def test_the_contended_rule():
    assert is_contended(None, None, None) is None
    assert is_contended(2.0, 0.1, 0.0) is False  # a quiet host
    assert is_contended(devstate.INVOLUNTARY_PER_S * 2, None, None) is True  # preempted often
    assert is_contended(devstate.INVOLUNTARY_PER_S / 2, None, None) is False
    assert is_contended(None, 0.8, None, free_cores=0) is True  # every core ours: others took one
    assert is_contended(None, 0.8, None, free_cores=1) is False  # a free core took the others' work...
    assert is_contended(None, 1.6, None, free_cores=1) is True  # ...but not this much
    assert is_contended(None, None, devstate.STEAL_PCT + 1) is True  # the hypervisor took it
    assert is_contended(1.0, 0.0, devstate.STEAL_PCT - 1) is False


def _snapshot(t: float, busy: int, own_s: float, processes: dict, mhz: dict | None = None) -> Snapshot:
    return Snapshot(wall_s=t, ticks=[busy, 0, 0, 1000, 0, 0, 0, 0], own_s=own_s, mhz=mhz or {0: 2000.0, 1: 3000.0},
                    processes=processes)


def test_device_states_of_a_group_from_two_snapshots(tmp_path):
    hz = devstate.ticks_per_second()
    before = _snapshot(10.0, 0, 5.0, {"quiet": ProcessState(11, 100, 5, 1.0, {0}),
                                      "preempted": ProcessState(12, 100, 5, 1.0, {1}),
                                      "replaced": ProcessState(13, 100, 5, 1.0, {0})})
    after = _snapshot(12.0, 2 * hz, 7.0, {"quiet": ProcessState(11, 160, 6, 2.0, {0}),
                                          "preempted": ProcessState(12, 160, 905, 2.0, {1}),
                                          "replaced": ProcessState(99, 3, 0, 0.1, {0})},
                      mhz={0: 2200.0, 1: 3000.0})
    write(tmp_path, "proc/loadavg", "0.50 0.40 0.30 1/100 1\n")
    states = device_states(before, after, {"quiet": 1.0, "preempted": 1.0, "replaced": 1.0}, threads=1, cores=2,
                           root=tmp_path)
    quiet, preempted, replaced = states["quiet"], states["preempted"], states["replaced"]
    assert quiet.other_cpu_share == 0.0 and quiet.steal_pct == 0.0  # 2 busy CPU-seconds, all ours
    assert quiet.load_1m == 0.5 and quiet.temp_c is None and quiet.cpu_max_mhz is None
    assert quiet.cpu_mhz == 2100.0 and preempted.cpu_mhz == 3000.0  # its own cores, before and after
    assert (quiet.ctx_voluntary, quiet.ctx_involuntary) == (60, 1) and quiet.contended is False
    assert preempted.ctx_involuntary == 900 and preempted.contended is True
    assert replaced.ctx_voluntary is None and replaced.contended is False  # another worker: its switches unknown

    busy = _snapshot(12.0, 4 * hz, 7.0, after.processes)  # others used 2 CPU-seconds in 2 s: a whole core
    state = device_states(before, busy, {"quiet": 1.0}, threads=1, cores=2, root=tmp_path)["quiet"]
    assert state.other_cpu_share == 1.0 and state.contended is False  # the core our one thread left free
    state = device_states(before, busy, {"quiet": 1.0}, threads=2, cores=2, root=tmp_path)["quiet"]
    assert state.contended is True  # with both cores ours, the others took one of them


# -- beside every result ----------------------------------------------------------------------------------
def test_the_schema_declares_the_columns_with_the_rule_s_thresholds():
    assert set(DEVICE_COLUMNS) <= set(COLUMNS)
    assert DTYPES["contended"] == "boolean" and DTYPES["ctx_involuntary"] == "Int64" and DTYPES["cpu_mhz"] == "float64"
    meaning = COLUMNS["contended"]
    assert f"over {devstate.INVOLUNTARY_PER_S:g} involuntary" in meaning and f"over {devstate.STEAL_PCT:g}%" in meaning
    assert devstate.OTHER_CORES == 0.5 and "half a core" in meaning


def test_a_contended_row_says_so_in_the_table_s_notes():
    from edgeprof.report.table import display_frame
    from edgeprof.results.rows import to_frame

    rows = [{"act": "relu", "block": "conv", "width": 8, "imgsz": 32, "median_ms": 1.0, "status": "ok",
             "model": "a.onnx", "contended": False},
            {"act": "mish", "block": "conv", "width": 8, "imgsz": 32, "median_ms": 3.0, "status": "ok",
             "model": "b.onnx", "contended": True}]
    notes = display_frame(to_frame(rows))["notes"].tolist()
    assert "contended" not in notes[0] and "contended" in notes[1]


def test_a_sweep_s_csv_has_the_device_state_of_every_row(at_repo_root, tmp_path):
    from edgeprof.cli import app
    from edgeprof.results.rows import read_results

    csv = tmp_path / "sweep.csv"
    cli_ok(CliRunner().invoke(app, [
        "sweep", "--runtime", "tests._fake_runtime:FakeRuntime", "--acts", "relu,mish", "--widths", "8", "--imgsz",
        "32", "--no-roofline", "--models-dir", str(tmp_path / "models"), "--csv", str(csv), "--max-time", "0.3",
        "--min-samples", "6", "--quiet"]))
    plain = pd.read_csv(csv)  # what another tool sees
    assert set(DEVICE_COLUMNS) <= set(plain.columns) and set(plain["status"]) == {"ok"}
    rows = read_results(csv)
    assert {c: str(rows[c].dtype) for c in DEVICE_COLUMNS} == {c: DTYPES[c] for c in DEVICE_COLUMNS}
    if not LINUX:
        return
    # the models of one size were timed in one worker process (it polls between rounds, so it may never have
    # switched voluntarily): its counts are every row's
    assert (rows["ctx_voluntary"] >= 0).all() and (rows["ctx_involuntary"] >= 0).all()
    assert rows["ctx_voluntary"].nunique() == 1 and rows["ctx_involuntary"].nunique() == 1
    assert rows["contended"].notna().all() and rows["load_1m"].notna().all()
    assert rows["steal_pct"].between(0, 100).all() and (rows["other_cpu_share"] >= 0).all()
    if devstate.core_mhz():  # where the OS says the frequency at all
        assert (rows["cpu_mhz"] > 0).all()
    assert rows["cpu_max_mhz"].isna().all() == (not devstate.core_max_mhz())


def test_the_preemption_rate_is_per_second_the_worker_was_on_a_cpu():
    """A worker preempted 14 times while it timed 0.16 s but ran 0.4 s on a CPU (its rounds' other work) was
    preempted 35 times per second on a CPU, not 87: a quiet host's first session is not flagged."""
    from edgeprof.measure.devstate import ProcessState, Snapshot, device_states

    before = Snapshot(0.0, None, 0.0, {}, {0: ProcessState(1, 5, 0, cpu_s=1.0, cores={0})})
    after = Snapshot(2.0, None, 0.0, {}, {0: ProcessState(1, 13, 14, cpu_s=1.4, cores={0})})
    state = device_states(before, after, {0: 0.16}, threads=1, cores=2)[0]
    assert state.ctx_involuntary == 14 and state.contended is False
    busy = Snapshot(2.0, None, 0.0, {}, {0: ProcessState(1, 13, 200, cpu_s=1.4, cores={0})})
    assert device_states(before, busy, {0: 0.16}, threads=1, cores=2)[0].contended is True
