"""Where streamgru's compiled kernels live on disk, and a cache that checks itself.

Location. One folder per streamgru version, Python and numba versions,
kernel sources and CPU, under
a base folder: ``$STREAMGRU_CACHE_DIR`` if set, else ``$NUMBA_CACHE_DIR/streamgru``
if numba's cache folder is set, else ``$XDG_CACHE_HOME/streamgru`` or
``~/.cache/streamgru``. Never inside the installed package: pip does not
know files written there, so an uninstall would leave them behind as an
empty ``streamgru`` folder that shadows the next install. Only streamgru's
kernels use this folder (their dispatchers carry their own ``KernelCache``);
numba caches the user's own functions wherever it always did. The source
hash in the folder's name means an edit of any kernel file (which numba
alone would not see in the files that inline it) starts a fresh folder.

Verification. ``streamgru-kernels.json`` in the folder records the SHA-256
of every file the kernels wrote, updated under a lock right after each
write. Before numba reads an index or a compiled object, its hash is
checked: a truncated, flipped or unrecorded file is removed and the kernel
recompiled (one line on stderr), so damaged machine code is never loaded.

Read-only. A folder that cannot be written is still read (a cache built
before it was made read-only is used); whatever must be compiled then stays
in memory, and one line on stderr says so and how to keep a cache.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import sys
import tempfile
import threading

from numba.core.runtime import rtsys
from numba.core.caching import (
    CompileResultCacheImpl, FunctionCache, IndexDataCacheFile, _CacheLocator,
    _SourceFileBackedLocatorMixin,
)

ENV = "STREAMGRU_CACHE_DIR"
MANIFEST = "streamgru-kernels.json"
_LOCK_FILE = ".lock"
SRC_DIR = os.path.dirname(os.path.abspath(__file__))

_lock = threading.RLock()  # guards this module's state across threads
_folder: str | None = None
_writable: bool | None = None
_said: set = set()


def source_hash(src_dir: str = SRC_DIR) -> str:
    """SHA-256 over the names and contents of the ``.py`` files in ``src_dir``."""
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(src_dir, "*.py"))):
        h.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(f.read())
        h.update(b"\0")
    return h.hexdigest()


def base_dir() -> str:
    """The folder holding every streamgru kernel cache (see the module docstring)."""
    if os.environ.get(ENV):
        return os.path.abspath(os.path.expanduser(os.environ[ENV]))
    from numba.core import config

    if config.CACHE_DIR:
        return os.path.join(os.path.abspath(os.path.expanduser(config.CACHE_DIR)), "streamgru")
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "streamgru")


def cpu_key() -> str:
    """The host CPU's name and a short hash of its features (compiled code is
    tied to both)."""
    import llvmlite.binding as ll

    features = ll.get_host_cpu_features().flatten()
    return f"{ll.get_host_cpu_name()}-{hashlib.sha256(features.encode()).hexdigest()[:8]}"


def folder() -> str:
    """This process's kernel cache folder:
    ``base_dir()/<version>-<python>-<numba>-<sources>-<cpu>``."""
    global _folder
    if _folder is None:
        import numba

        from .. import __version__

        v = sys.version_info
        # numba drops a whole index another numba version wrote: two venvs
        # sharing a home folder would keep recompiling each other's kernels
        name = (f"{__version__}-py{v[0]}{v[1]}-numba{numba.__version__}-{source_hash()[:12]}-"
                f"{cpu_key()}")
        _folder = os.path.join(base_dir(), name)
    return _folder


def say(key: str, text: str) -> None:
    """Print ``text`` on stderr once per process for each ``key``."""
    with _lock:
        if key in _said:
            return
        _said.add(key)
    print(f"streamgru: {text}", file=sys.stderr, flush=True)


def writable() -> bool:
    """Whether compiled kernels can be saved in ``folder()`` (tried once)."""
    global _writable
    with _lock:
        if _writable is None:
            try:
                os.makedirs(folder(), exist_ok=True)
                tempfile.TemporaryFile(dir=folder()).close()
                _writable = True
            except OSError:
                _writable = False
        return _writable


def can_write() -> bool:
    """Whether ``folder()`` is (or could be created) writable, without creating it."""
    path = folder()
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK)


def _in_memory(reason: str) -> None:
    say("memory", f"cannot write the kernel cache in {folder()} ({reason}): kernels compile in "
        f"memory for this process only. To keep them, set {ENV} (or NUMBA_CACHE_DIR) to a "
        f"writable folder, or run `streamgru warmup` once where this one is writable.")


def _sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_held: dict = {}  # folder -> depth of _exclusive in the thread holding _lock


@contextlib.contextmanager
def _exclusive(path: str):
    """Hold an exclusive lock on the folder ``path`` (against other processes).

    Re-entrant: a save holds it while numba re-reads the index, whose check
    may need it again (another process wrote the index meanwhile); a second
    flock on a new descriptor of the lock file would wait for the first,
    held by this very thread, forever."""
    with _lock:
        if _held.get(path):
            _held[path] += 1
            try:
                yield
            finally:
                _held[path] -= 1
            return
        try:
            import fcntl
        except ImportError:  # no fcntl (Windows): atomic renames only
            yield
            return
        with open(os.path.join(path, _LOCK_FILE), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            _held[path] = 1
            try:
                yield
            finally:
                _held[path] = 0
                fcntl.flock(f, fcntl.LOCK_UN)


def read_manifest(path: str) -> dict | None:
    """The recorded hashes ``{file name: sha256}`` in the folder ``path``: {}
    if there is no manifest yet, None if it is unreadable."""
    try:
        with open(os.path.join(path, MANIFEST), "rb") as f:
            files = json.loads(f.read())["files"]
        if isinstance(files, dict) and all(isinstance(v, str) for v in files.values()):
            return files
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _write_manifest(path: str, files: dict) -> None:
    tmp = os.path.join(path, f"{MANIFEST}.{os.getpid()}.{threading.get_ident()}")
    with open(tmp, "w") as f:
        json.dump({"files": files}, f, indent=0, sort_keys=True)
    os.replace(tmp, os.path.join(path, MANIFEST))


def _discard(path: str, names: list[str], why: str) -> None:
    """Remove the cache files ``names`` in ``path`` and forget their hashes."""
    if not writable():
        say("damaged-ro", f"ignoring damaged kernel cache files in read-only {path} ({why}); "
            "compiling instead")
        return
    with _exclusive(path):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(path, name))
        files = read_manifest(path) or {}
        for name in names:
            files.pop(name, None)
        _write_manifest(path, files)
    say("damaged", f"removed damaged kernel cache files in {path} ({why}); they are recompiled")


class _Manifests:
    """The hashes recorded in each cache folder, read once and re-read after a miss."""

    def __init__(self) -> None:
        self._files: dict[str, dict | None] = {}

    def check(self, path: str, name: str) -> str | None:
        """None if the file ``name`` in ``path`` matches its recorded hash,
        else why not (missing files raise FileNotFoundError)."""
        digest = _sha(os.path.join(path, name))
        files = self._files.get(path)
        if files is None or files.get(name) != digest:
            # another process may have written it since: read again, after
            # any write in progress (it holds the lock) has finished
            if writable():
                with _exclusive(path):
                    files = self._files[path] = read_manifest(path)
            else:
                files = self._files[path] = read_manifest(path)
        if files is None:
            return f"{MANIFEST} unreadable"
        if name not in files:
            return f"{name} was not recorded"
        if files[name] != digest:
            return f"{name} does not match its recorded hash"
        return None

    def record(self, path: str, names: list[str]) -> None:
        """Record the current hashes of ``names`` (caller holds the lock)."""
        files = read_manifest(path) or {}
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                files[name] = _sha(os.path.join(path, name))
        _write_manifest(path, files)
        self._files[path] = files


manifests = _Manifests()


class _KernelFile(IndexDataCacheFile):
    """numba's index and data files, read only after their hash checks out,
    and recorded in the manifest when written."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.written: list[str] = []

    def _function_files(self) -> list[str]:
        base = self._index_name[: -len(".nbi")]
        names = [os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(self._cache_path),
                                                                     glob.escape(base) + ".*.nbc"))]
        return [self._index_name] + names

    def _load_index(self):
        try:
            why = manifests.check(self._cache_path, self._index_name)
            if why is None:
                return super()._load_index()
        except (FileNotFoundError, NotADirectoryError):  # nothing cached there yet
            return {}
        except Exception as exc:  # numba could not parse a file whose hash we recorded
            why = f"{self._index_name}: {type(exc).__name__}"
        _discard(self._cache_path, self._function_files(), why)
        return {}

    def _load_data(self, name):
        try:
            why = manifests.check(self._cache_path, name)
            if why is None:
                return super()._load_data(name)
        except (FileNotFoundError, NotADirectoryError):
            raise
        except Exception as exc:
            why = f"{name}: {type(exc).__name__}"
        _discard(self._cache_path, self._function_files(), why)
        raise OSError(why)  # numba then compiles

    def _save_index(self, overloads):
        super()._save_index(overloads)
        self.written.append(self._index_name)

    def _save_data(self, name, data):
        super()._save_data(name, data)
        self.written.append(name)


class _Locator(_SourceFileBackedLocatorMixin, _CacheLocator):
    """Every kernel caches in ``folder()``, writable or not."""

    def __init__(self, py_func, py_file) -> None:
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno

    def get_cache_path(self) -> str:
        return folder()

    @classmethod
    def from_function(cls, py_func, py_file):
        return cls(py_func, py_file)


class _Impl(CompileResultCacheImpl):
    _locator_classes = [_Locator]


class KernelCache(FunctionCache):
    """numba's per-function cache, in ``folder()``, verified and never fatal."""

    _impl_class = _Impl

    def __init__(self, py_func) -> None:
        super().__init__(py_func)
        self._cache_file = _KernelFile(self._cache_path, self._impl.filename_base,
                                       self._impl.locator.get_source_stamp())

    def load_overload(self, sig, target_context):
        # Unlike numba's, no target_context.refresh() first: loading compiled
        # code needs only the runtime's symbols (NRT_Free, ...), not the
        # implementations a refresh registers, and a refresh imports numba's
        # numpy support, whose BLAS probe imports scipy.linalg (about half a
        # warm start). A compile still refreshes (numba's compiler does so
        # itself), as does the user's own code.
        rtsys.initialize(target_context)
        return self._load_overload(sig, target_context)

    def save_overload(self, sig, data) -> None:
        if not writable():
            _in_memory("not writable")
            return
        try:
            with _exclusive(self._cache_path):
                self._cache_file.written = []
                super().save_overload(sig, data)
                manifests.record(self._cache_path, self._cache_file.written)
        except OSError as exc:
            _in_memory(exc.strerror or type(exc).__name__)


def attach(dispatcher):
    """Give a numba dispatcher or cfunc streamgru's cache; returns it."""
    from numba.core.config import DISABLE_JIT

    if not DISABLE_JIT:
        dispatcher._cache = KernelCache(getattr(dispatcher, "py_func", None)
                                        or dispatcher._pyfunc)
    return dispatcher


def usage() -> tuple[int, int]:
    """(files, bytes) of every kernel cache under ``base_dir()``."""
    n = size = 0
    for root, _, names in os.walk(base_dir()):
        for name in names:
            with contextlib.suppress(OSError):
                size += os.stat(os.path.join(root, name)).st_size
                n += 1
    return n, size


def clear() -> int:
    """Remove every streamgru kernel cache under ``base_dir()`` (all versions)
    and any numba cache files that versions before this one wrote inside
    the package (``kernels/__pycache__``); returns the number of files
    removed. Under ``base_dir()`` only folders holding a manifest are
    touched, so a mistyped base folder loses nothing else."""
    import shutil

    removed = 0
    base = base_dir()
    if os.path.isdir(base):
        for entry in os.scandir(base):
            if entry.is_dir(follow_symlinks=False) and os.path.exists(os.path.join(entry.path, MANIFEST)):
                removed += sum(len(f) for _, _, f in os.walk(entry.path))
                shutil.rmtree(entry.path)
    for path in glob.glob(os.path.join(SRC_DIR, "__pycache__", "*.nb[ic]")):
        with contextlib.suppress(OSError):
            os.remove(path)
            removed += 1
    return removed
