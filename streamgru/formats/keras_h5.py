"""HDF5 files read in a child process, returned as plain data.

The HDF5 library is not robust against hostile files: some corrupt bytes
make it crash the process (a segmentation fault) or loop forever. So h5py
runs in a child Python process, fed the file's bytes on stdin, with a
memory limit and a deadline; the parent gets back an ``H5Tree`` of plain
dicts and numpy arrays (an ``.npz`` stream read with ``allow_pickle=False``)
and never touches h5py itself. A crash or a timeout is a ``WeightsError``.

The child follows only hard links (a soft or external link, external
storage or a virtual dataset could read other files) and reads only float
datasets of at most two dimensions, within the byte budget it is given.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np

from ..errors import WeightsError
from .guard import Budget

__all__ = ["H5Tree", "read_tree"]

# the child: stdin = the file, argv[1] = bytes it may read; stdout = one .npz
_CHILD = r'''
import io, json, sys
import numpy as np
try:
    import h5py
except ImportError:
    sys.stdout.buffer.write(b"NOH5PY"); sys.exit(0)

def text(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        return [text(x) for x in v.ravel().tolist()] if v.dtype.kind in "OSU" else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v if isinstance(v, (str, int, float, bool)) else repr(v)

def attrs(obj):
    out = {}
    for k in obj.attrs:
        try:
            out[k] = text(obj.attrs[k])
        except Exception as exc:
            out[k] = {"error": str(exc)[:200]}
    return out

limit, used = int(sys.argv[1]), 0
tree, arrays = {}, {}
try:
    f = h5py.File(io.BytesIO(sys.stdin.buffer.read()), "r")
    todo = [("", f)]
    while todo:
        if len(tree) > 100000:  # hard links can make a group its own descendant
            raise ValueError("more than 100,000 objects")
        path, group = todo.pop()
        node = tree[path] = {"kind": "group", "attrs": attrs(group), "children": []}
        for name in group:
            child = (path + "/" + name).lstrip("/")
            node["children"].append(name)
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                tree[child] = {"kind": "link", "external": isinstance(link, h5py.ExternalLink)}
                continue
            obj = group[name]
            if isinstance(obj, h5py.Group):
                todo.append((child, obj))
                continue
            info = tree[child] = {"kind": "dataset", "dtype": str(obj.dtype),
                                  "shape": list(obj.shape or ()), "attrs": attrs(obj)}
            if obj.external or obj.is_virtual:
                info["outside"] = True
            elif obj.dtype.kind == "f" and obj.dtype.itemsize in (2, 4, 8) and obj.ndim <= 3:
                used += int(obj.size) * obj.dtype.itemsize
                if used > limit:
                    raise OverflowError(used)
                try:
                    arrays[f"a{len(arrays)}"] = obj[()]
                    info["data"] = f"a{len(arrays) - 1}"
                except Exception as exc:
                    info["error"] = str(exc)[:200]
    result = {"tree": tree}
except OverflowError as exc:
    result = {"over": exc.args[0]}
except Exception as exc:
    result = {"fatal": f"{type(exc).__name__}: {str(exc)[:300]}"}
out = io.BytesIO()
meta = np.frombuffer(json.dumps(result).encode(), np.uint8)
np.savez(out, __tree__=meta, **(arrays if "tree" in result else {}))
sys.stdout.buffer.write(out.getvalue())
'''

TIMEOUT = 8.0        # seconds, plus one per MiB of file: a small model reads in well under 1 s


class H5Tree:
    """An HDF5 file as plain data: groups, attributes and float arrays by path."""

    def __init__(self, tree: dict, arrays: dict, where: str) -> None:
        self._tree, self._arrays, self.where = tree, arrays, where

    @staticmethod
    def _key(path: str) -> str:
        return "/".join(p for p in path.split("/") if p)

    def _node(self, path: str, what: str) -> dict:
        node = self._tree.get(self._key(path))
        if node is None:
            raise WeightsError(f"{what} is missing")
        if node["kind"] == "link":
            kind = "another file" if node.get("external") else "another path"
            raise WeightsError(f"{what} links to {kind}; refused")
        return node

    def has(self, path: str) -> bool:
        return self._key(path) in self._tree

    def attrs(self, path: str, what: str) -> dict:
        return self._node(path, what).get("attrs", {})

    def children(self, path: str, what: str) -> list[str]:
        node = self._node(path, what)
        if node["kind"] != "group":
            raise WeightsError(f"{what} is not a group")
        return list(node["children"])

    def array(self, path: str, what: str) -> np.ndarray:
        node = self._node(path, what)
        if node["kind"] != "dataset":
            raise WeightsError(f"{what} is not an array")
        if node.get("outside"):
            raise WeightsError(f"{what} keeps its data in another file; refused")
        if "error" in node:
            raise WeightsError(f"{what}: unreadable ({node['error']})")
        if "data" not in node:
            raise WeightsError(f"{what}: expected a float vector, matrix or conv kernel (3-D), got "
                               f"{node['dtype']} of shape {tuple(node['shape'])}")
        arr = self._arrays[node["data"]]
        return arr.astype(np.float32) if arr.dtype.itemsize == 2 else arr


def _limits(nbytes: int, seconds: float):
    """The child's own bounds, enforced by the kernel so they hold even if
    this process dies first (a killed caller must not leave a spinning
    libhdf5 behind): address space, CPU seconds, and on Linux death with
    the parent."""
    def apply() -> None:  # runs in the child before it starts
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))
            cpu = int(seconds) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        except (ImportError, ValueError, OSError):
            pass
        try:
            import ctypes
            import signal

            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass
    return apply


def read_tree(raw: bytes, where: str, budget: Budget) -> H5Tree:
    """``raw`` (an HDF5 file's bytes) as an ``H5Tree``, read by h5py in a child
    process; ``where`` names the file in errors."""
    left = max(budget.limit - budget.used, 0)
    deadline = TIMEOUT + len(raw) / (1 << 20)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(left)], input=raw, capture_output=True,
            timeout=deadline, env=env,
            preexec_fn=_limits(left + (2 << 30), deadline) if os.name == "posix" else None,
        )
    except subprocess.TimeoutExpired:
        raise WeightsError(f"{where}: the HDF5 library did not finish reading the file "
                           f"(corrupt or hostile); stopped") from None
    except OSError as exc:
        raise WeightsError(f"{where}: cannot start a process to read HDF5 ({exc})") from None
    if done.stdout == b"NOH5PY":
        raise WeightsError(f"{where}: reading Keras files needs h5py: pip install h5py "
                           f"(or pip install streamgru[keras])")
    if done.returncode != 0:
        raise WeightsError(f"{where}: the HDF5 library failed reading the file (exit status "
                           f"{done.returncode}; the file is corrupt or hostile)")
    budget.take(len(done.stdout), "the arrays read from HDF5")
    try:
        with np.load(io.BytesIO(done.stdout), allow_pickle=False) as z:
            arrays = {n: z[n] for n in z.files}
        result = json.loads(arrays.pop("__tree__").tobytes())
    except Exception as exc:
        raise WeightsError(f"{where}: the HDF5 reader returned nothing readable ({exc})") from None
    if "over" in result:
        budget.take(result["over"], "the arrays of the HDF5 file")  # raises the budget error
    if "fatal" in result:
        raise WeightsError(f"{where}: not a readable HDF5 file ({result['fatal']})")
    return H5Tree(result["tree"], arrays, where)
