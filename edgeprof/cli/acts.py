"""`edgeprof acts`: the activation registry: names, aliases, parameters and what the table says of each."""

from __future__ import annotations

from typing import Annotated

import typer

from edgeprof.cli.common import boundary, render
from edgeprof.cli.options import Format


@boundary
def acts(fmt: Annotated[Format, typer.Option("--format", "-f", help="How to print the table.")] = Format.table
         ) -> None:
    """List every registered activation (no torch needed).

    Example: edgeprof acts --format md
    """
    from edgeprof.api import acts_table

    render(acts_table(), fmt, title="edgeprof activations", results=False)
