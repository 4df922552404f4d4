"""A least-recently-used cache with a size limit and hit statistics.

Python's functools.lru_cache covers most needs; this version exists to show the idea:
a dictionary keeps insertion order, so moving a key to the end on every read keeps
the least recently used key at the front, ready to be evicted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0

    @property
    def hit_rate(self) -> float:
        """Share of lookups answered from the cache (0.0 when nothing was looked up)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class LRUCache(Generic[K, V]):
    """Holds at most ``capacity`` items; the least recently used one leaves first."""

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._data: dict[K, V] = {}
        self.stats = CacheStats()

    def get(self, key: K, default: V | None = None) -> V | None:
        if key not in self._data:
            self.stats.misses += 1
            return default
        self.stats.hits += 1
        value = self._data.pop(key)
        self._data[key] = value  # now the most recently used
        return value

    def put(self, key: K, value: V) -> None:
        if key in self._data:
            self._data.pop(key)
        elif len(self._data) >= self.capacity:
            oldest = next(iter(self._data))
            del self._data[oldest]
            self.stats.evictions += 1
        self._data[key] = value

    def get_or_compute(self, key: K, compute: Callable[[K], V]) -> V:
        """The cached value, or ``compute(key)`` stored for next time."""
        missing = object()
        value = self.get(key, missing)  # type: ignore[arg-type]
        if value is missing:
            value = compute(key)
            self.put(key, value)
        return value  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


def cached(capacity: int = 128) -> Callable[[Callable[[K], V]], Callable[[K], V]]:
    """Decorator for one-argument functions, backed by an LRUCache."""

    def wrap(fn: Callable[[K], V]) -> Callable[[K], V]:
        cache: LRUCache[K, V] = LRUCache(capacity)

        def inner(arg: K) -> V:
            return cache.get_or_compute(arg, fn)

        inner.cache = cache  # type: ignore[attr-defined]
        inner.__doc__ = fn.__doc__
        return inner

    return wrap
