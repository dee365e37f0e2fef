"""A bounded, allow-listed pickle interpreter for ``torch.save``'s ``data.pkl``.

Python's own unpickler cannot be bounded from outside: a 300-byte pickle can
make it allocate gigabytes (a memo index of 700 million), crash the
interpreter (a million-deep tuple hashed as a dict key recurses in C), or
run for minutes (dict keys crafted so their hashes collide). So ``data.pkl``
is interpreted here, one opcode at a time (decoded by the standard
``pickletools.genops``, which is iterative and reads nothing the data does
not hold), with every resource checked *before* it is spent:

- work: every opcode is counted against the load's ``Budget``;
- memory: every opcode is charged a fixed overhead (the most one object or
  stack slot costs) plus the bytes it decodes; the stack holds at most
  ``MAX_STACK`` entries; the memo is a dict, so an index costs nothing more
  than its entry, and it must be one the pickler could have written;
- nesting: every object's depth is tracked as it is built; past
  ``MAX_DEPTH`` the file is refused (hashing or printing a deeper tuple
  would recurse in C);
- hashing: dict keys and set members other than ``str``/``bytes`` (whose
  hashes are salted per process) are checked before insertion: at most
  ``MAX_KEY_NODES`` objects in one key, and at most ``MAX_SAME_HASH`` keys
  of one container sharing a hash value;
- code: globals resolve only to streamgru's own stand-ins (``ALLOWED``);
  anything else raises ``UnsafeWeightsError`` naming it, and no object's
  ``__setstate__`` or constructor from the file is ever called.

Every failure is a ``WeightsError`` naming the file, ``data.pkl`` and the
byte offset of the opcode.
"""

from __future__ import annotations

import collections
import io
import pickletools
import re
from typing import Any, Callable

from ..errors import WeightsError
from .torch_globals import STORAGE_TYPES, Bad as _Bad, Builder, describe, find_class, frozen_set

__all__ = ["unpickle"]

MAX_DEPTH = 100          # nesting of containers; state dicts nest a few levels
MAX_STACK = 1 << 17      # stack entries plus marks; pickle batches items by 1000
MAX_KEY_NODES = 256      # objects inside one dict key or set member
MAX_SAME_HASH = 8        # keys of one container with an identical hash value
MAX_LONG_BYTES = 256     # LONG4 payload; Python writes smaller ints with LONG1
OP_BYTES = 128           # memory charged per opcode: one object plus a stack slot
BATCH = 1024             # opcodes charged to the budget at a time


# protocol 0 writes a persistent id as str() of torch's tuple
_TEXT_PID = re.compile(r"\('storage', <class 'torch\.(\w+)'>, '([^'\\]*)', '([^'\\]*)', (\d+)\)")


# ----------------------------------------------------------------------------
# the interpreter


_IMMEDIATE = {  # opcodes whose decoded argument is the value pushed
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
}


class _Interpreter:
    def __init__(self, data: bytes, path: str, budget: Any,
                 persistent_load: Callable[[Any], Any]) -> None:
        self.data = data
        self.path = path
        self.budget = budget
        self.persistent_load = persistent_load
        self.stack: list = []
        self.depth: list[int] = []    # nesting depth of each stack entry
        self.marks: list[int] = []    # stack lengths at each MARK
        self.memo: dict[int, tuple[Any, int]] = {}
        self.hashes: dict[int, tuple[Any, dict]] = {}  # id(container) -> (it, hash counts)

    # -- checked building blocks ---------------------------------------------
    def push(self, value: Any, depth: int = 0) -> None:
        if len(self.stack) + len(self.marks) >= MAX_STACK:
            raise _Bad(f"more than {MAX_STACK:,} values on the pickle stack")
        if depth > MAX_DEPTH:
            raise _Bad(f"objects nested deeper than {MAX_DEPTH} levels")
        self.stack.append(value)
        self.depth.append(depth)

    def pop(self) -> tuple[Any, int]:
        if not self.stack or (self.marks and self.marks[-1] == len(self.stack)):
            raise _Bad("an opcode takes a value from an empty stack")
        return self.stack.pop(), self.depth.pop()

    def pop_mark(self) -> tuple[list, int]:
        """The values since the last MARK, and their greatest depth."""
        if not self.marks:
            raise _Bad("an opcode needs a MARK that is not there")
        at = self.marks.pop()
        items, depths = self.stack[at:], self.depth[at:]
        del self.stack[at:], self.depth[at:]
        return items, max(depths, default=0)

    def top(self, kind: type | tuple, what: str) -> int:
        """Index of the container an APPEND/SETITEM/ADDITEMS modifies."""
        at = len(self.stack) - 1
        if at < (self.marks[-1] if self.marks else 0) or not isinstance(self.stack[at], kind):
            found = type(self.stack[at]).__name__ if at >= 0 else "nothing"
            found = "nothing" if self.marks and at < self.marks[-1] else found
            raise _Bad(f"{what} applied to {found}")
        return at

    def grow(self, at: int, depth: int) -> None:
        if depth + 1 > MAX_DEPTH:
            raise _Bad(f"objects nested deeper than {MAX_DEPTH} levels")
        self.depth[at] = max(self.depth[at], depth + 1)

    def iterate(self, items: Any, what: str):
        if type(items) not in (list, tuple):
            raise _Bad(f"{what} built from {describe(items)}, not a list")
        return items

    def check_key(self, container: Any, key: Any) -> None:
        """Refuse a key that is unhashable, too large to hash cheaply, or one
        of too many sharing a hash (inserting those takes quadratic time)."""
        if type(key) in (str, bytes):
            return  # hashes salted per process: collisions cannot be chosen
        todo, nodes = [key], 0
        while todo:
            v = todo.pop()
            nodes += 1
            if nodes > MAX_KEY_NODES:
                raise _Bad(f"a dict key or set member holds more than {MAX_KEY_NODES} objects")
            if type(v) in (tuple, frozenset):
                todo.extend(v)
            elif v is not None and type(v) not in (str, bytes, int, float, bool):
                raise _Bad(f"a dict key or set member is a {type(v).__name__}, which is unhashable here")
        self.budget.count(nodes, "data.pkl (hashing a key)")
        h = hash(key)
        _, counts = self.hashes.setdefault(id(container), (container, {}))
        n = counts[h] = counts.get(h, 0) + 1
        if n > MAX_SAME_HASH:
            raise _Bad(f"more than {MAX_SAME_HASH} keys of one dict or set share a hash value "
                       f"(crafted to make loading take quadratic time)")

    def insert(self, d: dict, key: Any, value: Any) -> None:
        self.check_key(d, key)
        d[key] = value

    def add(self, s: set, value: Any) -> None:
        self.check_key(s, value)
        s.add(value)

    def memo_put(self, index: Any, pos: int) -> None:
        # a pickler numbers its memo 0, 1, 2, ...; anything far beyond is not one
        if type(index) is not int or not 0 <= index <= len(self.memo) + MAX_STACK:
            raise _Bad(f"memo index {describe(index)} is out of range")
        if not self.stack or (self.marks and self.marks[-1] == len(self.stack)):
            raise _Bad("PUT with nothing to store")
        self.memo[index] = (self.stack[-1], self.depth[-1])

    def memo_get(self, index: Any) -> None:
        found = self.memo.get(index) if type(index) is int else None
        if found is None:
            raise _Bad(f"memo index {describe(index)} was never stored")
        self.push(*found)

    def call(self, fn: Any, args: Any, depth: int) -> None:
        if not isinstance(fn, Builder):
            raise _Bad(f"calls {describe(fn)}, which is not a function")
        if type(args) is not tuple:
            raise _Bad(f"{fn.name} called with {describe(args)} instead of an argument tuple")
        try:
            result = fn.fn(self, *args)
        except TypeError:
            raise _Bad(f"{fn.name} called with {len(args)} arguments") from None
        self.push(result, depth)

    # -- the loop ---------------------------------------------------------------
    def run(self) -> Any:
        ops = pickletools.genops(io.BytesIO(self.data))
        pending = 0
        while True:
            try:
                op, arg, pos = next(ops)
            except StopIteration:
                raise _Bad("ends without a STOP opcode") from None
            except ValueError as exc:  # unknown opcode, truncated argument
                raise _Bad(str(exc)[:200]) from None
            pending += 1
            if pending == BATCH:
                self.budget.count(BATCH, "data.pkl")
                self.budget.take(BATCH * OP_BYTES, "data.pkl (objects it builds)")
                pending = 0
            self.pos = pos
            name = op.name
            if name == "STOP":
                value, _ = self.pop()
                return value
            self.step(name, arg, pos)

    def step(self, name: str, arg: Any, pos: int) -> None:
        if name in _IMMEDIATE:
            if isinstance(arg, (str, bytes)):
                # a decoded str may take four bytes per byte of the file
                self.budget.take(4 * len(arg), "data.pkl (a string)")
            self.push(arg)
        elif name == "LONG4":
            if arg.bit_length() > 8 * MAX_LONG_BYTES:
                raise _Bad(f"an integer of {arg.bit_length():,} bits")
            self.push(arg)
        elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
            self.push({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
        elif name in ("PROTO", "FRAME"):
            pass
        elif name == "MARK":
            if len(self.stack) + len(self.marks) >= MAX_STACK:
                raise _Bad(f"more than {MAX_STACK:,} values on the pickle stack")
            self.marks.append(len(self.stack))
        elif name == "POP":
            if self.marks and self.marks[-1] == len(self.stack):
                self.marks.pop()  # POP of a mark, as pickle allows
            else:
                self.pop()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            value, depth = self.pop()
            self.push(value, depth)
            self.push(value, depth)
        elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "EMPTY_TUPLE"):
            self.push({"EMPTY_LIST": [], "EMPTY_DICT": {}, "EMPTY_SET": set(),
                       "EMPTY_TUPLE": ()}[name], 1)
        elif name in ("TUPLE", "LIST", "FROZENSET", "DICT"):
            items, depth = self.pop_mark()
            if name == "TUPLE":
                self.push(tuple(items), depth + 1)
            elif name == "LIST":
                self.push(items, depth + 1)
            elif name == "FROZENSET":
                self.push(frozen_set(self, items), depth + 1)
            else:
                if len(items) % 2:
                    raise _Bad("DICT with an odd number of items")
                d: dict = {}
                for k, v in zip(items[::2], items[1::2]):
                    self.insert(d, k, v)
                self.push(d, depth + 1)
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            got = [self.pop() for _ in range(n)][::-1]
            self.push(tuple(v for v, _ in got), 1 + max(d for _, d in got))
        elif name in ("APPEND", "APPENDS"):
            if name == "APPEND":
                value, depth = self.pop()
                items = [value]
            else:
                items, depth = self.pop_mark()
            at = self.top(list, name)
            self.grow(at, depth)
            self.stack[at].extend(items)
        elif name in ("SETITEM", "SETITEMS"):
            if name == "SETITEM":
                v, dv = self.pop()
                k, dk = self.pop()
                items, depth = [k, v], max(dk, dv)
            else:
                items, depth = self.pop_mark()
                if len(items) % 2:
                    raise _Bad("SETITEMS with an odd number of items")
            at = self.top(dict, name)
            self.grow(at, depth)
            for k, v in zip(items[::2], items[1::2]):
                self.insert(self.stack[at], k, v)
        elif name == "ADDITEMS":
            items, depth = self.pop_mark()
            at = self.top(set, name)
            self.grow(at, depth)
            for v in items:
                self.add(self.stack[at], v)
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo_put(arg, pos)
        elif name == "MEMOIZE":
            self.memo_put(len(self.memo), pos)
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            self.memo_get(arg)
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            if name == "GLOBAL":
                module, _, qual = arg.partition(" ")
            else:
                (qual, _), (module, _) = self.pop(), self.pop()
                if type(module) is not str or type(qual) is not str:
                    raise _Bad("STACK_GLOBAL needs two strings")
            self.push(find_class(self.path, module, qual))
        elif name in ("REDUCE", "NEWOBJ"):
            args, depth = self.pop()
            fn, _ = self.pop()
            self.call(fn, args, depth)
        elif name in ("INST", "OBJ", "NEWOBJ_EX"):
            self.old_style_call(name, arg)
        elif name == "BUILD":
            state, _ = self.pop()
            if not self.stack:
                raise _Bad("BUILD with nothing to build")
            target = self.stack[-1]
            # torch's state dict keeps a ``_metadata`` attribute (module
            # versions) as OrderedDict state; it says nothing about the values
            if not (type(target) is collections.OrderedDict and type(state) is dict):
                raise _Bad(f"unexpected pickle state for {describe(target)}")
        elif name in ("PERSID", "BINPERSID"):
            pid = arg if name == "PERSID" else self.pop()[0]
            if name == "PERSID":
                pid = _text_pid(arg)
            self.push(self.persistent_load(pid), 1)
        else:  # EXT1/2/4, NEXT_BUFFER, READONLY_BUFFER, BYTEARRAY8
            raise _Bad(f"opcode {name} is not used by torch.save and is not read")

    def old_style_call(self, name: str, arg: Any) -> None:
        if name == "INST":
            module, _, qual = arg.partition(" ")
            args, depth = self.pop_mark()
            fn = find_class(self.path, module, qual)
        elif name == "OBJ":
            items, depth = self.pop_mark()
            if not items:
                raise _Bad("OBJ without a class")
            fn, args = items[0], items[1:]
        else:
            kwargs, _ = self.pop()
            args, depth = self.pop()
            fn, _ = self.pop()
            if kwargs:
                raise _Bad("NEWOBJ_EX with keyword arguments")
        self.call(fn, tuple(args) if type(args) is list else args, depth + 1)


def _text_pid(text: Any) -> Any:
    """Protocol 0's persistent id: str() of torch's storage tuple."""
    m = _TEXT_PID.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise _Bad(f"unexpected persistent id {describe(text)}")
    type_ = STORAGE_TYPES.get(m.group(1))
    if type_ is None:
        raise _Bad(f"storage {m.group(2)!r} has an unknown type torch.{m.group(1)}")
    return ("storage", type_, m.group(2), m.group(3), int(m.group(4)))


def unpickle(data: bytes, path: str, budget: Any, persistent_load: Callable[[Any], Any]) -> Any:
    """Interpret ``data`` (a ``data.pkl``) within ``budget``.

    ``persistent_load(pid)`` turns a persistent id (a tuple) into a storage.
    Raises ``WeightsError`` naming ``path`` for anything malformed, hostile
    or over budget; ``UnsafeWeightsError`` for a global off the allow-list.
    """
    interp = _Interpreter(data, path, budget, persistent_load)
    try:
        return interp.run()
    except _Bad as exc:
        raise WeightsError(
            f"{path}: data.pkl is corrupt or hostile at byte {getattr(interp, 'pos', 0)}: {exc}"
        ) from None
