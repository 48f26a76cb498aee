"""The profiler-trace parser and the what-did-the-activation-run-as logic."""

from edgeprof.runtime.nodes import NodeTime, activation_nodes, extra_nodes, time_share
from edgeprof.runtime.onnxruntime.ops import ort_memory_view, parse_trace


def test_parse_recorded_trace(data_dir):
    nodes = parse_trace(data_dir / "trace_conv_mish.json")
    assert [n.op_type for n in nodes] == ["ReorderInput", "Conv", "ReorderOutput", "Softplus", "Tanh", "Mul"]
    assert all(n.calls == 3 for n in nodes)
    assert all(n.total_us > 0 for n in nodes)
    later = parse_trace(data_dir / "trace_conv_mish.json", skip_runs=1)
    assert all(n.calls == 2 for n in later)
    # onnxruntime's per-node memory figures: every node writes one 1x8x16x16 float tensor
    assert all(n.output_bytes == 8 * 16 * 16 * 4 for n in nodes)
    assert nodes[0].mem_in_use_delta == 8192


def _nodes(*ops):
    return [NodeTime(f"n{i}", op, 1, 1.0) for i, op in enumerate(ops)]


def extra_ops(nodes, reference):
    return [n.op_type for n in extra_nodes(nodes, reference)]


def test_extra_ops_is_a_multiset_difference_in_run_order():
    reference = _nodes("ReorderInput", "Conv", "ReorderOutput")
    assert extra_ops(_nodes("ReorderInput", "Conv", "ReorderOutput"), reference) == []  # fused
    mish = _nodes("ReorderInput", "Conv", "ReorderOutput", "Softplus", "Tanh", "Mul")
    assert extra_ops(mish, reference) == ["Softplus", "Tanh", "Mul"]
    c3_ref = _nodes("Conv", "Conv", "Add", "Concat")
    c3_silu = _nodes("Conv", "QuickGelu", "Conv", "QuickGelu", "Add", "Concat")
    assert extra_ops(c3_silu, c3_ref) == ["QuickGelu", "QuickGelu"]


def test_activation_ops_by_type():
    found = activation_nodes(_nodes("Conv", "Softplus", "Tanh", "Mul", "Relu"))
    assert [n.op_type for n in found] == ["Softplus", "Tanh", "Relu"]


def test_time_share_and_memory_view_of_recorded_trace(data_dir):
    nodes = parse_trace(data_dir / "trace_conv_mish.json", skip_runs=1)
    act = [n for n in nodes if n.name.startswith("/act/")]
    share = time_share(act, nodes)
    assert 0 < share < 1
    assert share == sum(n.mean_us for n in act) / sum(n.mean_us for n in nodes)
    mem = ort_memory_view(data_dir / "trace_conv_mish.json")
    assert mem["peak_in_use_mb"] == 24608 / 2**20  # the largest mem_in_use_peak in the trace
    assert mem["arena_held_mb"] == 1048608 / 2**20
