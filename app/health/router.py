"""Liveness and readiness: the only routes without a credential."""

from fastapi import APIRouter, Request
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

router = APIRouter(prefix="/health", tags=["health"])


class Liveness(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    cache: str


@router.get("/live", response_model=Liveness, summary="The process is up")
def live():
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "The database is unreachable"}},
    summary="Ready for traffic: the database answers; the cache is reported (the service runs without it)",
)
def ready(request: Request):
    state = request.app.state
    # Probes are not traced (see app/telemetry), so neither is their query.
    token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        with state.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        database = "ok"
    except Exception:  # noqa: BLE001 - any failure means not ready
        database = "unavailable"
    finally:
        detach(token)
    cache = "ok" if state.cache.ping() else "degraded"
    body = {"status": "ok" if database == "ok" else "unavailable", "database": database, "cache": cache}
    return JSONResponse(body, status_code=200 if database == "ok" else 503)
