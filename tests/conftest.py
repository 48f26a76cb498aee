"""Shared fixtures: small ONNX models made with onnx.helper (no torch), written to a temp folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def conv_act_model(path: Path, act: str = "relu", channels: int = 8, size: int = 16, dynamic_batch: bool = False):
    """Conv(3x3) followed by an activation, as ONNX: relu, mish (Softplus+Tanh+Mul) or none."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.1, "w")
    b = numpy_helper.from_array(np.zeros(channels, np.float32), "b")
    batch = "N" if dynamic_batch else 1
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, channels, size, size])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Conv", ["images", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="/conv/Conv")]
    if act == "relu":
        nodes.append(helper.make_node("Relu", ["c"], ["output"], name="/act/Relu"))
    elif act == "mish":
        nodes += [
            helper.make_node("Softplus", ["c"], ["sp"], name="/act/Softplus"),
            helper.make_node("Tanh", ["sp"], ["t"], name="/act/Tanh"),
            helper.make_node("Mul", ["c", "t"], ["output"], name="/act/Mul"),
        ]
    elif act == "none":
        nodes.append(helper.make_node("Identity", ["c"], ["output"], name="/act/Identity"))
    else:
        raise ValueError(act)
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def one_line_error(result, code: int = 2) -> str:
    """Assert a CLI result failed with ``code``, one line ``edgeprof: error: ...`` and no traceback; return it."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgeprof: error:"), result.output
    return lines[0]


def cli_ok(result) -> None:
    """A CliRunner result that exited 0 (its output shown otherwise)."""
    assert result.exit_code == 0, result.output


@pytest.fixture
def at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test modules (``tests._fake_runtime`` and the like) are found from the working directory, here and in the
    worker processes."""
    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))


@pytest.fixture
def tiny_models(tmp_path) -> dict[str, Path]:
    return {act: conv_act_model(tmp_path / f"tiny_{act}.onnx", act) for act in ("relu", "mish", "none")}


@pytest.fixture
def data_dir() -> Path:
    return Path(__file__).parent / "data"


@pytest.fixture(autouse=True, scope="session")
def _private_machine_cache(tmp_path_factory):
    """Keep the tests' machine measurements out of the user's cache."""
    import os

    old = os.environ.get("EDGEPROF_CACHE")
    os.environ["EDGEPROF_CACHE"] = str(tmp_path_factory.mktemp("edgeprof-cache"))
    yield
    if old is None:
        os.environ.pop("EDGEPROF_CACHE", None)
    else:
        os.environ["EDGEPROF_CACHE"] = old


@pytest.fixture(autouse=True, scope="session")
def _private_models_dir(tmp_path_factory):
    """Keep the tests' exported models out of the user's cache (the CLI's default models folder)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEPROF_MODELS_DIR", str(tmp_path_factory.mktemp("edgeprof-models")))
        yield
