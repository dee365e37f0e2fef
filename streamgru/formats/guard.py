"""Keep a load within bounds: a byte budget, and opening only regular files.

Every reader gets a ``Budget`` from ``sg.load``. Before it allocates
anything whose size the file decides (a tensor, a decompressed member, a
folded constant, a memo table, the nodes of an inlined function) it calls
``budget.take(nbytes, what)``; over the limit, a ``WeightsError`` names the
file, the tensor or node and the limit, and nothing was allocated. Counts
that cost work rather than memory (nesting depth, loop trips, graph nodes)
are checked with ``budget.count``.

The default limit is a small multiple of the file's size plus a fixed
allowance: a file cannot make a load allocate much more than it itself
holds. ``sg.load(path, max_bytes=...)`` raises it for a legitimately huge
model (for example an ONNX graph whose weights are produced by folding).
"""

from __future__ import annotations

import os
import stat

from ..errors import WeightsError

# bytes a load may allocate per byte of the file, and on top of that
SIZE_FACTOR = 8
ALLOWANCE = 256 << 20
# work a load may do (graph nodes visited, loop trips, pickle opcodes beyond
# the file's own length), per byte of the file and on top
WORK_FACTOR = 16
WORK_ALLOWANCE = 1 << 22


class Budget:
    """The bytes (and units of work) one load may still spend.

    Parameters
    ----------
    path : str
        The file being read (named in every error).
    file_size : int
        Its size in bytes.
    max_bytes : int, optional
        The byte limit; default ``SIZE_FACTOR * file_size + ALLOWANCE``.
    """

    def __init__(self, path: str, file_size: int, max_bytes: int | None = None) -> None:
        self.path = path
        if max_bytes is None:
            max_bytes = SIZE_FACTOR * file_size + ALLOWANCE
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise WeightsError(f"{path}: max_bytes must be a positive whole number of bytes, "
                               f"got {max_bytes!r}")
        self.limit = max_bytes
        self.used = 0
        self.work_limit = WORK_FACTOR * file_size + WORK_ALLOWANCE
        self.work = 0

    @classmethod
    def unlimited(cls, path: str = "<memory>") -> "Budget":
        """A budget that never runs out (for data already in memory, e.g. a
        live model's tensors)."""
        b = cls(path, 0, 1 << 62)
        b.work_limit = 1 << 62
        return b

    def take(self, nbytes: int, what: str) -> None:
        """Spend ``nbytes`` on ``what`` (e.g. ``"tensor 'gru.weight_ih_l0'"``)
        or raise ``WeightsError`` if that would exceed the limit."""
        nbytes = int(nbytes)
        if nbytes < 0 or self.used + nbytes > self.limit:
            raise WeightsError(
                f"{self.path}: {what} would need {nbytes:,} bytes, beyond this load's budget "
                f"of {self.limit:,} bytes ({self.used:,} already used); a file this small cannot "
                f"hold that much data. For a genuinely larger model pass "
                f"sg.load(path, max_bytes=...)"
            )
        self.used += nbytes

    def give_back(self, nbytes: int) -> None:
        """Return bytes that are no longer held (a temporary freed)."""
        self.used = max(0, self.used - int(nbytes))

    def count(self, units: int, what: str) -> None:
        """Spend ``units`` of work (nodes visited, loop trips, opcodes) on
        ``what``; raise ``WeightsError`` past the work limit."""
        units = int(units)
        if units < 0 or self.work + units > self.work_limit:
            raise WeightsError(
                f"{self.path}: {what} asks for more than {self.work_limit:,} steps of work "
                f"for a file of this size; refused rather than run for a long time"
            )
        self.work += units


def check_regular(path: str, what: str = "") -> os.stat_result:
    """``os.stat`` ``path`` and refuse anything but a regular file (a FIFO,
    device or socket would block or never end) before it is opened."""
    label = what or path
    try:
        st = os.stat(path)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise WeightsError(f"{label}: no such file") from None
        raise WeightsError(f"{label}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise WeightsError(f"{label}: is {kind}; only regular files are read")
    return st


def read_regular(path: str, budget: Budget | None = None, what: str = "") -> bytes:
    """The whole of regular file ``path`` (refusing FIFOs and devices before
    opening), charged to ``budget``."""
    st = check_regular(path, what)
    if budget is not None:
        budget.take(st.st_size, f"reading {what or 'the file'}")
    try:
        # O_NONBLOCK: if the path was swapped for a FIFO after the stat, open
        # returns at once instead of waiting for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise WeightsError(f"{what or path}: is not a regular file; only regular files are read")
            return f.read(st.st_size)
    except OSError as exc:
        raise WeightsError(f"{what or path}: cannot read ({exc.strerror or exc})") from None
