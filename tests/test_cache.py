"""The kernels' disk cache: where it lives, that it verifies itself, and that
read-only or missing folders never break a run.

Each run is a new interpreter with its own STREAMGRU_CACHE_DIR (or none),
loading one small entry point (``first_bad``), so a cold compile takes about
a second. Damage is done to the real files those runs wrote. Read-only runs
use a folder the process cannot write: as root (which ignores file modes)
the run drops the capabilities that override modes (setpriv).
"""

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from streamgru.kernels import cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "streamgru")

PROBE = r"""
import json
import numpy as np
from streamgru.kernels import network
fn = network.entry("first_bad", np.float32)
X = np.zeros((3, 4), np.float32)
X[2, 1] = np.nan
print(json.dumps({"bad": int(fn(X)), "hits": sum(fn._cache_hits.values())}))
"""


def _env(cache_dir=None, home=None):
    env = {k: v for k, v in os.environ.items()
           if k not in (cache.ENV, "NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    if cache_dir is not None:
        env[cache.ENV] = str(cache_dir)
    if home is not None:
        env["HOME"] = str(home)
    return env


def _as_unprivileged():
    """argv prefix that runs a command so that file modes apply to it. Root
    keeps its uid (so it can still read the venv and the checkout, wherever
    they are) but loses the capabilities that let it ignore modes."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def run(code=PROBE, cache_dir=None, home=None, read_only=False, args=None):
    argv = [sys.executable, "-c", code] if args is None else [sys.executable, "-m", "streamgru", *args]
    if read_only:
        argv = _as_unprivileged() + argv
    res = subprocess.run(argv, cwd=ROOT, env=_env(cache_dir, home), capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr
    return res


def probe(**kw):
    res = run(**kw)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["bad"] == 2  # the NaN's row: the kernel ran and is right
    return out, [line for line in res.stderr.splitlines() if line.strip()]


def _open_dir():
    """A new temporary folder that any user can read (tmp_path is private to root)."""
    d = tempfile.mkdtemp(prefix="sg-cache-test-")
    os.chmod(d, 0o755)
    return d


def _read_only(path):
    """Make ``path`` and everything in it read-only (for an unprivileged user)."""
    for root, dirs, files in os.walk(path):
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
        os.chmod(root, 0o555)


@pytest.fixture(scope="module")
def built():
    """A cache folder holding the compiled ``first_bad`` (float32)."""
    base = _open_dir()
    out, err = probe(cache_dir=base)
    assert out["hits"] == 0 and err == []
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def copy(built):
    """A private copy of ``built``: (base, the version folder inside it)."""
    base = _open_dir()
    shutil.rmtree(base)
    shutil.copytree(built, base)
    (folder,) = glob.glob(os.path.join(base, "*", ""))
    yield base, folder.rstrip(os.sep)
    for root, dirs, _ in os.walk(base):
        os.chmod(root, 0o755)
    shutil.rmtree(base, ignore_errors=True)


def _files(folder, pattern):
    return sorted(glob.glob(os.path.join(folder, pattern)))


def _package_cache_files():
    return {p: os.stat(p).st_mtime_ns
            for p in glob.glob(os.path.join(PACKAGE, "**", "*.nb[ic]"), recursive=True)}


def test_the_cache_lives_in_the_named_folder_never_in_the_package(copy):
    base, folder = copy
    shutil.rmtree(folder)
    before = _package_cache_files()
    out, err = probe(cache_dir=base)
    assert out["hits"] == 0 and err == []
    assert _package_cache_files() == before
    # the folder name carries version, Python, kernel sources and CPU
    assert os.path.basename(folder).startswith("0.") and "-py3" in os.path.basename(folder)
    assert _files(folder, "network.first_bad-*.nbi") and _files(folder, "network.first_bad-*.nbc")


def test_the_manifest_records_every_file_the_kernels_wrote(built):
    (folder,) = glob.glob(os.path.join(built, "*"))
    files = cache.read_manifest(folder)
    written = {os.path.basename(p) for p in _files(folder, "*.nb[ic]")}
    assert set(files) == written
    for name, digest in files.items():
        with open(os.path.join(folder, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest


def test_a_second_process_loads_instead_of_compiling(copy):
    base, _ = copy
    out, err = probe(cache_dir=base)
    assert out["hits"] == 1 and err == []


def _flip(path):
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        data[len(data) // 2] ^= 0x10
        f.seek(0)
        f.write(data)


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _empty(path):
    open(path, "wb").close()


DAMAGE = {
    "truncated object code": ("*.nbc", _truncate),
    "flipped byte in object code": ("*.nbc", _flip),
    "empty index": ("*.nbi", _empty),
    "flipped byte in index": ("*.nbi", _flip),
    "unreadable manifest": (cache.MANIFEST, _truncate),
    "file not in the manifest": (cache.MANIFEST, lambda p: open(p, "w").write('{"files": {}}')),
}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_damaged_files_are_removed_and_recompiled(copy, how):
    base, folder = copy
    pattern, damage = DAMAGE[how]
    for path in _files(folder, pattern if pattern == cache.MANIFEST else "network.first_bad-" + pattern):
        damage(path)
    out, err = probe(cache_dir=base)
    assert out["hits"] == 0, "a damaged file was loaded"
    assert len(err) == 1 and "damaged kernel cache files" in err[0], err
    # repaired: the next process loads the recompiled kernel, silently
    out, err = probe(cache_dir=base)
    assert out["hits"] == 1 and err == []


def test_a_cache_built_before_the_folder_was_made_read_only_is_used(copy):
    base, _ = copy
    _read_only(base)
    out, err = probe(cache_dir=base, read_only=True)
    assert out["hits"] == 1 and err == []


def test_read_only_cache_folder_and_home_compile_in_memory():
    home = _open_dir()
    try:
        _read_only(home)
        # no STREAMGRU_CACHE_DIR: the default is under the (read-only) home
        out, err = probe(home=home, read_only=True)
        assert out["hits"] == 0
        assert len(err) == 1 and "compile in memory" in err[0] and cache.ENV in err[0], err
        assert os.listdir(home) == []
        # a named folder that cannot be written: the same, naming it
        named = os.path.join(home, "named")
        out, err = probe(cache_dir=named, home=home, read_only=True)
        assert len(err) == 1 and named in err[0], err
        res = run(args=["cache"], home=home, read_only=True)
        assert "writable: no" in res.stdout
    finally:
        os.chmod(home, 0o755)
        shutil.rmtree(home, ignore_errors=True)


def test_cache_command_shows_the_folder_and_clears_it(copy):
    base, folder = copy
    res = run(args=["cache"], cache_dir=base)
    assert folder in res.stdout and "MB" in res.stdout
    # what versions before the own cache folder left inside the package
    legacy = os.path.join(PACKAGE, "kernels", "__pycache__", "gru.seq-1.py311.nbi")
    os.makedirs(os.path.dirname(legacy), exist_ok=True)
    open(legacy, "wb").close()
    res = run(args=["cache", "--clear"], cache_dir=base)
    assert res.stdout.startswith("removed ")
    assert not os.path.exists(folder) and os.path.isdir(base)
    assert not os.path.exists(legacy)


def test_base_folder_precedence(monkeypatch):
    from numba.core import config

    monkeypatch.setattr(config, "CACHE_DIR", "")
    monkeypatch.delenv(cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert cache.base_dir() == os.path.join("/xdg", "streamgru")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", "/home/u")
    assert cache.base_dir() == os.path.join("/home/u", ".cache", "streamgru")
    monkeypatch.setattr(config, "CACHE_DIR", "/numba")
    assert cache.base_dir() == os.path.join("/numba", "streamgru")
    monkeypatch.setenv(cache.ENV, "/mine")
    assert cache.base_dir() == "/mine"


def test_numba_keeps_caching_the_users_own_functions_where_it_did():
    """Only streamgru's kernels use streamgru's folder: numba's own
    locators (and NUMBA_CACHE_DIR) are untouched for everyone else."""
    from numba.core.caching import CacheImpl, InTreeCacheLocator, UserProvidedCacheLocator

    from streamgru.kernels import network

    assert CacheImpl._locator_classes[:2] == [UserProvidedCacheLocator, InTreeCacheLocator]
    assert network.step._cache.__class__ is cache.KernelCache


def test_the_folder_lock_is_reentrant(tmp_path):
    """A save holds the folder lock while numba re-reads the index, whose
    hash check takes the lock again when another process wrote the index in
    the meantime: a second flock from the same thread must not wait for
    the first (it did, forever), and leaving releases it for others."""
    import fcntl
    import threading

    done = threading.Event()

    def nested():
        with cache._exclusive(str(tmp_path)):
            with cache._exclusive(str(tmp_path)):
                pass
        done.set()

    threading.Thread(target=nested, daemon=True).start()
    assert done.wait(30)
    with open(tmp_path / cache._LOCK_FILE, "a") as f:  # free again for another holder
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(f, fcntl.LOCK_UN)
