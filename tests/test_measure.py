"""Interleaved measurement: real onnxruntime runs on tiny models, failures kept as rows."""

import os
import signal

import pytest

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.measure import MeasureOptions, SessionSettings, measure, paired_ratio_to
from edgeprof.runtime.onnxruntime.session import parse_shapes

FAST = MeasureOptions(max_time=0.4, min_samples=10, min_rounds=6, warmup_s=0.02, sessions=3)


@pytest.mark.parametrize("isolate", [True, False])
def test_measure_interleaved(tiny_models, isolate):
    opts = MeasureOptions(**{**FAST.__dict__, "isolate": isolate})
    relu_path, mish_path = str(tiny_models["relu"]), str(tiny_models["mish"])
    relu, mish = measure([relu_path, mish_path], SessionSettings(), opts, pairs=[(mish_path, relu_path)])
    for m in (relu, mish):
        assert m.status == "ok", m.error
        assert m.stats["n"] >= 10 and m.stats["median_ms"] > 0
        assert m.stats["min_ms"] <= m.stats["median_ms"] <= m.stats["p90_ms"] <= m.stats["p99_ms"]
        assert m.session_ms > 0 and m.first_run_ms > 0
        assert len(set(m.sample_round)) >= 6  # several rounds, not one long run
        assert m.sessions >= 3 and set(m.sample_session) >= {0, 1, 2} and m.levels >= 1  # fresh processes
    # the two models took turns, in the same rounds: the two sides of the ratio the rounds stopped on
    assert set(relu.sample_round) == set(mish.sample_round)
    assert relu.target == mish.target == "ratio"
    assert [n["op_type"] for n in mish.nodes][-3:] == ["Softplus", "Tanh", "Mul"]
    # per-op shares come from enough profiled runs to be stable, and say how many
    assert 20 <= mish.per_op_runs <= 1000 and all(n["calls"] == mish.per_op_runs for n in mish.nodes)
    assert mish.runtime == "onnxruntime" and mish.runtime_version
    ratio, lo, hi = paired_ratio_to(mish, relu)
    assert ratio > 1.0 and lo <= ratio <= hi
    if isolate:
        assert mish.peak_rss_session_mb is not None and mish.peak_rss_run_mb is not None
    else:
        assert mish.peak_rss_session_mb is None  # a shared process cannot attribute memory


def test_broken_model_is_a_failed_row_and_the_rest_goes_on(tiny_models, tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not a protobuf")
    results = measure([str(corrupt), str(tiny_models["relu"])], SessionSettings(), FAST)
    assert results[0].status == "failed" and "cannot load ONNX model" in results[0].error
    assert results[1].status == "ok" and results[1].stats["n"] >= 10


def test_worker_crash_is_reported_not_raised(tiny_models):
    from edgeprof.runtime.worker import WorkerRunner

    runner = WorkerRunner(str(tiny_models["relu"]), SessionSettings().as_dict())
    runner.load()
    os.kill(runner.proc.pid, signal.SIGKILL)
    runner.proc.wait()
    with pytest.raises(RuntimeFailure, match="worker process died"):
        runner.sample(count=1)
    runner.close()


def test_dynamic_shapes(tmp_path):
    from conftest import conv_act_model

    path = conv_act_model(tmp_path / "dyn.onnx", "relu", dynamic_batch=True)
    [m] = measure([str(path)], SessionSettings(), MeasureOptions(**{**FAST.__dict__, "isolate": False}))
    assert m.status == "failed" and "dynamic dimension" in m.error and "--shape" in m.error
    [m] = measure([str(path)], SessionSettings(), MeasureOptions(**{**FAST.__dict__, "isolate": False}),
                  shapes=parse_shapes(["N=2"]))
    assert m.status == "ok"


def test_parse_shapes_errors():
    assert parse_shapes(["images=1x3x8x8", "N=4"]) == {"images": (1, 3, 8, 8), "N": (4,)}
    assert parse_shapes(["1x3x8x8"]) == {"": (1, 3, 8, 8)}
    with pytest.raises(InputError):
        parse_shapes(["images=1x3xfoo"])
    with pytest.raises(InputError):
        parse_shapes(["images=0x3x8x8"])


def test_options_are_validated():
    with pytest.raises(InputError):
        MeasureOptions(rel_ci=0)
    with pytest.raises(InputError):
        MeasureOptions(min_samples=3)
    with pytest.raises(InputError):
        SessionSettings(opt_level="fast")


def test_hung_worker_is_killed_after_its_timeout(tiny_models):
    from edgeprof.runtime.worker import WorkerRunner

    runner = WorkerRunner(str(tiny_models["relu"]), SessionSettings().as_dict(), timeout=1.0)
    runner.load()
    os.kill(runner.proc.pid, signal.SIGSTOP)  # alive but never answers
    with pytest.raises(RuntimeFailure, match="did not answer within 1 s"):
        runner.sample(count=1)
    assert runner.proc.poll() is not None
    runner.close()


def test_one_worker_process_holds_several_models_and_answers_each(tiny_models):
    """A shared process: start messages sent together are answered in order however their callers read them (two
    replies can arrive in one read), a round times several models' bursts in one request, and one model's failure
    in a round is its own."""
    from edgeprof.errors import EdgeprofError
    from edgeprof.runtime.worker import WorkerProcess

    process = WorkerProcess(spin_s=0.01)
    try:
        relu = process.runner(str(tiny_models["relu"]), SessionSettings().as_dict())
        mish = process.runner(str(tiny_models["mish"]), SessionSettings().as_dict())
        broken = process.runner("/nonexistent/model.onnx", SessionSettings().as_dict())
        mish.ready()  # out of order: relu's reply is read and kept for it
        relu.ready()
        broken.ready()
        with pytest.raises(EdgeprofError):
            broken.load()  # its own failure; the process and the other models go on
        for r in (relu, mish):
            r.load()
            r.first_run()
        assert relu.proc.pid == mish.proc.pid  # one process
        out = process.round([(relu.key, 3), (mish.key, 2), ("9", 1)])
        assert len(out[0]) == 3 and len(out[1]) == 2 and all(x > 0 for x in out[0] + out[1])
        assert isinstance(out[2], EdgeprofError) and "no model" in str(out[2])
        mish.close()  # drops the model, the process stays
        assert relu.sample(count=2) and process.proc.poll() is None
    finally:
        process.close()
    assert process.proc.poll() is not None


def test_a_model_that_kills_its_shared_worker_fails_alone(tiny_models, tmp_path, at_repo_root):
    """Every model of a session shares its worker: one that ends the process in its burst is a failed row naming
    the death; the others lose that session, not their rows, and are timed in the next sessions."""
    import shutil

    from edgeprof.runtime.base import RuntimeSettings

    crash = tmp_path / "crash.onnx"
    shutil.copy(tiny_models["mish"], crash)
    good = str(tiny_models["relu"])
    other = tmp_path / "other.onnx"
    shutil.copy(tiny_models["relu"], other)
    settings = RuntimeSettings(runtime="tests._fake_runtime:CrashingRuntime")
    results = measure([good, str(other), str(crash)], settings, FAST, pairs=[(str(other), good), (str(crash), good)])
    assert results[2].status == "failed" and "worker process died" in results[2].error
    for m in results[:2]:
        assert m.status == "ok", m.error
        assert m.sessions >= 2 and m.stats["n"] >= 10  # the sessions after the crash went on without it
