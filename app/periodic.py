"""A daemon thread that calls a function every interval until stopped (the gauges' readers:
the metric export only reads what they last found, so an unreachable database never stalls it)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, interval_seconds: float, fn: Callable[[], None]):
        self._interval = interval_seconds
        self._fn = fn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            try:
                self._fn()
            except Exception:  # noqa: BLE001 - a reader handles its own failures; never die
                log.warning("%s failed", self._thread.name, exc_info=True)
            if self._stop.wait(self._interval):
                return
