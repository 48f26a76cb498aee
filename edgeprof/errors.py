"""The errors edgeprof raises on purpose; the CLI turns each into one line on stderr and its exit code."""


class EdgeprofError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 3


class InputError(EdgeprofError, ValueError):
    """Bad input from the user: unknown name, impossible size, unreadable file. Exit 2."""

    exit_code = 2


class RuntimeFailure(EdgeprofError, RuntimeError):
    """Something failed while building, exporting or measuring. Exit 3."""

    exit_code = 3


class RegressionError(EdgeprofError):
    """The regression gate found a real slowdown. Exit 1."""

    exit_code = 1


class InconclusiveError(EdgeprofError):
    """The regression gate could not rule out a slowdown over its threshold for some model. Exit 4."""

    exit_code = 4
