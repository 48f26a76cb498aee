"""The run recorder: the one owner of a run's files (CSV, per-op CSV, metadata JSON), its lock, Ctrl-C and resume.

Every entry point (built blocks, whole networks, bundles, ONNX files, ``sweep --onnx``) measures through
``edgeprof.pipeline`` and hands its rows to a ``RunRecorder``:

    with RunRecorder("sweep", {"plan": ...}, csv_path, resume=True) as rec:
        if not rec.is_done(config): ... rec.record([(row, per_op_rows), ...])

- Rows are appended as whole lines (one write, fsync; cut back on failure), each row's per-op rows only
  after the row itself is in the CSV. A row that cannot be written ends the run with ``ResultsNotSaved``,
  which carries every row measured so the caller can still show them.
- The CSV is locked (``<csv>.lock``, fcntl.flock) for the run: a second run on the same file is refused.
- An existing non-empty CSV is refused unless the run resumes it (``resume``) or adds to it (``append``).
- On resume a partial last line (a write cut off) is dropped, saying so; a row with an impossible value is
  refused naming its line; rows left ``interrupted`` are dropped so they are measured again. A config counts
  as done only if measured with the same ``RESUME_KEYS`` -- which include the host, runtime version and cache
  state (warm and cold rows are never taken for each other).
- The metadata JSON keeps every run that wrote to the CSV (``runs``: run_id, host, versions, command, ...);
  rows are stamped with the current run's host and versions, never an earlier run's.
- Ctrl-C becomes ``SweepInterrupted`` (exit 130) naming the command that continues the run.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import pandas as pd

from edgeprof.errors import EdgeprofError, InputError, RuntimeFailure
from edgeprof.results.rows import (
    append_per_op,
    append_rows,
    check_writable,
    per_op_path,
    read_results,
    stamp_rows,
    to_frame,
    write_metadata,
)
from edgeprof.results.schema import CACHE_STATES, COLUMNS, SCHEMA

# Where and with which runtime version a row was measured: ``stamp_rows`` puts them on every row from its
# run's metadata, and a config counts as done only where they match this run's.
MEASURED_WITH = ("host_fingerprint", "runtime", "runtime_version")
# What a row of an earlier run must share with a config for the config to count as already measured
# (--resume): what was built, how it was run, and where and with which runtime version it was measured.
RESUME_KEYS = ("precision", "act", "block", "width", "depth", "imgsz", "batch", "kernel", "stride", "threads",
               "runtime_settings", "cache", "opset", "exporter", *MEASURED_WITH)
_CACHE_AT = RESUME_KEYS.index("cache")


def _other_cache_states(keys: list[tuple], done: set[tuple]) -> int:
    """How many of ``keys`` are not done but done with another cache state (warm for cold, cold for warm)."""
    def with_state(key: tuple, state: str) -> tuple:
        return key[:_CACHE_AT] + (state,) + key[_CACHE_AT + 1:]

    return sum(1 for k in keys if k not in done and
               any(with_state(k, s) in done for s in CACHE_STATES if s != k[_CACHE_AT]))


def _runtime_version(name: str) -> str | None:
    """The installed version of runtime ``name`` (None where it cannot be loaded here)."""
    from edgeprof.runtime.registry import get_runtime

    try:
        return get_runtime(name).version()
    except EdgeprofError:
        return None


class SweepInterrupted(EdgeprofError):
    """Ctrl-C: the rows measured so far are in the CSV; the message names the command that continues."""

    exit_code = 130

    def __init__(self, csv_path: Path, rows_kept: int, continue_with: str = ""):
        tail = f"; to continue: {continue_with}" if continue_with else ""
        super().__init__(f"interrupted; {rows_kept} measured rows kept in {csv_path}{tail}")
        self.csv_path = csv_path
        self.rows_kept = rows_kept


class ResultsNotSaved(RuntimeFailure):
    """Rows were measured but could not be written (disk full...). ``frame`` holds every row of the run."""

    def __init__(self, message: str, frame: pd.DataFrame, csv_path: Path):
        super().__init__(message)
        self.frame = frame
        self.csv_path = csv_path


def continue_command(csv_path: Path, argv: list[str] | None = None) -> str:
    """The command line that continues a run: the same arguments with --csv and --resume."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--csv" not in args:
        args += ["--csv", str(csv_path)]
    if "--append" in args:
        args.remove("--append")
    if "--resume" not in args:
        args.append("--resume")
    return "edgeprof " + " ".join(shlex.quote(a) for a in args)


def new_csv_path(results_dir: Path = Path("results"), prefix: str = "sweep") -> Path:
    from datetime import datetime

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(results_dir) / f"{prefix}-{stamp}.csv"
    n = 1
    while path.exists():
        n += 1
        path = Path(results_dir) / f"{prefix}-{stamp}-{n}.csv"
    return path


def _cell(value) -> str:
    """A key cell, the same whether it comes from a config (None, int, bool) or a CSV row (<NA>, Int64)."""
    if value is None or (not isinstance(value, str | bool) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(bool(value)) if type(value).__name__ in ("bool", "bool_") else str(value)


def resume_key(row: dict) -> tuple[str, ...]:
    """The identity of a measured config. A model edgeprof did not build (no width) is also keyed by its file."""
    key = tuple(_cell(row.get(k)) for k in RESUME_KEYS)
    return key + ((_cell(row.get("model")),) if _cell(row.get("width")) == "" else ())


def runs_of(metadata: dict) -> list[dict]:
    """The runs a metadata JSON describes: its ``runs`` list, or (files from before it) the one run it is."""
    if isinstance(metadata.get("runs"), list):
        return [r for r in metadata["runs"] if isinstance(r, dict)]
    return [{k: v for k, v in metadata.items() if k != "resumed"}, *metadata.get("resumed", [])]


class RecordOptions(TypedDict, total=False):
    """How an entry point's caller says where and how a run is recorded (keyword arguments of every pipeline):
    the CSV (default: a new file in results/), extra metadata, --resume or --append, and ``on_rows``: called with
    the rows of each job (a size group) as soon as they are recorded, to show them while the run goes on."""

    csv_path: Path | None
    metadata: dict | None
    resume: bool
    append: bool
    on_rows: Callable[[pd.DataFrame], None] | None


def new_run_id() -> str:
    """Twelve random hex digits, at least one of them a letter other than e: never a number to pandas or a
    spreadsheet (``123456e78901`` reads as a float, ``012345678901`` as an integer without its 0)."""
    while True:
        run_id = uuid.uuid4().hex[:12]
        if any(c in "abcdf" for c in run_id):
            return run_id


class RunRecorder:
    """Owns one run's results files from start to end; a context manager (see the module's docstring).

    ``run_info`` is what the entry point says about the run (plan, settings...); ``metadata`` is the caller's.
    """

    def __init__(self, prefix: str, run_info: dict, csv_path: Path | None = None, metadata: dict | None = None,
                 resume: bool = False, append: bool = False, on_note=None, on_rows=None):
        if resume and csv_path is None:
            raise InputError("--resume needs --csv: the results file of the run to continue")
        if resume and append:
            raise InputError("--resume and --append exclude each other: --resume skips what the CSV holds, "
                             "--append measures everything again and adds it")
        self.csv_path = check_writable(csv_path or new_csv_path(prefix=prefix))
        self.resume, self.append = resume, append
        self.run_id = new_run_id()
        self._extra = {**run_info, **(metadata or {})}
        self._note = on_note or (lambda message: print(f"edgeprof: {message}", file=sys.stderr))
        self._on_rows = on_rows
        self.rows: list[dict] = []
        self.saved = 0
        self.done: set[tuple] = set()
        self._done_elsewhere: dict[tuple, set[tuple]] = {}
        self._lock_fd: int | None = None
        self.meta: dict = {}
        self._runs: list[dict] = []

    # --- start and end -------------------------------------------------------------------------------
    def __enter__(self) -> RunRecorder:
        from edgeprof.measure.host import run_metadata

        self._lock()
        try:
            exists = self.csv_path.exists() and self.csv_path.stat().st_size > 0
            if exists and not (self.resume or self.append):
                raise InputError(f"{self.csv_path} already holds results: add --resume to continue that run, "
                                 "--append to add this run's rows to it, or give a new --csv")
            if exists:
                self._load_existing()
            self.meta = run_metadata({"run_id": self.run_id, **self._extra})
            self._runs = self._earlier_runs() if exists else []
            self._write_metadata()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        from edgeprof.measure.host import load_average

        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        self.meta.update(load_average_end=load_average(), interrupted=interrupted)
        try:
            self._write_metadata()
        except EdgeprofError:
            if exc_type is None:
                self._unlock()
                raise
        self._unlock()
        if interrupted:
            raise SweepInterrupted(self.csv_path, len(self.rows), continue_command(self.csv_path)) from None
        return False

    def add_metadata(self, **fields) -> None:
        self.meta.update(fields)
        self._write_metadata()

    def _write_metadata(self) -> None:
        write_metadata(self.csv_path, {"runs": [*self._runs, self.meta]})

    def _earlier_runs(self) -> list[dict]:
        path = self.csv_path.with_suffix(".json")
        try:
            return runs_of(json.loads(path.read_text()))
        except (OSError, ValueError, AttributeError):
            return []

    # --- the lock ------------------------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.csv_path.with_name(self.csv_path.name + ".lock")

    def _lock(self) -> None:
        import fcntl

        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise InputError(f"cannot write results to {self.csv_path}: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode(errors="replace").strip()
                os.close(fd)
                raise InputError(f"{self.csv_path} is being written by another edgeprof run"
                                 f"{f' (pid {holder})' if holder else ''}; wait for it to end or give another "
                                 "--csv") from None
            try:  # the file we locked may have been removed by a run that just ended: lock the current one
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self._lock_fd = fd
                return
            os.close(fd)

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        try:
            self.lock_path.unlink()
        except OSError:
            pass
        os.close(self._lock_fd)  # closing releases the flock
        self._lock_fd = None

    # --- resume --------------------------------------------------------------------------------------
    def _load_existing(self) -> None:
        """Check the CSV can be continued: drop a partial last line, refuse impossible rows, drop interrupted
        rows (measured again), and with --resume note which configs are done."""
        path = self.csv_path
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(path, "r+b") as fh:
                fh.truncate(keep)
            self._note(f"dropped a partial last line of {path} ({len(data) - keep} bytes; a write was cut off)")
            data = data[:keep]
            if not data:
                return
        header = data.split(b"\n", 1)[0].decode(errors="replace").strip().split(",")
        if header != list(COLUMNS):
            raise InputError(f"cannot add to {path}: its columns differ from this edgeprof's (another version "
                             "wrote it); give a new --csv")
        try:
            raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot add to {path}: not a readable CSV ({str(exc).splitlines()[0]}); "
                             "give a new --csv") from None
        for i, record in enumerate(raw.to_dict("records")):
            for column in SCHEMA:
                problem = column.problem(record[column.name])
                if problem:
                    raise InputError(f"cannot add to {path}: line {i + 2} has {column.name}="
                                     f"{record[column.name]!r}, {problem}; fix or delete that line, or give a new "
                                     "--csv")
        interrupted = raw["status"] == "interrupted"
        if interrupted.any():
            keep = raw[~interrupted]
            tmp = path.with_suffix(".csv.tmp")
            try:
                keep.to_csv(tmp, index=False, lineterminator="\n")
                tmp.replace(path)
            except OSError as exc:
                raise InputError(f"cannot rewrite {path} to resume: {exc.strerror or exc}") from None
            self._note(f"dropped {int(interrupted.sum())} interrupted rows of {path}: measured again")
            raw = keep
        if self.resume:
            for row in read_results(path).to_dict("records"):
                key = resume_key(row)
                self.done.add(key)
                self._done_elsewhere.setdefault(self._without_host(key), set()).add(
                    tuple(_cell(row.get(k)) for k in MEASURED_WITH))

    @staticmethod
    def _without_host(key: tuple) -> tuple:
        return tuple(v for k, v in zip(RESUME_KEYS, key, strict=False) if k not in MEASURED_WITH) + \
            key[len(RESUME_KEYS):]

    def _config_key(self, config: dict) -> tuple:
        runtime = config.get("runtime") or "onnxruntime"
        # this run's host and runtime version, as its rows get them
        here = stamp_rows([{"runtime": runtime, "runtime_version": _runtime_version(runtime)}], self.meta)[0]
        return resume_key({**config, **{k: here.get(k) for k in MEASURED_WITH}})

    def is_done(self, config: dict) -> bool:
        """Whether --resume finds ``config`` (a row, or a config's RESUME_KEYS) measured here, with this runtime."""
        return self._config_key(config) in self.done

    def note(self, message: str) -> None:
        """One line for the user about this run (an estimate of a long measurement), as the recorder's own notes."""
        self._note(message)

    def announce(self, configs: list[dict]) -> None:
        """With --resume, say in one line how many of the planned configs are done and which are measured
        again because the CSV has them only from another host or runtime version."""
        if not self.resume:
            return
        keys = [self._config_key(c) for c in configs]
        done = sum(k in self.done for k in keys)
        again = [k for k in keys if k not in self.done and self._without_host(k) in self._done_elsewhere]
        message = f"resuming {self.csv_path}: {done} of {len(keys)} configs already measured"
        if again:
            here = tuple(self._config_key({})[RESUME_KEYS.index(k)] for k in MEASURED_WITH)
            there = sorted({w for k in again for w in self._done_elsewhere[self._without_host(k)]})
            message += (f"; {len(again)} measured again: the CSV has them from another host or runtime version "
                        f"({', '.join('/'.join(t) for t in there)}; here {'/'.join(here)})")
        other_cache = _other_cache_states(keys, self.done)
        if other_cache:  # warm and cold rows are never taken for each other: say so
            here = sorted({k[_CACHE_AT] for k in keys})
            message += (f"; {other_cache} measured with --cache {'/'.join(here)}: the CSV has them only with "
                        f"--cache {'/'.join(s for s in CACHE_STATES if s not in here)}")
        self._note(message)

    # --- rows ----------------------------------------------------------------------------------------
    def record(self, entries: list[tuple[dict, list[dict]]]) -> None:
        """Stamp and append each row, then its per-op rows; a row that cannot be written ends the run with
        ``ResultsNotSaved`` (the rows stay in memory, and no per-op rows are written for it)."""
        stamp_rows([row for row, _ in entries], self.meta)
        for row, _ in entries:
            row["run_id"] = self.run_id
            self.rows.append(row)  # measured: shown to the caller even if it cannot be written
        for row, ops in entries:
            try:
                append_rows(self.csv_path, [row])
                self.saved += 1
                append_per_op(per_op_path(self.csv_path), [{**op, "run_id": self.run_id} for op in ops])
            except RuntimeFailure as exc:
                raise ResultsNotSaved(f"{exc}; {len(self.rows)} rows measured, {self.saved} of them saved (all "
                                      "printed)", self.frame(), self.csv_path) from None
        if self._on_rows is not None and entries:  # the caller shows them while the run goes on
            self._on_rows(to_frame([row for row, _ in entries]))

    def frame(self) -> pd.DataFrame:
        return to_frame(self.rows)
