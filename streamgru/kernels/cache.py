"""Keep numba's on-disk cache consistent with the kernel sources.

numba invalidates a cached function only when the file that defines it
changes. The entry points in network.py inline code and constants from the
other kernel files (gru.py, layout.py, ...), so an edit there (a git
checkout, a partial upgrade, a developer's change) would leave network.py's
stale machine code in use: wrong numbers or a crash. At import, a hash of
every kernel source is compared with the one stored beside the cache; on a
mismatch the kernels' cache files are removed so they compile afresh.
"""

from __future__ import annotations

import glob
import hashlib
import os

STAMP = "streamgru-kernels.sha256"


def source_hash(src_dir: str) -> str:
    """SHA-256 over the names and contents of the ``.py`` files in ``src_dir``."""
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(src_dir, "*.py"))):
        h.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(f.read())
        h.update(b"\0")
    return h.hexdigest()


def sync(src_dir: str, cache_dir: str) -> bool:
    """Remove the kernels' numba cache files in ``cache_dir`` if they were
    built from other sources than those in ``src_dir``; return True if it
    removed anything or wrote a new stamp. Never raises for I/O problems: a
    read-only install simply keeps whatever numba does there."""
    try:
        digest = source_hash(src_dir)
        stamp = os.path.join(cache_dir, STAMP)
        try:
            with open(stamp) as f:
                if f.read().strip() == digest:
                    return False
        except OSError:
            pass
        modules = {os.path.splitext(os.path.basename(p))[0]
                   for p in glob.glob(os.path.join(src_dir, "*.py"))}
        if os.path.isdir(cache_dir):
            for path in glob.glob(os.path.join(cache_dir, "*.nb[ic]")):
                if os.path.basename(path).split(".", 1)[0] in modules:
                    os.remove(path)
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{stamp}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(digest)
        os.replace(tmp, stamp)
        return True
    except OSError:
        return False


def _probe() -> None:
    """A function in this folder, to ask numba where it caches this folder."""


def cache_dir() -> str | None:
    """The folder numba caches this package's kernels in, as numba decides it
    (in-tree ``__pycache__`` if writable, else the user-wide cache, or
    ``NUMBA_CACHE_DIR``)."""
    from numba.core.caching import CacheImpl

    for cls in CacheImpl._locator_classes:
        locator = cls.from_function(_probe, _probe.__code__.co_filename)
        if locator is not None:
            return locator.get_cache_path()
    return None


def check() -> None:
    """Run ``sync`` for this package's kernels (called once at import)."""
    folder = cache_dir()
    if folder is not None:
        sync(os.path.dirname(os.path.abspath(__file__)), folder)
