"""Progress lines through the standard `logging` module, configured once by `rnnlens` (cli.main).

Every module logs to `logging.getLogger(__name__)`; the CLI prints INFO and above to stdout (the rule logs capture
it) as `HH:MM:SS message`, warnings as `HH:MM:SS WARNING: message`. Imported as a library, rnnlens configures
nothing: the application decides where its log goes.
"""

import logging
import sys


class _Formatter(logging.Formatter):
    def format(self, record):
        line = super().format(record)
        if record.levelno >= logging.WARNING:
            time, _, message = line.partition(" ")
            line = f"{time} {record.levelname}: {message}"
        return line


def configure(level=logging.INFO):
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("rnnlens")
    logger.handlers[:] = [handler]
    logger.setLevel(level)

