"""Error responses: what the client can fix is 4xx with the field at fault; an unreachable
database is a quick 503; anything else is a logged 500 (a bug, never client input)."""

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.reviews.schemas import ErrorOut

log = logging.getLogger(__name__)

ERROR_RESPONSES = {
    400: {"model": ErrorOut, "description": "The body could not be read (not UTF-8 JSON)"},
    401: {"model": ErrorOut, "description": "Missing or invalid API key"},
    403: {"model": ErrorOut, "description": "The key's role may not do this"},
    404: {"model": ErrorOut, "description": "Unknown id"},
    409: {"model": ErrorOut, "description": "The review's state forbids this"},
    413: {"model": ErrorOut, "description": "Body larger than the limit"},
    503: {"model": ErrorOut, "description": "The database is unavailable or the service is overloaded; retry after "
                                            "the Retry-After header's seconds"},
}


def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable: %s", type(exc).__name__)
    return JSONResponse({"detail": "database unavailable, retry later"}, status_code=503, headers={"Retry-After": "5"})


def install(app: FastAPI) -> None:
    for exc_type in (OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(exc_type, database_unavailable)
