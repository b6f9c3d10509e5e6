"""Admin-only fault injection, so alert tests can make a share of requests fail or slow."""

import asyncio
import random

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from app.deps import CurrentAdmin
from app.errors import ERROR_RESPONSES

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], responses=ERROR_RESPONSES)


class Faults(BaseModel):
    error_ratio: float = Field(0.0, ge=0, le=1, allow_inf_nan=False, description="Share of API requests answered 500")
    delay_ratio: float = Field(0.0, ge=0, le=1, allow_inf_nan=False, description="Share of API requests delayed")
    delay_seconds: float = Field(1.5, ge=0, le=30, allow_inf_nan=False)


@router.get("/faults", response_model=Faults, summary="The current fault injection")
def get_faults(request: Request, _: CurrentAdmin):
    return request.app.state.faults


@router.put("/faults", response_model=Faults, summary="Set the fault injection (admin only)")
def set_faults(body: Faults, request: Request, _: CurrentAdmin):
    request.app.state.faults = body
    return body


async def inject_faults(request: Request) -> None:
    """Router dependency on the API routes; does nothing unless an admin switched faults on."""
    faults: Faults = request.app.state.faults
    if faults.delay_ratio and random.random() < faults.delay_ratio:
        await asyncio.sleep(faults.delay_seconds)
    if faults.error_ratio and random.random() < faults.error_ratio:
        raise HTTPException(500, "injected fault")
