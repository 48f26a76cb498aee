"""Import paths (``pkg.mod:Name``) of user extensions, looked up on sys.path and in the working directory."""

from __future__ import annotations

import importlib
import os
import sys

from edgeprof.errors import InputError


def is_import_path(text: str) -> bool:
    """``pkg.mod:Name`` (a '.' before the first ':') rather than a registered name."""
    return "." in str(text).split(":", 1)[0]


def import_object(path: str, what: str) -> object:
    """The object ``module.path:attr.path`` names; ``InputError`` names ``what`` and what is wrong.

    A module not found on sys.path is looked for in the current working directory too, so a user's
    ``mypkg/acts.py`` works from the folder it lives in without ``PYTHONPATH=.`` (the ``edgeprof`` script
    does not put the working directory on sys.path, as ``python -m`` would).
    """
    module_name, sep, attr_path = str(path).strip().partition(":")
    module_name, attr_path = module_name.strip(), attr_path.strip()
    if not sep or not module_name or not attr_path:
        raise InputError(f"{what} {path!r}: an import path has the form 'module.path:Name'")
    try:
        target: object = _import(module_name)
    except Exception as exc:  # any import failure is a problem with the user's input
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{what} {path!r}: cannot import module {module_name!r}: {first}") from None
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise InputError(f"{what} {path!r}: module {module_name!r} has no attribute {attr_path!r}") from None
    return target


def _import(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        top = module_name.split(".", 1)[0]
        if exc.name is None or exc.name.split(".", 1)[0] != top or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)  # after everything else: never shadows an installed package
        return importlib.import_module(module_name)
