"""Request dependencies: the session, the cache, the caller's identity and role checks."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.cache import Cache
from app.config import Settings

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key created with `python -m app create-key`."
)


def get_session(request: Request) -> Iterator[Session]:
    yield from request.app.state.db.session()


def get_cache(request: Request) -> Cache:
    return request.app.state.cache


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


SessionDep = Annotated[Session, Depends(get_session)]
CacheDep = Annotated[Cache, Depends(get_cache)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


def _principal(request: Request, session: SessionDep, token: str | None = Security(api_key_header)) -> Principal:
    if not token or len(token) > 200:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or invalid API key", headers={"WWW-Authenticate": "ApiKey"}
        )
    found = request.app.state.verifier.verify(session=session, token=token)
    if found is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or invalid API key", headers={"WWW-Authenticate": "ApiKey"}
        )
    return Principal(*found)


def require(*roles: Role):
    allowed = frozenset(roles) | {Role.admin}

    def check(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if principal.role not in allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"role '{principal.role.value}' may not do this; needs one of: "
                + ", ".join(sorted(r.value for r in allowed)),
            )
        return principal

    return check


CurrentReader = Annotated[Principal, Depends(require(Role.reviewer, Role.viewer))]
CurrentReviewer = Annotated[Principal, Depends(require(Role.reviewer))]
CurrentPipeline = Annotated[Principal, Depends(require(Role.pipeline))]
CurrentAdmin = Annotated[Principal, Depends(require())]
