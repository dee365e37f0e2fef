"""Reading and writing weight files; each format in its own module.

Readers convert a file's conventions into canonical layers (``layers``) and
know nothing of the kernels. ``load`` picks a reader from ``READERS`` by
suffix, and by the file's first bytes where a suffix is ambiguous or wrong;
every reader is called as ``module.load(path, budget=budget, **options)``
and may allocate only what its ``guard.Budget`` allows.

Adding a format: one module here with ``load(path, *, budget, ...)``,
``OPTIONS`` (its keyword names) and ``sniff(head) -> bool`` (does a file
starting with ``head`` look like this format), and one ``Reader`` row below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import WeightsError
from ..model import Model
from .guard import Budget, check_regular

HEAD_BYTES = 4096


@dataclass(frozen=True)
class Reader:
    name: str                   # shown in messages
    module: str                 # streamgru.formats.<module>
    suffixes: tuple[str, ...]   # lower-case, with the dot


READERS: tuple[Reader, ...] = (
    Reader("streamgru native", "native", (".npz", ".safetensors")),
    Reader("PyTorch state dict", "torch", (".pt", ".pth", ".ckpt", ".bin")),
    Reader("ONNX graph", "onnx", (".onnx",)),
    Reader("Keras", "keras", (".keras", ".h5", ".hdf5")),
    Reader("RTNeural / AIDA-X / GuitarML JSON", "rtneural", (".json", ".aidax")),
    Reader("Neural Amp Modeler", "nam", (".nam",)),
)


def _module(reader: Reader):
    return __import__(f"{__name__}.{reader.module}", fromlist=["load"])


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _supported() -> str:
    return ", ".join(s for r in READERS for s in r.suffixes)


def _candidates(path: str, head: bytes) -> list[Reader]:
    """Readers to try, best first: those for the suffix whose ``sniff``
    accepts the head, then any other reader whose ``sniff`` accepts it (a
    file with a misleading suffix), then the suffix's readers regardless
    (their own errors are the most useful)."""
    by_suffix = [r for r in READERS if _suffix(path) in r.suffixes]
    sniffed = []
    for r in READERS:
        sniff = getattr(_module(r), "sniff", None)
        if sniff is not None and sniff(head):
            sniffed.append(r)
    first = [r for r in by_suffix if r in sniffed]
    rest = [r for r in sniffed if r not in first]
    last = [r for r in by_suffix if r not in first]
    return first + rest + last


def _check_options(reader: Reader, module: Any, options: dict) -> None:
    allowed = tuple(getattr(module, "OPTIONS", ()))
    unknown = sorted(set(options) - set(allowed) - {"max_bytes"})
    if unknown:
        raise TypeError(
            f"sg.load() got unexpected keyword argument(s) {', '.join(map(repr, unknown))} for a "
            f"{reader.name} file; it takes: {', '.join(allowed + ('max_bytes',))}"
        )


def _named(exc: WeightsError, path: str) -> WeightsError:
    """``exc`` with the file's name in front if its message lacks it."""
    msg = str(exc)
    if path not in msg and os.path.basename(path) not in msg:
        exc.args = (f"{path}: {msg}",) + exc.args[1:]
    return exc


class UnexpectedReaderError(WeightsError):
    """A reader raised something other than ``WeightsError``: a bug in the
    reader, reported as a ``WeightsError`` naming the file with the original
    exception chained. The fuzz tests fail if this is ever raised."""


def load(path: str | os.PathLike, **options: Any) -> Model:
    """Load a model from a weight file.

    The reader is chosen by suffix and, where that is ambiguous or does not
    match the content, by the file's first bytes.

    Parameters
    ----------
    path : str or path-like
        ``.onnx`` (ONNX graph); ``.pt``/``.pth``/``.ckpt``/``.bin`` (a
        ``torch.save``\\ d state dict, checkpoint or Lightning checkpoint,
        read without torch and without running code); ``.safetensors`` or
        ``.npz`` (streamgru's native format; a safetensors file without a
        streamgru description is read as a PyTorch state dict); ``.json``
        (RTNeural's Keras export, AIDA-X's ``.aidax`` with ``in_skip`` and
        gains, or a GuitarML ``SimpleRNN``, told apart by their keys);
        ``.nam`` (a Neural Amp Modeler LSTM, starting from its h0 / c0).
    dtype : float32 (default) or float64, optional
        The float type the model computes in (every format).
    max_bytes : int, optional
        The most a load may allocate (default: 8 times the file's size plus
        256 MiB); a file that would need more is refused before allocating.
    **options
        Format-specific keywords; an unknown one raises ``TypeError`` listing
        what the file's reader takes. PyTorch state dicts: ``order``,
        ``activations``, ``rnn_nonlinearity``
        (``streamgru.formats.state_dict.model_from_state_dict``). ONNX:
        ``input``, ``output`` (``streamgru.formats.onnx.load``).

    Returns
    -------
    Model

    Raises
    ------
    WeightsError
        The file is missing, not a regular file, unreadable, corrupt, over
        its budget or unsupported; the message names the file (and the
        tensor or layer) and, for an unrecognised file, the readers tried.
    UnsafeWeightsError
        A pickle asked for code outside the allow-list (nothing was run).

    Examples
    --------
    >>> import streamgru as sg
    >>> from streamgru.data import WATCH_GRU
    >>> sg.load(WATCH_GRU)
    Model([GRU(6->48), Dense(48->7)], dtype=float32)
    """
    path = os.fspath(path)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    st = check_regular(path)
    budget = Budget(path, st.st_size, options.pop("max_bytes", None))
    try:
        # O_NONBLOCK: a FIFO swapped in after the stat must not block the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    candidates = _candidates(path, head)
    if not candidates:
        raise WeightsError(
            f"{path}: unknown file type {_suffix(path) or '(no suffix)'!r} and its content "
            f"matches no reader; supported: {_supported()}"
        )
    errors = []
    for reader in candidates:
        module = _module(reader)
        _check_options(reader, module, options)
        try:
            return module.load(path, budget=budget, **options)
        except WeightsError as exc:
            errors.append((reader, _named(exc, path)))
        except Exception as exc:  # a reader bug: still a WeightsError for the caller
            err = UnexpectedReaderError(
                f"{path}: the {reader.name} reader failed unexpectedly "
                f"({type(exc).__name__}: {str(exc)[:300]}); please report this file"
            )
            raise err from exc
        budget.used = budget.work = 0  # the next reader starts from the full budget
    if len(errors) == 1:
        raise errors[0][1]
    # several readers tried: the suffix's own reader's error first, then the others
    first = errors[0][1]
    tried = "; ".join(f"as {r.name}: {str(e).removeprefix(path + ': ')}" for r, e in errors[1:])
    first.args = (f"{first} (also tried {tried})",)
    raise first


def save(model: Model, path: str | os.PathLike) -> None:
    """Save ``model`` in the native format, ``.npz`` or ``.safetensors`` by suffix.

    The file loads back bit-exact (same layers, flags, dtype and initial
    state; for a graph model the same topology, with a layer called on
    several nodes stored once and loaded back as one layer). It is written to a temporary file first and renamed into place,
    so a failed save leaves any existing file untouched.

    Parameters
    ----------
    model : Model
    path : str or path-like
        Ending in ``.npz`` or ``.safetensors``.

    Examples
    --------
    >>> import os, tempfile, numpy as np, streamgru as sg
    >>> from streamgru.data import WATCH_GRU
    >>> m = sg.load(WATCH_GRU)
    >>> p = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> sg.save(m, p)
    >>> sg.load(p) == m
    True
    >>> x = sg.Input(1)                                   # a graph model
    >>> h = sg.Conv1d(np.ones((4, 1, 3)), dilation=2)(x)
    >>> g = sg.Model(sg.Dense(np.ones((1, 4)))(h + h.act("tanh")))
    >>> sg.save(g, p)
    >>> sg.load(p).graph == g.graph == ((0,), (1,), (1, 2), (3,))
    True
    """
    from . import native

    native.save(model, os.fspath(path))


def from_torch(module: Any, **options: Any) -> Model:
    """Build a Model from a live ``torch.nn.Module`` (torch is imported lazily).

    Parameters
    ----------
    module : torch.nn.Module
        A recurrent module or cell, ``nn.Linear``, an activation, an
        ``nn.Sequential`` of these, or a custom module whose ``forward``
        chains them (traced with ``torch.fx``); see
        ``streamgru.formats.torch_module`` for the full list. Causal
        ``nn.Conv1d`` (left-padded, or padded and chomped), ``BatchNorm1d``,
        ``LayerNorm``, ``PReLU`` and the transposes between channels-first
        and batch-first layers: see ``streamgru.formats.torch_conv``. A
        ``forward`` that is no chain (residual TCN blocks, sums, products
        and gates of branches) becomes a graph model: see
        ``streamgru.formats.torch_graph``.
    dtype : float32 (default) or float64, optional

    Raises
    ------
    WeightsError
        An unsupported module or operation (named, with where it is).
    TypeError
        An unknown keyword.

    Examples
    --------
    A residual block (a causal conv: padded, then its end chomped) loads as
    a graph and streams like its forward:

    >>> import numpy as np, torch, streamgru as sg
    >>> class Block(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv = torch.nn.Conv1d(2, 2, 3, padding=2)
    ...     def forward(self, x):
    ...         return torch.relu(self.conv(x)[:, :, :-2] + x)
    >>> block = Block().eval()
    >>> m = sg.from_torch(block)
    >>> (m.graph is not None, m.latency)
    (True, 0)
    >>> X = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    >>> want = block(torch.from_numpy(X.T[None].copy()))[0].T.detach().numpy()
    >>> bool(np.abs(m.stream().process(X) - want).max() < 1e-5)
    True
    """
    from .torch_module import OPTIONS, from_module

    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(
            f"sg.from_torch() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(OPTIONS)}"
        )
    return from_module(module, **options)


def from_keras(model: Any, **options: Any) -> Model:
    """Build a Model from a live Keras ``Sequential`` or functional model.

    Reads ``model.get_config()`` as data and the weights with
    ``get_weights()``; the layers and activations are those ``sg.load``
    reads from ``.keras`` files (``streamgru.formats.keras_layers``).

    Parameters
    ----------
    model : keras.Model
    dtype : float32 or float64, optional
        Default: float64 if the model's weights are float64, else float32.

    Raises
    ------
    WeightsError
        A subclassed model, or a layer or activation that cannot stream (named).
    TypeError
        An unknown keyword.
    """
    from .keras import from_keras as convert

    unknown = sorted(set(options) - {"dtype"})
    if unknown:
        raise TypeError(
            f"sg.from_keras() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it takes: dtype"
        )
    return convert(model, **options)
