"""The notes of a result row in the table: only what the user must act on.

- the row failed, is unsupported or was interrupted (with why);
- the CI its rounds stopped on (``ci_target``: by default the ratio's) did not get within ``--rel-ci`` in the
  budget;
- its per-round medians fell into two or more distinct levels (``levels``): a bimodal host, whose medians and
  ratios may move between runs;
- whatever a rule in ``NOTE_RULES`` says (the slot for host state, e.g. that the load changed while the row was
  measured: a rule takes the row and returns a short note or None).

``noisy`` stays a CSV column and is never a note: on a host whose run times are bimodal nearly every row is noisy
even where its ratio is well determined.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

NOTE_RULES: list[Callable[[dict], str | None]] = []


def row_notes(row: dict) -> list[str]:
    """The notes of one result row (a dict of its columns), in order: status, CI target, levels, contended, then
    NOTE_RULES."""
    status = row.get("status") or "ok"
    notes = []
    if status != "ok":
        notes.append(status + (f": {row.get('error')}" if row.get("error") else ""))
    if row.get("ci_reached") is False and status == "ok":
        notes.append("ratio CI target not reached" if row.get("ci_target") == "ratio" else "CI target not reached")
    levels = row.get("levels")
    if levels is not None and not pd.isna(levels) and int(levels) >= 2:
        notes.append("bimodal" if int(levels) == 2 else f"{int(levels)} levels")
    if row.get("contended") is True:  # another process took the core (edgeprof.measure.devstate)
        notes.append("contended")
    for rule in NOTE_RULES:
        note = rule(row)
        if note:
            notes.append(note)
    return notes
