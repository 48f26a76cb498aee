"""Which runtimes edgeprof knows: built-in names -> lazy import paths; or your own as ``pkg.mod:Class``.

``get_runtime(name)`` imports only the runtime asked for, so a worker process never imports another
runtime (nor torch). A name with a colon is an import path to a ``Runtime`` subclass; the current
working directory is searched too, as for user activations.
"""

from __future__ import annotations

import importlib
import os
import sys

from edgeprof.errors import InputError
from edgeprof.runtime.base import Runtime, RuntimeSettings

DEFAULT_RUNTIME = "onnxruntime"
# name -> (import path of its Runtime class, the Python module it needs)
BUILTIN: dict[str, tuple[str, str]] = {
    "onnxruntime": ("edgeprof.runtime.onnxruntime.runtime:OnnxRuntime", "onnxruntime"),
    "openvino": ("edgeprof.runtime.openvino.runtime:OpenVinoRuntime", "openvino"),
    "ncnn": ("edgeprof.runtime.ncnn.runtime:NcnnRuntime", "ncnn"),
    "mnn": ("edgeprof.runtime.mnn.runtime:MnnRuntime", "MNN"),
    "litert": ("edgeprof.runtime.litert.runtime:LiteRTRuntime", "ai_edge_litert"),
    "executorch": ("edgeprof.runtime.executorch.runtime:ExecuTorchRuntime", "executorch"),
}


def runtime_names() -> list[str]:
    return list(BUILTIN)


def _import_class(path: str, spec: str) -> type:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise InputError(f"--runtime {spec!r}: expected a built-in name ({', '.join(BUILTIN)}) or pkg.module:Class")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)  # your own runtime next to where you run edgeprof, as with PYTHONPATH=.
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"--runtime {spec!r}: cannot import {module_name} ({exc})") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Runtime)):
        raise InputError(f"--runtime {spec!r}: {attr} in {module_name} is not an edgeprof.runtime.base.Runtime "
                         "subclass")
    return cls


def get_runtime(name: str | Runtime | None = None) -> Runtime:
    """The runtime called ``name`` (default onnxruntime), an import path ``pkg.mod:Class``, or a Runtime as is.

    Unknown names and runtimes that are not installed are one-line InputErrors.
    """
    if isinstance(name, Runtime):
        return name
    spec = (name or DEFAULT_RUNTIME).strip()
    if spec in BUILTIN:
        path, module = BUILTIN[spec]
        cls = _import_class(path, spec)
        if not cls.available():
            extra = f"pip install 'edgeprof[{cls.extra}]'" if cls.extra else f"pip install {module}"
            raise InputError(f"runtime {spec} is not installed here; {extra}")
        return cls(spec)
    if ":" in spec:
        cls = _import_class(spec, spec)
        if not cls.available():
            raise InputError(f"runtime {spec} is not available here" + (f"; pip install 'edgeprof[{cls.extra}]'"
                                                                        if cls.extra else ""))
        return cls(spec)
    raise InputError(f"unknown runtime {spec!r}; valid: {', '.join(BUILTIN)}, or your own as pkg.module:Class")


def missing_runtimes() -> dict[str, str]:
    """The built-in runtimes that are not installed here: name -> the pip extra that installs it."""
    out = {}
    for name, (path, module) in BUILTIN.items():
        try:
            cls = _import_class(path, name)
            installed = cls.available()
            extra = cls.extra
        except InputError:  # its edgeprof module imports its package at the top
            installed, extra = False, name
        if not installed:
            out[name] = extra or module
    return out


def runtime_of(settings: RuntimeSettings) -> Runtime:
    """The runtime that ``settings`` belong to."""
    return get_runtime(settings.runtime)
