"""Block-level ratios beside whole-network ratios."""

from edgeprof.report.compare import block_vs_network, block_vs_network_markdown
from edgeprof.results.rows import to_frame


def _row(block, act, ratio, width=3, imgsz=320, macs=1):
    return {"block": block, "act": act, "width": width, "depth": 1, "imgsz": imgsz, "ratio_to_baseline": ratio,
            "status": "ok", "precision": "fp32", "macs": macs, "model": f"{block}-{act}.onnx"}


def test_block_columns_come_before_network_columns():
    df = to_frame([_row("yolo-n", "relu", 1.0, macs=10**9), _row("yolo-n", "mish", 2.8, macs=10**9),
                   _row("conv", "relu", 1.0, width=64, imgsz=160, macs=10**6),
                   _row("conv", "mish", 2.0, width=64, imgsz=160, macs=10**6)])
    table = block_vs_network(df)
    assert list(table.columns) == ["conv w64 160px", "yolo-n 320px"]
    assert table.loc["mish", "conv w64 160px"] == 2.0 and table.loc["mish", "yolo-n 320px"] == 2.8
    assert "| mish | 2.00× | 2.80× |" in block_vs_network_markdown(df)
