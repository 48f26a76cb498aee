"""ExecuTorch's ETDump turned into per-node records: the XNNPACK operators and portable kernels that ran, and for how
long; their op types named in edgeprof's (ONNX) vocabulary so the activation table recognises them."""

from __future__ import annotations

import re
from collections import Counter

from edgeprof.runtime.nodes import NodeTime

# ExecuTorch's own runtime events around the model's operators: not nodes
FRAMEWORK_EVENTS = frozenset({"Method::init", "Program::load_method", "Method::execute", "DELEGATE_CALL",
                              "OPERATOR_CALL"})

# XNNPACK operator names (``xnn_operator_type`` strings, before the " (layout, type)" part) -> op type
XNNPACK_OPS = {
    "Convolution": "Conv", "Deconvolution": "ConvTranspose", "Fully Connected": "Gemm",
    "Batch Matrix Multiply": "MatMul",
    "Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "Divide": "Div", "Maximum": "Max", "Minimum": "Min",
    "Clamp": "Clip", "ReLU": "Relu", "TanH": "Tanh", "Leaky ReLU": "LeakyRelu", "LeakyReLU": "LeakyRelu",
    "PReLU": "PRelu", "Sine": "Sin", "Cosine": "Cos", "ELU": "Elu",
    "Sigmoid": "Sigmoid", "Tanh": "Tanh",
    "HardSwish": "HardSwish", "GELU": "Gelu", "Exp": "Exp", "Log": "Log", "Negate": "Neg", "Square": "Mul",
    "Square Root": "Sqrt", "Abs": "Abs", "Floor": "Floor", "Ceiling": "Ceil", "Copy": "Identity",
    "Transpose": "Transpose", "Max Pooling": "MaxPool", "Average Pooling": "AveragePool", "Softmax": "Softmax",
    "Concatenate": "Concat", "Constant Pad": "Pad", "Copy Sign": "CopySign",
}
# portable / optimized kernel names (aten op, without "native_call_" and the overload) -> op type
PORTABLE_OPS = {
    "convolution": "Conv", "add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "relu": "Relu",
    "leaky_relu": "LeakyRelu", "hardtanh": "Clip", "clamp": "Clip", "sigmoid": "Sigmoid", "tanh": "Tanh",
    "hardswish": "HardSwish", "hardsigmoid": "HardSigmoid", "gelu": "Gelu", "elu": "Elu", "exp": "Exp",
    "log": "Log", "log1p": "Log1p", "softplus": "Softplus", "mish": "Mish", "silu": "Swish", "sin": "Sin",
    "gt": "Greater", "lt": "Less", "ge": "GreaterOrEqual", "le": "LessOrEqual", "where": "Where", "erf": "Erf",
    "expm1": "Expm1", "neg": "Neg", "pow": "Pow", "maximum": "Max", "minimum": "Min", "cat": "Concat",
    "max_pool2d_with_indices": "MaxPool", "_prelu_kernel": "PRelu", "prelu": "PRelu",
    "_native_batch_norm_legit_no_training": "BatchNormalization",
    "full_like": "ConstantOfShape", "scalar_tensor": "Constant", "_to_copy": "Cast", "clone": "Identity",
}


def op_type_of(event_name: str) -> str:
    """The op type of an ETDump operator event: ``Convolution (NHWC, F32) IGEMM #1`` -> ``Conv`` (XNNPACK),
    ``native_call_gt.Scalar_out`` -> ``Greater`` (a portable kernel); an unknown name is kept as it is."""
    if event_name.startswith("native_call_"):
        aten = event_name[len("native_call_"):].split(".", 1)[0]
        return PORTABLE_OPS.get(aten, aten)
    base = re.sub(r"\s*#\d+$", "", event_name).split(" (", 1)[0].strip()
    return XNNPACK_OPS.get(base, base)


def is_delegated(event_name: str) -> bool:
    """Whether an operator event ran inside the XNNPACK delegate (its operators are named by XNNPACK)."""
    return not event_name.startswith("native_call_")


def parse_etdump(data: bytes, skip_runs: int = 1, scopes: dict[str, str] | None = None) -> tuple[list[NodeTime], int]:
    """Per-node times (ns ticks -> µs) from an ETDump's bytes, nodes in the order they first ran, and the number of
    runs kept. ``skip_runs`` leaves out the first runs (the first carries the delegate's lazy set-up). ``scopes``
    maps an op type (``Log1p``) to the torch module all its nodes came from (``act``, from the conversion's record),
    written into the node's name as ``portable/act/...`` or ``xnnpack/act/...`` so the activation's own operators
    are known by scope."""
    from executorch.devtools.etdump.serialize import deserialize_from_etdump_flatcc

    etdump = deserialize_from_etdump_flatcc(data)
    order: list[str] = []
    total: dict[str, float] = {}
    calls: Counter = Counter()
    runs = 0
    for run in etdump.run_data:
        events = [ev.profile_event for ev in (run.events or []) if ev.profile_event is not None]
        names = [(ev.name or ev.delegate_debug_id_str or "") for ev in events]
        if not any(name == "Method::execute" for name in names):
            continue  # the load events only
        runs += 1
        if runs <= skip_runs:
            continue
        seen: Counter = Counter()
        for ev, name in zip(events, names, strict=True):
            if not name or name in FRAMEWORK_EVENTS:
                continue
            seen[name] += 1
            key = name if seen[name] == 1 else f"{name} [{seen[name]}]"  # a kernel name met twice in one run
            if key not in total:
                order.append(key)
                total[key] = 0.0
            total[key] += (ev.end_time - ev.start_time) / 1e3
            calls[key] += 1
    kept = max(0, runs - skip_runs)
    return [NodeTime(_node_name(k, scopes or {}), op_type_of(_event_of(k)), calls[k], total[k]) for k in order], kept


def _event_of(key: str) -> str:
    return re.sub(r" \[\d+\]$", "", key)


def _node_name(key: str, scopes: dict[str, str]) -> str:
    """``xnnpack/conv/Convolution (NHWC, F32) IGEMM #1`` for a delegated operator, ``portable/act/native_call_gt...``
    for a portable kernel, with the torch module its op type came from when that is one module (else none)."""
    event = _event_of(key)
    scope = scopes.get(op_type_of(event), "")
    where = "xnnpack" if is_delegated(event) else "portable"
    return f"{where}/{scope.replace('.', '/')}/{key}" if scope else f"{where}/{key}"
