"""Admission control: each process works on at most `limit` API requests at a time and answers
the rest at once with 503 and Retry-After, instead of queueing them.

Without it an overloaded process collapses (docs/capacity.md): past its knee every request
waits behind all the accepted ones, clients time out, and the process spends its CPU on answers
nobody reads - at 120 requests/s offered, one process delivered 2-13 of them. With a bound, the
requests it takes are served at its full rate and the others learn at once to back off or go to
another replica. A request in flight here is one being worked on (waiting for a thread, the
database pool or the code host); at the measured ~10 ms of CPU per request, the default bound
keeps the queueing delay well under the 500 ms latency SLO. Health probes are never refused:
a refused liveness probe would restart a process for being busy.

Shed requests are ordinary 503 server spans (this runs inside the instrumentation), so they
count against the availability SLO and show on the dashboards like any other error.
"""

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

EXEMPT_PREFIX = "/health"
RETRY_AFTER_SECONDS = 1


class InFlightLimit:
    """ASGI middleware: one event loop per process, so a plain counter is exact."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit <= 0 or scope["path"].startswith(EXEMPT_PREFIX):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            response = JSONResponse(
                {"detail": f"overloaded: {self.in_flight} requests in progress here, retry later"},
                status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
