"""The gate's measuring options that make it sturdier under load: pinning workers, leaving out preempted pairs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edgeprof.errors import InputError
from edgeprof.gate.measure import Block, GateOptions, Interleaver, _idlest_core, _pin
from edgeprof.runtime.onnxruntime.session import SessionSettings

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no sched_setaffinity on this OS")


def _inter(**kw) -> Interleaver:
    return Interleaver([], SessionSettings(), GateOptions(clock="wall", **kw))


def test_a_block_that_waited_for_a_core_beyond_the_share_is_preempted():
    inter = _inter(drop_preempted=0.05)
    inter.inner_loops["a"] = 2
    inter.blocks["a"] = [Block(session=0, round=0, samples_ms=[1.0] * 10, wait_ms=0.5)]  # 20 ms run, 2.5% waited
    assert not inter._preempted("a")
    inter.blocks["a"].append(Block(session=0, round=1, samples_ms=[1.0] * 10, wait_ms=2.0))  # 10% waited
    assert inter._preempted("a")
    inter.blocks["a"].append(Block(session=0, round=2, samples_ms=[1.0] * 10, wait_ms=None))  # wall clock: unknown
    assert not inter._preempted("a")


@pytest.mark.parametrize("share", [-0.1, 1.0, 2.0])
def test_a_drop_share_outside_0_1_is_refused(share):
    with pytest.raises(InputError, match="drop_preempted"):
        GateOptions(drop_preempted=share)


@needs_affinity
def test_pin_puts_every_thread_of_a_worker_on_the_idlest_core():
    core = _idlest_core(window_s=0.02)
    assert core in os.sched_getaffinity(0)
    proc = subprocess.Popen([sys.executable, "-c", "import threading, time\n"
                             "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
                             "time.sleep(30)"])
    try:
        for _ in range(100):  # wait for the second thread to exist
            if len(os.listdir(f"/proc/{proc.pid}/task")) >= 2:
                break
            subprocess.run(["sleep", "0.02"])
        _pin([proc.pid], core)
        for tid in os.listdir(f"/proc/{proc.pid}/task"):
            assert os.sched_getaffinity(int(tid)) == {core}
    finally:
        proc.kill()
        proc.wait()


@needs_affinity
def test_pin_is_a_no_op_without_a_core_or_a_process():
    mine = os.sched_getaffinity(0)
    _pin([2 ** 22 + 12345], 0)  # no such process: skipped, no error
    _pin([os.getpid()], None)  # no core known: nothing pinned
    assert os.sched_getaffinity(0) == mine


def test_core_ticks_reads_each_cores_line_and_skips_the_aggregate():
    from edgeprof.measure.devstate import parse_core_ticks

    text = "cpu  10 0 5 100 1 0 0 0\ncpu0 4 0 2 50 1 0 0 0\ncpu1 6 0 3 50\nintr 1 2 3\n"
    assert parse_core_ticks(text) == {0: [4, 0, 2, 50, 1, 0, 0, 0], 1: [6, 0, 3, 50, 0, 0, 0, 0]}
