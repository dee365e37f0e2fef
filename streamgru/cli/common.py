"""What every subcommand shares: the error it reports with, loading a model,
latency percentiles."""

from __future__ import annotations

import os
import sys

import numpy as np

from ..errors import WeightsError
from ..formats import load
from ..model import Model

PROG = "streamgru"


class CLIError(Exception):
    """A failure to report as one line on stderr with exit code ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def load_model(path: str, dtype: str | None = None, weights: str | None = None) -> Model:
    """Load ``path`` (then convert to ``dtype`` and quantize to the weight
    type ``weights``, if given); a bad file (WeightsError) becomes exit code 1."""
    try:
        model = load(path)
        model = model if dtype is None else model.astype(np.dtype(dtype))
        return model if weights is None else model.quantize(weights)
    except WeightsError as exc:
        raise CLIError(str(exc), 1) from None
    except OSError as exc:
        raise CLIError(f"{path}: {exc.strerror or exc}", 1) from None


def percentiles_us(ns: np.ndarray) -> tuple[float, float, float]:
    """p50, p99 and max of nanosecond timings, in microseconds."""
    p50, p99 = np.percentile(ns, [50, 99])
    return p50 / 1e3, p99 / 1e3, float(ns.max()) / 1e3


def quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so that interpreter exit
    does not print a second error while flushing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (e.g. under a test)
        pass
