"""The restricted pickle reader of PyTorch state dicts: no code from the file runs.

A pickle is first walked opcode by opcode with :func:`pickletools.genops` (which executes nothing) and
refused if it uses an opcode or a global outside a short allow-list, is larger than :data:`MAX_PICKLE_BYTES`
or :data:`MAX_PICKLE_OPS`, or names a memo slot it has not reached (:func:`pickle_bytes`); then it is loaded by
an unpickler that can make only ordered dicts, :class:`Tensor` and :class:`Storage` descriptors, each field
type-checked, and that no BUILD opcode can change afterwards (:func:`unpickle`).
"""
from __future__ import annotations

import collections
import io
import pickle
import pickletools
import re

import numpy as np

from ..errors import first_line

#: the most bytes and opcodes one pickle may have (EfficientNet-Lite0's state pickle: 42 kB, 10,700 opcodes)
MAX_PICKLE_BYTES, MAX_PICKLE_OPS = 1 << 20, 100_000
#: the most dimensions of a tensor
MAX_DIMS = 32
#: storage type -> little-endian NumPy dtype (torch writes little-endian data on every machine it runs on)
DTYPES = {"FloatStorage": "<f4", "HalfStorage": "<f2", "DoubleStorage": "<f8", "LongStorage": "<i8",
          "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?"}

_OPCODES = frozenset(
    "PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 FLOAT "
    "BINFLOAT STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8 EMPTY_TUPLE TUPLE "
    "TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS EMPTY_DICT DICT SETITEM SETITEMS GET BINGET LONG_BINGET "
    "PUT BINPUT LONG_BINPUT MEMOIZE GLOBAL STACK_GLOBAL REDUCE BUILD PERSID BINPERSID".split())
_MEMO_OPCODES = frozenset("GET BINGET LONG_BINGET PUT BINPUT LONG_BINPUT".split())
#: the most values a pickle's tuples may hold, a shared tuple counted each time it occurs: hashing a tuple (a dict
#: key) or printing one visits them all, and 60 tuples each holding the one before twice are 2**60 from 130 bytes
MAX_TUPLE_VALUES = MAX_PICKLE_OPS
_PUSH_ONE = frozenset("NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 FLOAT BINFLOAT STRING BINSTRING "
                      "SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8 EMPTY_TUPLE EMPTY_LIST "
                      "EMPTY_DICT GLOBAL PERSID".split())
#: opcode -> (values it pops, values it pushes) for those that neither take a mark nor touch the memo (APPEND,
#: SETITEM and BUILD pop the list, dict or object they change, and push it back)
_POP_PUSH = {"POP": (1, 0), "APPEND": (2, 1), "BUILD": (2, 1), "SETITEM": (3, 1), "BINPERSID": (1, 1),
             "STACK_GLOBAL": (2, 1), "REDUCE": (2, 1)}
#: the globals a state dict's pickle may name (any other is refused)
STATE_GLOBALS = frozenset({("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict")} | {
    ("torch", name) for name in DTYPES})
_KEY = re.compile(r"[0-9A-Za-z_]{1,64}")


class _Frozen:
    """What the pickle makes and may not change afterwards: a BUILD opcode on it is refused."""

    __slots__ = ()

    def __init__(self, *values):
        for name, value in zip(self.__slots__, values):
            object.__setattr__(self, name, value)

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"refused to set the state of a {type(self).__name__}")


class StorageType(_Frozen):
    """``torch.FloatStorage`` and its kin, as a storage's persistent id names them."""

    __slots__ = ("name",)


class Storage(_Frozen):
    """Storage ``key``: ``count`` elements of ``dtype``, read into ``values`` (1-D) once the pickle is checked."""

    __slots__ = ("key", "dtype", "count", "values")

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize


class Tensor(_Frozen):
    """A view of a storage: element ``index`` is ``storage.values[offset + sum(index_i * stride_i)]``."""

    __slots__ = ("storage", "offset", "size", "stride")


def _count(value) -> bool:
    return type(value) is int and value >= 0


class _Rebuild(_Frozen):
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`` as
    the pickle calls it: a :class:`Tensor` of checked plain fields, nothing else."""

    __slots__ = ()

    def __call__(self, *args) -> Tensor:
        if len(args) not in (6, 7):
            raise pickle.UnpicklingError(f"a tensor with {len(args)} fields, not 6 or 7")
        storage, offset, size, stride, requires_grad, hooks, metadata = (*args, None)[:7]
        if not (isinstance(storage, Storage) and _count(offset) and type(size) is tuple is type(stride)
                and len(size) == len(stride) <= MAX_DIMS and all(map(_count, size + stride))):
            raise pickle.UnpicklingError("a tensor with a bad storage, offset, size or stride "
                                         "(each a non-negative integer, as many strides as sizes)")
        if type(requires_grad) is not bool or type(hooks) not in (dict, collections.OrderedDict) or hooks \
                or not (metadata is None or type(metadata) is dict and not metadata):
            raise pickle.UnpicklingError("a tensor with gradient hooks or metadata (only plain tensors are read)")
        return Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    """Loads plain values only, or (with ``storages``) also what a state dict is made of."""

    def __init__(self, data: bytes, storages: dict[str, Storage] | None = None):
        super().__init__(io.BytesIO(data))
        self._storages = storages

    def find_class(self, module, name):
        if self._storages is not None and (module, name) in STATE_GLOBALS:
            if module == "collections":
                return collections.OrderedDict
            return _Rebuild() if module == "torch._utils" else StorageType(name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")

    def persistent_load(self, pid):
        """``('storage', type, key, location, count[, None])`` -> the one :class:`Storage` of that key."""
        if self._storages is None or type(pid) is not tuple or len(pid) not in (5, 6) or pid[0] != "storage" \
                or pid[5:] not in ((), (None,)):
            raise pickle.UnpicklingError("a persistent id that is not a storage of the state dict")
        _, kind, key, location, count = pid[:5]
        if not (isinstance(kind, StorageType) and type(key) is str and _KEY.fullmatch(key)
                and type(location) is str and _count(count)):
            raise pickle.UnpicklingError("a storage with a bad type, key, location or element count")
        storage = self._storages.setdefault(key, Storage(key, np.dtype(DTYPES[kind.name]), count, None))
        if storage.dtype != np.dtype(DTYPES[kind.name]) or storage.count != count:
            raise pickle.UnpicklingError(f"storage {key} is named with two types or sizes")
        return storage


class _TupleSizes:
    """The pickle's stack walked without building anything, each value standing for how many values it holds
    through shared references (a tuple: itself and its items'; anything else 1: lists and dicts are never hashed
    and may still grow after being shared). Refuses a tuple of more than :data:`MAX_TUPLE_VALUES` and a stack
    the opcodes do not fit. Marks are kept apart, as the unpickler keeps them: each opcode costs O(its values)."""

    def __init__(self):
        self.stack: list[int] = []  # sizes
        self.marks: list[int] = []  # the stack's length at each open mark
        self.memo: dict = {}

    def _pop(self, count: int) -> list:
        if count > len(self.stack) - (self.marks[-1] if self.marks else 0):
            raise pickle.UnpicklingError("a malformed pickle (its opcodes do not fit its stack)")
        items = self.stack[len(self.stack) - count:]
        del self.stack[len(self.stack) - count:]
        return items

    def _to_mark(self) -> list:
        if not self.marks:
            raise pickle.UnpicklingError("a malformed pickle (no mark)")
        mark = self.marks.pop()
        items = self.stack[mark:]
        del self.stack[mark:]
        return items

    def _tuple(self, items: list) -> None:
        size = 1 + sum(items)
        if size > MAX_TUPLE_VALUES:
            raise pickle.UnpicklingError(f"a pickle tuple of more than {MAX_TUPLE_VALUES} values through shared parts")
        self.stack.append(size)

    def step(self, name: str, arg) -> None:
        if name in _PUSH_ONE:
            self.stack.append(1)
        elif name == "MARK":
            self.marks.append(len(self.stack))
        elif name in ("TUPLE", "LIST", "DICT", "APPENDS", "SETITEMS", "POP_MARK"):
            items = self._to_mark()
            if name == "TUPLE":
                self._tuple(items)
            elif name in ("LIST", "DICT"):
                self.stack.append(1)
            elif name != "POP_MARK":  # APPENDS, SETITEMS: the list or dict they change is below the mark
                self.stack.append(self._pop(1)[0])
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            self._tuple(self._pop(int(name[-1])))
        elif name in _POP_PUSH:
            pops, pushes = _POP_PUSH[name]
            target = self._pop(pops)[0]
            if pushes:
                self.stack.append(target if name in ("APPEND", "BUILD", "SETITEM") else 1)
        elif name == "DUP" or name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            (top,) = self._pop(1)
            self.stack.extend([top, top] if name == "DUP" else [top])
            if name != "DUP":
                self.memo[len(self.memo) if name == "MEMOIZE" else arg] = top
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                raise pickle.UnpicklingError(f"a pickle memo index {arg} never stored")
            self.stack.append(self.memo[arg])


def pickle_bytes(window: bytes, allowed=frozenset()) -> bytes:
    """The pickle at the start of ``window``, up to its STOP, once each opcode is checked (nothing is run);
    ``allowed``: the (module, name) globals it may name.

    Raises:
        pickle.UnpicklingError: a refused opcode or global, too large, or not a pickle.
    """
    stream, sizes = io.BytesIO(window[:MAX_PICKLE_BYTES]), _TupleSizes()
    try:
        for number, (opcode, arg, _) in enumerate(pickletools.genops(stream)):
            if number >= MAX_PICKLE_OPS:
                raise pickle.UnpicklingError(f"a pickle of more than {MAX_PICKLE_OPS} opcodes")
            if opcode.name not in _OPCODES:
                raise pickle.UnpicklingError(f"refused the pickle opcode {opcode.name}")
            if opcode.name in _MEMO_OPCODES and not 0 <= arg <= number:
                raise pickle.UnpicklingError(f"a pickle memo index {arg} past its opcodes")
            if opcode.name == "GLOBAL" and tuple(arg.split(" ", 1)) not in allowed:
                raise pickle.UnpicklingError("refused to load " + arg.replace(" ", "."))
            sizes.step(opcode.name, arg)
    except ValueError as exc:  # genops: unknown opcode, bad argument, no STOP
        raise pickle.UnpicklingError(first_line(exc)) from None
    return window[:stream.tell()]


def unpickle(data: bytes, storages: dict[str, Storage] | None = None):
    """The value of the pickle ``data`` (checked by :func:`pickle_bytes`): plain values only, or with
    ``storages`` also ordered dicts and :class:`Tensor` s, whose storages are added to ``storages`` by key.

    Raises:
        pickle.UnpicklingError: anything else, or a field of the wrong type.
    """
    try:
        return _Unpickler(data, storages).load()
    except pickle.UnpicklingError:
        raise
    except Exception as exc:  # the allowed callables called with wrong arguments, BUILD on a str...
        raise pickle.UnpicklingError(first_line(exc)) from None
