"""A small string cache: Redis when REDIS_URL is set, else a bounded in-process LRU.

Both have the same interface and the same failure rule: a cache that fails is a miss (counted
and logged), never an error for the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Protocol

from app.telemetry import metrics

log = logging.getLogger(__name__)


class Cache(Protocol):
    backend: str

    def get(self, key: str, *, key_space: str) -> str | None: ...
    def set(self, key: str, value: str, *, ttl_seconds: int) -> None: ...
    def delete(self, *keys: str) -> None: ...
    def ping(self) -> bool: ...
    def evictions(self) -> int: ...
    def close(self) -> None: ...


def _count(hit: bool, backend: str, key_space: str) -> None:
    attrs = {"hitl.cache.backend": backend, "hitl.cache.key_space": key_space}
    (metrics.cache_hits if hit else metrics.cache_misses).add(1, attrs)


class MemoryCache:
    backend = "memory"

    def __init__(self, max_entries: int = 1024):
        self._data: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._max = max_entries
        self._evicted = 0
        self._lock = threading.Lock()

    def get(self, key: str, *, key_space: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            item = self._data.get(key)
            if item is not None and item[0] <= now:
                del self._data[key]
                item = None
            if item is not None:
                self._data.move_to_end(key)
        _count(item is not None, self.backend, key_space)
        return item[1] if item else None

    def set(self, key: str, value: str, *, ttl_seconds: int) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + ttl_seconds, value)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)
                self._evicted += 1

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def ping(self) -> bool:
        return True

    def evictions(self) -> int:
        return self._evicted

    def close(self) -> None:
        pass


class RedisCache:
    backend = "redis"

    def __init__(self, url: str, timeout_seconds: float):
        import redis

        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            decode_responses=True,
            health_check_interval=30,
        )
        self._last_evictions = 0

    def _failed(self, op: str, exc: Exception) -> None:
        metrics.cache_errors.add(1, {"hitl.cache.backend": self.backend, "hitl.cache.operation": op})
        log.warning("cache %s failed, continuing without the cache: %s", op, type(exc).__name__)

    def get(self, key: str, *, key_space: str) -> str | None:
        try:
            value = self._client.get(key)
        except Exception as exc:  # noqa: BLE001 - any cache failure degrades to a miss
            self._failed("get", exc)
            value = None
        _count(value is not None, self.backend, key_space)
        return value

    def set(self, key: str, value: str, *, ttl_seconds: int) -> None:
        try:
            self._client.set(key, value, ex=ttl_seconds)
        except Exception as exc:  # noqa: BLE001
            self._failed("set", exc)

    def delete(self, *keys: str) -> None:
        try:
            self._client.delete(*keys)
        except Exception as exc:  # noqa: BLE001
            self._failed("delete", exc)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception:  # noqa: BLE001
            return False

    def evictions(self) -> int:
        """Keys Redis evicted under maxmemory (its INFO stats), the last value if unreachable."""
        from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            self._last_evictions = int(self._client.info("stats").get("evicted_keys", 0))
        except Exception:  # noqa: BLE001
            pass
        finally:
            detach(token)
        return self._last_evictions

    def close(self) -> None:
        self._client.close()


def make_cache(redis_url: str | None, *, timeout_seconds: float, max_entries: int) -> Cache:
    cache: Cache = RedisCache(redis_url, timeout_seconds) if redis_url else MemoryCache(max_entries)
    metrics.set_evictions_reader(lambda: {cache.backend: cache.evictions()})
    return cache
