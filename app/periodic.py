"""A daemon thread that calls a function every interval until stopped (the gauges' readers:
the metric export only reads what they last found, so an unreachable database never stalls it)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, interval_seconds: float, fn: Callable[[], None]):
        self._name = name
        self._interval = interval_seconds
        self._fn = fn
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (again after stop(): an application's lifespan may run more than once)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(self._stop,), name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self, stop: threading.Event) -> None:
        while True:
            try:
                self._fn()
            except Exception:  # noqa: BLE001 - a reader handles its own failures; never die
                log.warning("%s failed", self._name, exc_info=True)
            if stop.wait(self._interval):
                return
