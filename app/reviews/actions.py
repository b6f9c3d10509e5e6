"""The code host: where a decision turns into a merge, a close, a change request or a hand-off.

Called over HTTP with httpx (instrumented, so the trace context travels with the call).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

NO_CODE_HOST = "no code host configured"


@dataclass(frozen=True)
class ActionResult:
    status: str  # "succeeded", "skipped" or "<action>_failed"
    error: str | None = None


class CodeHost:
    def __init__(self, base_url: str | None, token: str | None, timeout_seconds: float):
        self.configured = bool(base_url)
        self._client = (
            httpx.Client(
                base_url=base_url.rstrip("/"),
                timeout=timeout_seconds,
                headers={"Authorization": f"Bearer {token}"} if token else {},
            )
            if base_url
            else None
        )

    def perform(self, *, action: str, pr_number: int | None, payload: dict) -> ActionResult:
        if self._client is None:
            return ActionResult("skipped", NO_CODE_HOST)
        if action == "escalate":
            path = "/escalations"
        elif pr_number is None:
            return ActionResult("skipped", "the review has no pull request")
        else:
            path = f"/pulls/{pr_number}/{action}"
        try:
            response = self._client.post(path, json=payload)
        except httpx.HTTPError as exc:
            log.warning("code host %s failed: %s", action, type(exc).__name__)
            return ActionResult(f"{action}_failed", f"{type(exc).__name__}")
        if response.is_success:
            return ActionResult("succeeded")
        log.warning("code host %s answered %s", action, response.status_code)
        return ActionResult(f"{action}_failed", f"HTTP {response.status_code}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
