"""The profiler-trace parser and the what-did-the-activation-run-as logic."""

from edgeprof.profile.ops import NodeTime, activation_ops, extra_ops, parse_trace


def test_parse_recorded_trace(data_dir):
    nodes = parse_trace(data_dir / "trace_conv_mish.json")
    assert [n.op_type for n in nodes] == ["ReorderInput", "Conv", "ReorderOutput", "Softplus", "Tanh", "Mul"]
    assert all(n.calls == 3 for n in nodes)
    assert all(n.total_us > 0 for n in nodes)
    later = parse_trace(data_dir / "trace_conv_mish.json", skip_runs=1)
    assert all(n.calls == 2 for n in later)


def _nodes(*ops):
    return [NodeTime(f"n{i}", op, 1, 1.0) for i, op in enumerate(ops)]


def test_extra_ops_is_a_multiset_difference_in_run_order():
    reference = _nodes("ReorderInput", "Conv", "ReorderOutput")
    assert extra_ops(_nodes("ReorderInput", "Conv", "ReorderOutput"), reference) == []  # fused
    mish = _nodes("ReorderInput", "Conv", "ReorderOutput", "Softplus", "Tanh", "Mul")
    assert extra_ops(mish, reference) == ["Softplus", "Tanh", "Mul"]
    c3_ref = _nodes("Conv", "Conv", "Add", "Concat")
    c3_silu = _nodes("Conv", "QuickGelu", "Conv", "QuickGelu", "Add", "Concat")
    assert extra_ops(c3_silu, c3_ref) == ["QuickGelu", "QuickGelu"]


def test_activation_ops_by_type():
    assert activation_ops(_nodes("Conv", "Softplus", "Tanh", "Mul", "Relu")) == ["Softplus", "Tanh", "Relu"]
