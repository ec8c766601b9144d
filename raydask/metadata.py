"""Cluster-wide metadata: ``Client.set_metadata`` / ``get_metadata``.

Dask keeps a nested dict, ``task_metadata``, on the scheduler; raydask keeps it
in the coordination actor (:mod:`raydask.coordinator`), so every client of the
cluster and every task sees the same values.  A key that is a list is a path
into nested dicts, made on demand, with Dask's rules.

Dask accepts msgpack-encodable values; those (dicts, lists, tuples, strings,
numbers, booleans, None, bytes) are stored as they are, so a later path can
reach into a dict stored whole.  Any other picklable value is stored pickled
(``coordinator.pack``; the actor never unpickles user objects) and comes back
as itself, but a path cannot reach into it.
"""

from __future__ import annotations

import threading

from .coordinator import call, ensure_connected, pack, unpack

__all__ = ["MetadataStore", "get_metadata", "no_default", "set_metadata"]

class _NoDefault:
    def __repr__(self):
        return "<no_default>"


no_default = _NoDefault()  # get_metadata without a default raises KeyError

_PLAIN = (str, int, float, bool, bytes, type(None))


class Packed(tuple):
    """A value the actor keeps pickled: ``(bytes, refs)`` from ``coordinator.pack``."""

    __slots__ = ()

    def __reduce__(self):
        return Packed, (tuple(self),)


class MetadataStore:
    """The actor-side nested dict, with the scheduler's ``set_metadata``/``get_metadata``."""

    def __init__(self):
        self.metadata: dict = {}
        self.lock = threading.Lock()

    def set(self, keys, value):
        with self.lock:
            metadata = self.metadata
            for key in keys[:-1]:
                if key not in metadata or not isinstance(metadata[key], (dict, list)):
                    metadata[key] = {}
                metadata = metadata[key]
            metadata[keys[-1]] = value

    def get(self, keys):
        """The value at the path ``keys``; ``KeyError`` if there is none (the client knows the default)."""
        with self.lock:
            metadata = self.metadata
            for key in keys:
                if isinstance(metadata, Packed):
                    raise TypeError(f"a stored {key!r}'s parent is an opaque (pickled) value: it cannot be indexed")
                metadata = metadata[key]
            return metadata


def _encode(value, depth=0):
    """``value`` as the actor stores it: plain structures as they are, anything else packed."""
    if type(value) in _PLAIN:
        return value
    if depth < 100:
        if type(value) is dict and all(type(k) in _PLAIN for k in value):
            return {k: _encode(v, depth + 1) for k, v in value.items()}
        if type(value) in (list, tuple):
            return type(value)(_encode(v, depth + 1) for v in value)
    return Packed(pack(value))


def _decode(value):
    if type(value) is Packed:
        return unpack(tuple(value))
    if type(value) is dict:
        return {k: _decode(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_decode(v) for v in value)
    return value


def set_metadata(client, key, value) -> None:
    """Store ``value`` under ``key`` (a list: a path into nested dicts), as Dask's client."""
    ensure_connected(client, "metadata")
    keys = key if isinstance(key, list) else (key,)
    call(MetadataStore, "set", tuple(keys), _encode(value))


def get_metadata(client, keys, default=no_default):
    """The value under ``keys`` (a list or tuple: a path).

    Raises:
        KeyError: if there is none and no ``default`` was given.
    """
    ensure_connected(client, "metadata")
    if not isinstance(keys, (list, tuple)):
        keys = (keys,)
    try:
        return _decode(call(MetadataStore, "get", tuple(keys)))
    except KeyError:
        if default is no_default:
            raise
        return default
