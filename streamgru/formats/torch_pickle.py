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
from .torch_globals import (SCRIPT_CLASSES, STORAGE_TYPES, Bad as _Bad, Builder, ScriptObject,
                            describe, find_class, frozen_set)

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

    def memo_put(self, index: Any) -> None:
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
        table = self.table()
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
            if op.name == "STOP":
                return self.pop()[0]
            handler = table.get(op.name)
            if handler is None:  # EXT1/2/4, NEXT_BUFFER, READONLY_BUFFER, BYTEARRAY8
                raise _Bad(f"opcode {op.name} is not used by torch.save and is not read")
            handler(arg)

    def table(self) -> dict[str, Callable[[Any], None]]:
        """Opcode name -> handler taking the decoded argument."""
        t: dict[str, Callable[[Any], None]] = dict.fromkeys(_IMMEDIATE, self.immediate)
        constant = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
        for name, value in constant.items():
            t[name] = lambda arg, v=value: self.push(v, 1 if v == () else 0)
        for name, make in (("EMPTY_LIST", list), ("EMPTY_DICT", dict), ("EMPTY_SET", set)):
            t[name] = lambda arg, make=make: self.push(make(), 1)
        t.update({
            "PROTO": lambda arg: None, "FRAME": lambda arg: None,
            "LONG4": self.long4, "MARK": self.mark, "POP": self.pop_op,
            "POP_MARK": lambda arg: self.pop_mark(), "DUP": self.dup,
            "TUPLE": self.tuple_mark, "LIST": self.list_mark, "FROZENSET": self.frozenset_mark,
            "DICT": self.dict_mark, "TUPLE1": lambda arg: self.tuple_n(1),
            "TUPLE2": lambda arg: self.tuple_n(2), "TUPLE3": lambda arg: self.tuple_n(3), "APPEND": self.append, "APPENDS": self.appends,
            "SETITEM": self.setitem, "SETITEMS": self.setitems, "ADDITEMS": self.additems,
            "PUT": self.memo_put, "BINPUT": self.memo_put, "LONG_BINPUT": self.memo_put,
            "MEMOIZE": lambda arg: self.memo_put(len(self.memo)),
            "GET": self.memo_get, "BINGET": self.memo_get, "LONG_BINGET": self.memo_get,
            "GLOBAL": self.global_op, "STACK_GLOBAL": self.stack_global,
            "REDUCE": self.reduce, "NEWOBJ": self.reduce, "NEWOBJ_EX": self.newobj_ex,
            "INST": self.inst, "OBJ": self.obj, "BUILD": self.build,
            "PERSID": lambda arg: self.push(self.persistent_load(_text_pid(arg)), 1),
            "BINPERSID": lambda arg: self.push(self.persistent_load(self.pop()[0]), 1),
        })
        return t

    # -- handlers ---------------------------------------------------------------
    def immediate(self, arg: Any) -> None:
        if isinstance(arg, (str, bytes)):
            # a decoded str may take four bytes per byte of the file
            self.budget.take(4 * len(arg), "data.pkl (a string)")
        self.push(arg)

    def long4(self, arg: int) -> None:
        if arg.bit_length() > 8 * MAX_LONG_BYTES:
            raise _Bad(f"an integer of {arg.bit_length():,} bits")
        self.push(arg)

    def mark(self, arg: Any) -> None:
        if len(self.stack) + len(self.marks) >= MAX_STACK:
            raise _Bad(f"more than {MAX_STACK:,} values on the pickle stack")
        self.marks.append(len(self.stack))

    def pop_op(self, arg: Any) -> None:
        if self.marks and self.marks[-1] == len(self.stack):
            self.marks.pop()  # POP of a mark, as pickle allows
        else:
            self.pop()

    def dup(self, arg: Any) -> None:
        value, depth = self.pop()
        self.push(value, depth)
        self.push(value, depth)

    def tuple_mark(self, arg: Any) -> None:
        items, depth = self.pop_mark()
        self.push(tuple(items), depth + 1)

    def list_mark(self, arg: Any) -> None:
        items, depth = self.pop_mark()
        self.push(items, depth + 1)

    def frozenset_mark(self, arg: Any) -> None:
        items, depth = self.pop_mark()
        self.push(frozen_set(self, items), depth + 1)

    def dict_mark(self, arg: Any) -> None:
        items, depth = self.pop_mark()
        d: dict = {}
        self.insert_pairs(d, items, "DICT")
        self.push(d, depth + 1)

    def tuple_n(self, n: int) -> None:
        got = [self.pop() for _ in range(n)][::-1]
        self.push(tuple(v for v, _ in got), 1 + max(d for _, d in got))

    def append(self, arg: Any) -> None:
        value, depth = self.pop()
        at = self.top(list, "APPEND")
        self.grow(at, depth)
        self.stack[at].append(value)

    def appends(self, arg: Any) -> None:
        items, depth = self.pop_mark()
        at = self.top(list, "APPENDS")
        self.grow(at, depth)
        self.stack[at].extend(items)

    def setitem(self, arg: Any) -> None:
        v, dv = self.pop()
        k, dk = self.pop()
        at = self.top(dict, "SETITEM")
        self.grow(at, max(dk, dv))
        self.insert(self.stack[at], k, v)

    def setitems(self, arg: Any) -> None:
        items, depth = self.pop_mark()
        at = self.top(dict, "SETITEMS")
        self.grow(at, depth)
        self.insert_pairs(self.stack[at], items, "SETITEMS")

    def insert_pairs(self, d: dict, items: list, what: str) -> None:
        if len(items) % 2:
            raise _Bad(f"{what} with an odd number of items")
        for k, v in zip(items[::2], items[1::2]):
            self.insert(d, k, v)

    def additems(self, arg: Any) -> None:
        items, depth = self.pop_mark()
        at = self.top(set, "ADDITEMS")
        self.grow(at, depth)
        for v in items:
            self.add(self.stack[at], v)

    def global_op(self, arg: str) -> None:
        module, _, qual = arg.partition(" ")
        self.push(find_class(self.path, module, qual))

    def stack_global(self, arg: Any) -> None:
        (qual, _), (module, _) = self.pop(), self.pop()
        if type(module) is not str or type(qual) is not str:
            raise _Bad("STACK_GLOBAL needs two strings")
        self.push(find_class(self.path, module, qual))

    def reduce(self, arg: Any) -> None:
        args, depth = self.pop()
        fn, _ = self.pop()
        self.call(fn, args, depth)

    def newobj_ex(self, arg: Any) -> None:
        kwargs, _ = self.pop()
        args, depth = self.pop()
        fn, _ = self.pop()
        if kwargs:
            raise _Bad("NEWOBJ_EX with keyword arguments")
        self.call(fn, args, depth)

    def inst(self, arg: str) -> None:
        module, _, qual = arg.partition(" ")
        args, depth = self.pop_mark()
        self.call(find_class(self.path, module, qual), tuple(args), depth + 1)

    def obj(self, arg: Any) -> None:
        items, depth = self.pop_mark()
        if not items:
            raise _Bad("OBJ without a class")
        self.call(items[0], tuple(items[1:]), depth + 1)

    def build(self, arg: Any) -> None:
        state, depth = self.pop()
        if not self.stack or (self.marks and self.marks[-1] == len(self.stack)):
            raise _Bad("BUILD with nothing to build")
        target = self.stack[-1]
        if type(target) is ScriptObject:
            self.grow(len(self.stack) - 1, depth)
            self.script_state(target, state)
            return
        # torch's state dict keeps a ``_metadata`` attribute (module versions)
        # as OrderedDict state; it says nothing about the values
        if not (type(target) is collections.OrderedDict and type(state) is dict):
            raise _Bad(f"unexpected pickle state for {describe(target)}")

    def script_state(self, target: ScriptObject, state: Any) -> None:
        """A TorchScript object's ``(state, class name)``: kept as data for
        the classes streamgru reads; no ``__setstate__`` is looked up or run."""
        if target.cls is not None:
            raise _Bad("a torch.ScriptObject is built twice")
        if type(state) is not tuple or len(state) != 2 or type(state[1]) is not str:
            raise _Bad(f"torch.ScriptObject state {describe(state)} is not (state, class name)")
        if state[1] not in SCRIPT_CLASSES:
            raise _Bad(
                f"holds an instance of the TorchScript class {describe(state[1])}, whose state "
                f"streamgru does not read (it reads {', '.join(SCRIPT_CLASSES)})"
            )
        target.cls, target.state = state[1], state[0]


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
