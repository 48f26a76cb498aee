"""What the activation ran as comes from the activation's own nodes, never from the block's other ops (the c3
block's residual Add is not its activation). Real onnxruntime traces of exported blocks, no timing asserted."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeprof.convert.onnx_export import export_block
from edgeprof.results.rows import per_op_rows, split_act_nodes
from edgeprof.runtime.onnxruntime.ops import parse_trace
from edgeprof.spec import BlockSpec


def _executed(path: Path, shape, opt_level: str = "all") -> list[dict]:
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.intra_op_num_threads = 1
    options.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[opt_level]
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.zeros(shape, np.float32)
    for _ in range(2):
        session.run(None, {"images": x})
    nodes = parse_trace(session.end_profiling())
    return [{"name": n.name, "op_type": n.op_type, "calls": n.calls, "mean_us": n.mean_us} for n in nodes]


def _act_ops(tmp_path, block: str, act: str, opt_level: str = "all") -> tuple[list[str], list[str]]:
    spec = BlockSpec(block, act, width=16, imgsz=16)
    built = export_block(spec, tmp_path)
    reference = export_block(BlockSpec(block, "identity", width=16, imgsz=16), tmp_path)
    nodes = _executed(built.path, spec.input_shape, opt_level)
    ref_nodes = _executed(reference.path, spec.input_shape, opt_level)
    everything, act_nodes = split_act_nodes(nodes, ref_nodes, built.spec.act, built.act_ops)
    return [n.op_type for n in act_nodes], [n.op_type for n in everything]


def test_c3_relu_is_fused_and_its_residual_add_is_not_the_activation(tmp_path):
    act_ops, all_ops = _act_ops(tmp_path, "c3", "relu")
    assert "Add" in all_ops  # the residual ran as its own node...
    assert act_ops == []  # ...but relu fused into every Conv: nothing of the activation's ran


def test_c3_mish_runs_as_softplus_tanh_mul_per_conv_and_no_add(tmp_path):
    act_ops, all_ops = _act_ops(tmp_path, "c3", "mish")
    assert "Add" in all_ops and "Add" not in act_ops
    assert sorted(set(act_ops)) == ["Mul", "Softplus", "Tanh"]
    assert act_ops.count("Softplus") == act_ops.count("Tanh") == act_ops.count("Mul") == 5  # 5 convs in c3 n=1


@pytest.mark.parametrize(("act", "fused_op"), [("silu", "QuickGelu"), ("gelu", "Gelu")])
def test_fused_forms_count_and_the_residual_add_still_does_not(tmp_path, act, fused_op):
    act_ops, _ = _act_ops(tmp_path, "c3", act)
    assert act_ops and set(act_ops) == {fused_op}


def test_unoptimised_gelu_keeps_its_own_add_but_not_the_residual(tmp_path):
    act_ops, all_ops = _act_ops(tmp_path, "c3", "gelu", opt_level="disable")
    assert act_ops.count("Erf") == 5 and act_ops.count("Add") == 5  # one Add per gelu; the residual is left out
    assert all_ops.count("Add") == 6


def test_per_op_rows_mark_the_same_nodes(tmp_path):
    spec = BlockSpec("c3", "relu", width=16, imgsz=16)
    built = export_block(spec, tmp_path)
    nodes = _executed(built.path, spec.input_shape)
    rows = per_op_rows({"act": "relu", "act_ops_exported": "Relu"}, nodes, [{"name": "x", "op_type": "Conv",
                                                                             "calls": 1, "mean_us": 1.0}])
    assert rows and not any(r["is_act"] for r in rows)


def _node(name: str, op_type: str) -> dict:
    return {"name": name, "op_type": op_type, "calls": 1, "mean_us": 1.0}


def test_a_runtime_naming_a_node_by_the_ops_fused_into_it():
    """A runtime that names a node by its ops (OpenVINO: own op first, then what it fused): a conv with the
    activation as a post-op is the conv's, not the activation's; an activation on its own, or a fused elementwise
    chain the reference block did not run (CELU decomposed into Max/Exp/Add/Min), is the activation's."""
    reference = [_node("in", "Reorder"), _node("c", "Conv+Add"), _node("out", "Reorder")]
    fused = [_node("in", "Reorder"), _node("c", "Conv+Add+Mish"), _node("out", "Reorder")]
    _, act_nodes = split_act_nodes(fused, reference, "mish", ["Softplus", "Tanh", "Mul"])
    assert act_nodes == []
    separate = [*reference, _node("output", "Sin")]
    assert [n.op_type for n in split_act_nodes(separate, reference, "sin", ["Sin"])[1]] == ["Sin"]
    chain = [*reference, _node("output", "Max+Exp+Add+Min")]
    assert [n.op_type for n in split_act_nodes(chain, reference, "celu", ["Celu"])[1]] == ["Max+Exp+Add+Min"]
def test_a_runtimes_decomposition_in_the_act_scope_is_the_activations_but_a_fused_conv_there_is_not():
    """Runtime-neutral: a node a runtime names in the ``/act/`` scope counts as the activation's when the reference
    block never runs its op type (ExecuTorch's softplus kernels), never when it is a convolution (a Conv fused with
    the act); ``mean_us`` None (a runtime without per-op times) stays None, not a crash or a made-up time."""
    def node(name, op_type, mean_us=1.0):
        return {"name": name, "op_type": op_type, "calls": 3, "mean_us": mean_us}

    reference = [node("xnnpack/conv/Convolution #1", "Conv")]
    nodes = [node("xnnpack/act/Convolution #1", "Conv"), node("portable/act/native_call_log1p.out", "Log1p"),
             node("xnnpack/act/TanH #1", "Tanh"), node("portable/native_call_gt.Scalar_out", "Greater")]
    _, act = split_act_nodes(nodes, reference, "mish", ["Softplus", "Tanh", "Mul"])
    assert [n.op_type for n in act] == ["Log1p", "Tanh"]
    untimed = [node("a/act/x", "Log1p", None), node("conv", "Conv", None)]
    all_nodes, act = split_act_nodes(untimed, reference, "mish", ["Softplus", "Tanh", "Mul"])
    assert [n.op_type for n in act] == ["Log1p"] and all(n.mean_us is None for n in all_nodes)
