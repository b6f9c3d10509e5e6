"""HTTP layer of the review domain (thin: validation and status codes; work is in service.py)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from sqlalchemy import select

from app.deps import CacheDep, CurrentPipeline, CurrentReader, CurrentReviewer, SessionDep, SettingsDep
from app.errors import ERROR_RESPONSES
from app.reviews import service
from app.reviews.models import Decision, PatchStrategy, Review, ReviewStatus, Severity, WargameVerdict
from app.reviews.schemas import (
    DecisionCreate,
    DecisionHistory,
    DecisionOut,
    ReviewCreate,
    ReviewOut,
    ReviewPage,
    ErrorOut,
    ReviewSummary,
    Stats,
)

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)


def _review_out(review: Review) -> ReviewOut:
    return ReviewOut.model_validate(
        {**{c: getattr(review, c) for c in ReviewOut.model_fields if c != "waiting_seconds"},
         "waiting_seconds": service.waiting_seconds(review)}
    )


def get_review_or_404(review_id: uuid.UUID, session: SessionDep) -> Review:
    review = session.get(Review, str(review_id))
    if review is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"review {review_id} not found")
    return review


# Declare it after the route's credential dependency: FastAPI resolves dependencies in order, and
# a lookup first would tell a caller without a key which review ids exist (404 vs 401).
ReviewDep = Annotated[Review, Depends(get_review_or_404)]


@router.post(
    "/reviews",
    response_model=ReviewOut,
    status_code=status.HTTP_201_CREATED,
    summary="Submit an APV for review (idempotent on apv_code)",
    responses={
        200: {"model": ReviewOut, "description": "The apv_code was already submitted with this payload; the stored review."},
        409: {"model": ErrorOut, "description": "The apv_code was already submitted with a different payload (the fields are named)"},
    },
)
def submit_review(body: ReviewCreate, session: SessionDep, cache: CacheDep, _: CurrentPipeline, response: Response):
    try:
        review, created = service.submit_review(session=session, cache=cache, data=body)
    except service.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/api/v1/reviews/{review.id}"
    return _review_out(review)


@router.get("/reviews", response_model=ReviewPage, summary="List reviews, newest first")
def list_reviews(
    session: SessionDep,
    _: CurrentReader,
    status_: Annotated[ReviewStatus | None, Query(alias="status")] = None,
    severity: Severity | None = None,
    patch_strategy: PatchStrategy | None = None,
    wargame_verdict: WargameVerdict | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
):
    rows, total = service.list_reviews(
        session=session,
        status=status_,
        severity=severity,
        patch_strategy=patch_strategy,
        wargame_verdict=wargame_verdict,
        limit=limit,
        offset=offset,
    )
    items = [
        ReviewSummary.model_validate(
            {**{c: getattr(r, c) for c in ReviewSummary.model_fields if c != "waiting_seconds"},
             "waiting_seconds": service.waiting_seconds(r)}
        )
        for r in rows
    ]
    return ReviewPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/reviews/{review_id}", response_model=ReviewOut, summary="One review with its APV context")
def get_review(_: CurrentReader, review: ReviewDep):
    return _review_out(review)


@router.post(
    "/reviews/{review_id}/decisions",
    response_model=DecisionOut,
    status_code=status.HTTP_201_CREATED,
    summary="Decide on a review: approve, reject, modify or escalate",
    responses={
        200: {"model": DecisionOut, "description": "A repeat of an earlier request's Idempotency-Key: its decision."},
        409: {"model": ErrorOut, "description": "The review's state forbids it, or the Idempotency-Key was used before for another request"},
    },
)
def decide(
    principal: CurrentReviewer,
    review_id: uuid.UUID,
    body: DecisionCreate,
    session: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[!-~]+$",
            description="Makes the request safe to retry: a repeat with the same key and body returns "
            "the first request's decision (200) instead of deciding again.",
        ),
    ] = None,
):
    try:
        decision, created = service.decide(
            session=session,
            cache=cache,
            code_host=request.app.state.code_host,
            review_id=str(review_id),
            data=body,
            reviewer=principal.name,
            policy=settings.action_policy,
            idempotency_key=idempotency_key,
        )
    except LookupError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"review {review_id} not found") from None
    except service.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/api/v1/decisions/{decision.id}"
    return decision


@router.get("/reviews/{review_id}/decisions", response_model=DecisionHistory, summary="A review's decision history")
def decision_history(_: CurrentReader, review: ReviewDep):
    return DecisionHistory(review_id=review.id, decisions=review.decisions)


@router.get("/decisions/{decision_id}", response_model=DecisionOut, summary="One decision")
def get_decision(decision_id: uuid.UUID, session: SessionDep, _: CurrentReader):
    decision = session.scalar(select(Decision).where(Decision.id == str(decision_id)))
    if decision is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"decision {decision_id} not found")
    return decision


@router.get("/stats", response_model=Stats, summary="Queue and decision statistics (cached briefly)")
def get_stats(session: SessionDep, cache: CacheDep, settings: SettingsDep, _: CurrentReader):
    return service.stats(session=session, cache=cache, ttl_seconds=settings.stats_cache_ttl_seconds)
