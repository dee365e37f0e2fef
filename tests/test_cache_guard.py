"""The kernels' numba cache is dropped when any kernel source changes."""

import os

from streamgru.kernels import cache


def _touch(path, text=""):
    with open(path, "w") as f:
        f.write(text)


def _setup(tmp_path):
    src = tmp_path / "kernels"
    cdir = src / "__pycache__"
    src.mkdir()
    _touch(src / "network.py", "STEP = 1\n")
    _touch(src / "gru.py", "TILE = 16\n")
    cdir.mkdir()
    return str(src), str(cdir)


def _cached(cdir):
    return sorted(n for n in os.listdir(cdir) if n.endswith((".nbi", ".nbc")))


def test_matching_sources_keep_the_cache(tmp_path):
    src, cdir = _setup(tmp_path)
    assert cache.sync(src, cdir)  # no stamp yet: cleared and stamped
    _touch(os.path.join(cdir, "network.step-99.py311.nbi"))
    _touch(os.path.join(cdir, "network.step-99.py311.1.nbc"))
    assert not cache.sync(src, cdir)
    assert _cached(cdir) == ["network.step-99.py311.1.nbc", "network.step-99.py311.nbi"]


def test_an_edit_in_another_kernel_file_drops_the_cache(tmp_path):
    src, cdir = _setup(tmp_path)
    cache.sync(src, cdir)
    for name in ("network.step-99.py311.nbi", "network.step-99.py311.1.nbc",
                 "gru.seq-10.py311.nbi", "unrelated.f-1.py311.nbi"):
        _touch(os.path.join(cdir, name))
    # network.py is untouched, so numba itself would keep its stale entry
    _touch(os.path.join(src, "gru.py"), "TILE = 32\n")
    assert cache.sync(src, cdir)
    assert _cached(cdir) == ["unrelated.f-1.py311.nbi"]
    assert not cache.sync(src, cdir)


def test_unwritable_cache_is_not_an_error(tmp_path):
    src, _ = _setup(tmp_path)
    blocker = tmp_path / "file"
    _touch(blocker)
    assert cache.sync(src, str(blocker / "sub")) is False


def test_the_package_stamp_matches_its_sources():
    folder = cache.cache_dir()
    src = os.path.dirname(os.path.abspath(cache.__file__))
    with open(os.path.join(folder, cache.STAMP)) as f:
        assert f.read().strip() == cache.source_hash(src)
