"""Tables of the review domain: a review (one APV waiting for a person) and its decisions."""

import enum
import uuid
from datetime import datetime

from sqlalchemy import JSON, Boolean, Enum, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, UTCDateTime, utcnow


def new_id() -> str:
    return str(uuid.uuid4())


class Severity(str, enum.Enum):
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"


class PatchStrategy(str, enum.Enum):
    version_bump = "version_bump"
    code_rewrite = "code_rewrite"
    config_change = "config_change"
    workaround = "workaround"


class RiskLevel(str, enum.Enum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class WargameVerdict(str, enum.Enum):
    success = "success"
    partial = "partial"
    failure = "failure"
    inconclusive = "inconclusive"


class ReviewStatus(str, enum.Enum):
    pending = "pending"
    decided = "decided"
    escalated = "escalated"


# The states in which a review waits for a person (the queue).
WAITING = (ReviewStatus.pending, ReviewStatus.escalated)


class DecisionKind(str, enum.Enum):
    approve = "approve"
    reject = "reject"
    modify = "modify"
    escalate = "escalate"


ACTION_FOR_DECISION = {
    DecisionKind.approve: "merge",
    DecisionKind.reject: "close",
    DecisionKind.modify: "request_changes",
    DecisionKind.escalate: "escalate",
}


def _enum(e: type[enum.Enum]) -> Enum:
    # Stored as plain strings: portable, and new values need no ALTER TYPE.
    return Enum(e, native_enum=False, validate_strings=True, length=32)


class Review(Base):
    __tablename__ = "reviews"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    apv_code: Mapped[str] = mapped_column(String(64), unique=True)
    priority: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(64), default="pipeline")

    cve_id: Mapped[str] = mapped_column(String(32), index=True)
    cve_title: Mapped[str] = mapped_column(String(500))
    cve_description: Mapped[str] = mapped_column(Text, default="")
    cvss_score: Mapped[float] = mapped_column(Float)
    severity: Mapped[Severity] = mapped_column(_enum(Severity))
    cwe_ids: Mapped[list[str]] = mapped_column(JSON, default=list)

    package_name: Mapped[str] = mapped_column(String(255))
    package_version: Mapped[str] = mapped_column(String(100))
    package_ecosystem: Mapped[str] = mapped_column(String(50))
    fixed_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    affected_files: Mapped[list[str]] = mapped_column(JSON, default=list)

    confirmation_score: Mapped[float] = mapped_column(Float)
    static_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    dynamic_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    false_positive_score: Mapped[float | None] = mapped_column(Float, nullable=True)

    patch_strategy: Mapped[PatchStrategy] = mapped_column(_enum(PatchStrategy))
    patch_description: Mapped[str] = mapped_column(Text, default="")
    patch_diff: Mapped[str] = mapped_column(Text, default="")
    patch_confidence: Mapped[float] = mapped_column(Float)
    patch_risk_level: Mapped[RiskLevel] = mapped_column(_enum(RiskLevel))

    validation_passed: Mapped[bool] = mapped_column(Boolean)
    validation_confidence: Mapped[float] = mapped_column(Float)
    validation_warnings: Mapped[list[str]] = mapped_column(JSON, default=list)

    pr_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pr_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    pr_branch: Mapped[str | None] = mapped_column(String(255), nullable=True)

    wargame_verdict: Mapped[WargameVerdict | None] = mapped_column(_enum(WargameVerdict), nullable=True)
    wargame_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    wargame_evidence: Mapped[dict | None] = mapped_column(JSON, nullable=True)

    status: Mapped[ReviewStatus] = mapped_column(_enum(ReviewStatus), default=ReviewStatus.pending)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    decisions: Mapped[list["Decision"]] = relationship(
        back_populates="review", order_by="Decision.created_at", lazy="select"
    )

    __table_args__ = (
        Index("ix_reviews_status_created", "status", "created_at"),
        Index("ix_reviews_created_id", "created_at", "id"),
    )


class Decision(Base):
    __tablename__ = "decisions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    review_id: Mapped[str] = mapped_column(ForeignKey("reviews.id"), index=True)
    decision: Mapped[DecisionKind] = mapped_column(_enum(DecisionKind))
    justification: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float)
    modifications: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    reviewer: Mapped[str] = mapped_column(String(100))

    # Snapshot of the review at decision time.
    cve_id: Mapped[str] = mapped_column(String(32))
    severity: Mapped[Severity] = mapped_column(_enum(Severity))
    patch_strategy: Mapped[PatchStrategy] = mapped_column(_enum(PatchStrategy))
    wargame_verdict: Mapped[WargameVerdict | None] = mapped_column(_enum(WargameVerdict), nullable=True)
    decision_latency_seconds: Mapped[float] = mapped_column(Float)

    # The code-host action that follows the decision: an outbox row, written in the decision's own
    # statement (app/reviews/flows.py carries it out). action_next_attempt_at is when the action is
    # due: while an attempt runs it is the end of that attempt's lease, after a failure the next
    # retry; NULL once nothing is left to do (done, skipped, or failed for good).
    # action_attempts counts attempts started, and fences a late attempt's write-back.
    # action_clean_failures counts the attempts known to have done nothing (the code host
    # answered with an error, or nothing was sent): while it is below the attempts before this
    # one, some earlier attempt may have taken effect unseen, and the next one reads the state first.
    action: Mapped[str] = mapped_column(String(32))
    action_status: Mapped[str] = mapped_column(String(40), default="pending")
    action_attempts: Mapped[int] = mapped_column(Integer, default=0)
    action_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    action_clean_failures: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    action_next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # W3C traceparent of the deciding request, so retries link back to it.
    traceparent: Mapped[str | None] = mapped_column(String(64), nullable=True)

    # The client's Idempotency-Key (scoped to the reviewer) and a digest of what it asked for, so a
    # repeat returns this decision and a reuse for something else is refused.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    request_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    review: Mapped[Review] = relationship(back_populates="decisions")

    __table_args__ = (
        # The outbox worker's claim: due rows by due time; only rows with work left are indexed.
        Index(
            "ix_decisions_action_due",
            "action_next_attempt_at",
            postgresql_where=text("action_next_attempt_at IS NOT NULL"),
            sqlite_where=text("action_next_attempt_at IS NOT NULL"),
        ),
        UniqueConstraint("reviewer", "idempotency_key", name="uq_decisions_reviewer_idempotency_key"),
    )
