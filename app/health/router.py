"""Liveness and readiness: the only routes without a credential."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.health.readiness import READINESS_TIMEOUT_SECONDS

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
    description=f"Answers within {READINESS_TIMEOUT_SECONDS:g} s even when every request thread and database "
    "connection is busy (app/health/readiness.py).",
)
async def ready(request: Request):
    body = await request.app.state.readiness.check()
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)
