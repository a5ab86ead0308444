"""
Wire format: versioned, schema-checked msgpack messages.

Every message that crosses the network is a frozen dataclass declared with ``@message``:

    @message(protocol="kad", tag=1)
    @dataclass(frozen=True)
    class Ping:
        nonce: int

and is encoded as the msgpack array ``[WIRE_VERSION, protocol, tag, [field values...]]``.
Fields are encoded positionally, in declaration order. Decoding checks, before building
the dataclass, the version, that the (protocol, tag) is registered, the field count, and
every field's type and size against its annotation; anything else raises ``DecodeError``.
Supported field types: ``int``, ``bool``, ``bytes``, ``str``, ``float``, ``None``
unions (``X | None``), ``tuple[X, ...]`` and nested message dataclasses. msgpack integers
stop at 64 bits, so a field ``Annotated[int, Uint(256)]`` (a token amount, a nonce) travels
as 32 big-endian bytes and is an ``int`` again after decoding.

Limits: ``MAX_MESSAGE`` bytes per encoded message (the transport enforces its own frame
limit first), and per-field limits given with ``typing.Annotated[bytes, MaxLen(n)]``.
Unknown (protocol, tag) pairs from a newer peer are a ``DecodeError`` the caller answers
with an error reply, never a crash.

msgpack is decoded with ``strict_map_key`` and without ``ext`` hooks or object pairs, so
no peer-supplied data ever reaches a constructor other than our dataclasses (never pickle).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, Final, TypeVar, get_args, get_origin, get_type_hints

import msgpack

from node.errors import DecodeError, LocalError

WIRE_VERSION: Final = 1
MAX_MESSAGE: Final = 4 * 1024 * 1024
"""Hard ceiling for one encoded message (a swarm chunk message is 256 KiB plus a header)."""
DEFAULT_MAX_BYTES: Final = 4 * 1024 * 1024
DEFAULT_MAX_STR: Final = 4096
DEFAULT_MAX_ITEMS: Final = 4096


@dataclasses.dataclass(frozen=True)
class MaxLen:
    """Annotation: largest allowed length of a bytes/str field or item count of a tuple."""

    n: int


@dataclasses.dataclass(frozen=True)
class ExactLen:
    """Annotation: exact length of a bytes field (a hash, a key, a signature)."""

    n: int


@dataclasses.dataclass(frozen=True)
class Uint:
    """Annotation: an unsigned integer of ``bits`` bits (a multiple of 8), sent as bytes."""

    bits: int


T = TypeVar("T")
_Decoder = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class _Schema:
    cls: type
    protocol: str
    tag: int
    fields: tuple[tuple[str, _Decoder], ...]
    uint_bits: tuple[int | None, ...] = ()
    """Per field: the width of a ``Uint`` field (encoded as bytes), else None."""


_REGISTRY: dict[tuple[str, int], _Schema] = {}
_BY_CLASS: dict[type, _Schema] = {}


def message(protocol: str, tag: int) -> Callable[[type[T]], type[T]]:
    """Register a frozen dataclass as a wire message of ``protocol`` with ``tag``."""

    def register(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls):
            raise LocalError(f"{cls.__name__} must be a dataclass")
        key = (protocol, tag)
        if key in _REGISTRY and _REGISTRY[key].cls is not cls:
            raise LocalError(f"wire tag {key} is taken by {_REGISTRY[key].cls.__name__}")
        hints = get_type_hints(cls, include_extras=True)
        fields = tuple(
            (f.name, _decoder_for(hints[f.name], f"{cls.__name__}.{f.name}"))
            for f in dataclasses.fields(cls)
        )
        uints = tuple(
            _uint_bits(hints[f.name], f"{cls.__name__}.{f.name}") for f in dataclasses.fields(cls)
        )
        schema = _Schema(cls, protocol, tag, fields, uints)
        _REGISTRY[key] = schema
        _BY_CLASS[cls] = schema
        return cls

    return register


def encode(msg: object) -> bytes:
    """Encode a registered message (``[version, protocol, tag, [fields]]``)."""
    schema = _BY_CLASS.get(type(msg))
    if schema is None:
        raise LocalError(f"{type(msg).__name__} is not a registered wire message")
    data: bytes = msgpack.packb(
        [WIRE_VERSION, schema.protocol, schema.tag, _to_plain(msg)], use_bin_type=True
    )
    if len(data) > MAX_MESSAGE:
        raise LocalError(f"{type(msg).__name__} encodes to {len(data)} bytes > {MAX_MESSAGE}")
    return data


def decode(data: bytes, protocol: str | None = None) -> Any:
    """
    Decode one message, checking it against its schema.

    Parameters
    ----------
    data :
        The encoded message.
    protocol :
        If given, only messages of this protocol are accepted.

    Raises
    ------
    DecodeError
        For anything that is not a well-formed, registered message.
    """
    if len(data) > MAX_MESSAGE:
        raise DecodeError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    try:
        raw = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=MAX_MESSAGE,
            max_str_len=MAX_MESSAGE,
            max_array_len=DEFAULT_MAX_ITEMS * 16,
            max_map_len=DEFAULT_MAX_ITEMS,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises a zoo of types on bad input
        raise DecodeError(f"not msgpack: {exc.__class__.__name__}") from None
    if not isinstance(raw, list) or len(raw) != 4:
        raise DecodeError("a message is [version, protocol, tag, fields]")
    version, proto, tag, fields = raw
    if version != WIRE_VERSION or isinstance(version, bool):  # msgpack `true` == 1
        raise DecodeError(f"unsupported wire version {version!r}")
    if not isinstance(proto, str) or not isinstance(tag, int) or isinstance(tag, bool):
        raise DecodeError("bad protocol or tag")
    if protocol is not None and proto != protocol:
        raise DecodeError(f"expected a {protocol!r} message, got {proto!r}")
    schema = _REGISTRY.get((proto, tag))
    if schema is None:
        raise DecodeError(f"unknown message {proto}/{tag}")
    return _build(schema, fields)


def _build(schema: _Schema, fields: Any) -> Any:
    if not isinstance(fields, list) or len(fields) != len(schema.fields):
        raise DecodeError(f"{schema.cls.__name__}: expected {len(schema.fields)} fields")
    values = {name: dec(v) for (name, dec), v in zip(schema.fields, fields, strict=True)}
    try:
        return schema.cls(**values)
    except (TypeError, ValueError) as exc:  # __post_init__ validation
        raise DecodeError(f"{schema.cls.__name__}: {exc}") from None


def _to_plain(value: Any) -> Any:
    schema = _BY_CLASS.get(type(value))
    if schema is not None:
        return [
            _to_plain(getattr(value, name)) if bits is None else _uint_bytes(value, name, bits)
            for (name, _), bits in zip(schema.fields, schema.uint_bits, strict=True)
        ]
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    return value


def _uint_bits(annotation: Any, where: str) -> int | None:
    """The width of a ``Annotated[int (| None), Uint(bits)]`` field, else None."""
    if get_origin(annotation) is not typing.Annotated:
        return None
    inner, *extras = get_args(annotation)
    widths = [e.bits for e in extras if isinstance(e, Uint)]
    if not widths:
        return None
    options = [a for a in get_args(inner) if a is not type(None)] or [inner]
    if options != [int] or widths[0] <= 0 or widths[0] % 8:
        raise LocalError(f"{where}: Uint annotates an int field with a whole number of bytes")
    return widths[0]


def _uint_bytes(message: Any, name: str, bits: int) -> bytes | None:
    value = getattr(message, name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << bits:
        raise LocalError(f"{type(message).__name__}.{name}: {value!r} is not a uint{bits}")
    return int(value).to_bytes(bits // 8, "big")


def _decoder_for(annotation: Any, where: str) -> _Decoder:
    """Build a checking decoder from a field's type annotation."""
    limits = {}
    uint = _uint_bits(annotation, where)
    if uint is not None:
        size = uint // 8

        def dec_uint(v: Any) -> int | None:
            if v is None and get_origin(get_args(annotation)[0]) is not None:
                return None  # ``int | None``
            if not isinstance(v, bytes) or len(v) != size:
                raise DecodeError(f"{where}: expected {size} bytes of uint{uint}")
            return int.from_bytes(v, "big")

        return dec_uint
    if get_origin(annotation) is typing.Annotated:
        annotation, *extras = get_args(annotation)
        for extra in extras:
            if isinstance(extra, MaxLen | ExactLen):
                limits[type(extra)] = extra.n
    origin = get_origin(annotation)

    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) != 1:
            raise LocalError(f"{where}: only `X | None` unions are supported")
        inner = _decoder_for(options[0], where)
        return lambda v: None if v is None else inner(v)
    if origin is tuple:
        args = get_args(annotation)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise LocalError(f"{where}: only tuple[X, ...] is supported")
        item = _decoder_for(args[0], where)
        max_items = limits.get(MaxLen, DEFAULT_MAX_ITEMS)

        def dec_tuple(v: Any) -> tuple[Any, ...]:
            if not isinstance(v, list) or len(v) > max_items:
                raise DecodeError(f"{where}: expected at most {max_items} items")
            return tuple(item(x) for x in v)

        return dec_tuple
    if annotation is bytes:
        exact = limits.get(ExactLen)
        max_len = limits.get(MaxLen, DEFAULT_MAX_BYTES)

        def dec_bytes(v: Any) -> bytes:
            if not isinstance(v, bytes):
                raise DecodeError(f"{where}: expected bytes")
            if (exact is not None and len(v) != exact) or len(v) > max_len:
                raise DecodeError(f"{where}: bad length {len(v)}")
            return v

        return dec_bytes
    if annotation is str:
        max_len = limits.get(MaxLen, DEFAULT_MAX_STR)

        def dec_str(v: Any) -> str:
            if not isinstance(v, str) or len(v) > max_len:
                raise DecodeError(f"{where}: expected a string of at most {max_len}")
            return v

        return dec_str
    if annotation is bool:

        def dec_bool(v: Any) -> bool:
            if not isinstance(v, bool):
                raise DecodeError(f"{where}: expected a bool")
            return v

        return dec_bool
    if annotation is int:

        def dec_int(v: Any) -> int:
            if not isinstance(v, int) or isinstance(v, bool):
                raise DecodeError(f"{where}: expected an integer")
            return v

        return dec_int
    if annotation is float:

        def dec_float(v: Any) -> float:
            if not isinstance(v, float | int) or isinstance(v, bool):
                raise DecodeError(f"{where}: expected a number")
            return float(v)

        return dec_float
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        nested = annotation

        def dec_nested(v: Any) -> Any:
            schema = _BY_CLASS.get(nested)
            if schema is None:
                raise LocalError(f"{where}: {nested.__name__} is not registered")
            return _build(schema, v)

        return dec_nested
    raise LocalError(f"{where}: unsupported wire type {annotation!r}")
