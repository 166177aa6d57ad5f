"""The one error policy of rnnlens.

A `RnnlensError` is a problem with what the user gave (a config value, an input file, a missing tool): its message
names the problem and the fix, and `rnnlens <command>` prints it as one line and exits 2. Every other exception is
a bug and keeps its traceback. Stages subclass RnnlensError where a caller needs to tell the cases apart
(CorpusError, NgramError, ConfigError, TrainingDiverged, ...); those classes stay in their stage's module.
"""


class RnnlensError(Exception):
    """A user-facing problem: the message names what is wrong and how to fix it."""

    exit_code = 2


class InputError(RnnlensError, ValueError):
    """A bad argument or input file. Also a ValueError, so callers that caught ValueError before still do."""


class CorpusError(InputError):
    """Bad corpus input (a missing file, a failed download, a wrong hash, a split that does not fit)."""
