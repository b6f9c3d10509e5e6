"""Request and response bodies of the review API."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.reviews.models import (
    DecisionKind,
    PatchStrategy,
    ReviewStatus,
    RiskLevel,
    Severity,
    WargameVerdict,
)


# PostgreSQL text cannot hold NUL, so free text refuses it (and says so in the schema).
NO_NUL = r"^[^\x00]*$"


def Str(max_length: int, min_length: int = 0, pattern: str = NO_NUL) -> Any:
    """A bounded string; `pattern` must itself exclude NUL."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length, pattern=pattern)]


Score = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
JsonObject = Annotated[dict[str, Any], Field(max_length=100)]

_Strict = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ReviewCreate(BaseModel):
    model_config = _Strict

    apv_code: Str(64, 5, r"^APV-[A-Za-z0-9][A-Za-z0-9-]{0,59}$") = Field(
        examples=["APV-20261125-001"]
    )
    priority: int = Field(ge=1, le=10)
    source: Str(64, 1, r"^[A-Za-z0-9_.-]+$") = "pipeline"

    cve_id: Str(32, 9, r"^CVE-[0-9]{4}-[0-9]{4,}$") = Field(examples=["CVE-2026-12345"])
    cve_title: Str(500, 1)
    cve_description: Str(20_000) = ""
    cvss_score: float = Field(ge=0, le=10, allow_inf_nan=False)
    severity: Severity
    cwe_ids: list[Str(16, 5, r"^CWE-[0-9]{1,6}$")] = Field(default_factory=list, max_length=20)

    package_name: Str(255, 1)
    package_version: Str(100, 1)
    package_ecosystem: Str(50, 1)
    fixed_version: Str(100, 1) | None = None
    affected_files: list[Str(1000, 1)] = Field(default_factory=list, max_length=500)

    confirmation_score: Score
    static_score: Score | None = None
    dynamic_score: Score | None = None
    false_positive_score: Score | None = None

    patch_strategy: PatchStrategy
    patch_description: Str(5_000) = ""
    patch_diff: Str(100_000) = ""
    patch_confidence: Score
    patch_risk_level: RiskLevel

    validation_passed: bool
    validation_confidence: Score
    validation_warnings: list[Str(1000)] = Field(default_factory=list, max_length=100)

    pr_number: int | None = Field(None, ge=1, le=2_147_483_647)
    pr_url: Str(500, 1, r"^https?://[!-~]+$") | None = None  # printable ASCII: both regex engines agree
    pr_branch: Str(255, 1) | None = None

    wargame_verdict: WargameVerdict | None = None
    wargame_confidence: Score | None = None
    wargame_evidence: JsonObject | None = None


class ReviewOut(ReviewCreate):
    model_config = ConfigDict(from_attributes=True)

    id: str
    status: ReviewStatus
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None
    waiting_seconds: float = Field(description="Seconds from creation to the decision, or to now if undecided.")


class ReviewSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    apv_code: str
    priority: int
    cve_id: str
    cve_title: str
    severity: Severity
    package_name: str
    patch_strategy: PatchStrategy
    wargame_verdict: WargameVerdict | None
    pr_number: int | None
    status: ReviewStatus
    created_at: datetime
    waiting_seconds: float


class ReviewPage(BaseModel):
    items: list[ReviewSummary]
    total: int
    limit: int
    offset: int


# The OpenAPI document states the rule the validator enforces, so a client (or a fuzzer) that
# follows the schema is never refused by a hidden rule: 'modify' needs a non-empty object.
_MODIFY_NEEDS_MODIFICATIONS = {
    "if": {"properties": {"decision": {"const": DecisionKind.modify.value}}, "required": ["decision"]},
    "then": {"properties": {"modifications": {"type": "object", "minProperties": 1}}, "required": ["modifications"]},
}


class DecisionCreate(BaseModel):
    model_config = ConfigDict(**_Strict, json_schema_extra=_MODIFY_NEEDS_MODIFICATIONS)

    decision: DecisionKind
    justification: Str(5_000, 10)
    confidence: Score
    modifications: JsonObject | None = None

    @model_validator(mode="after")
    def _modifications_for_modify(self) -> "DecisionCreate":
        if self.decision is DecisionKind.modify and not self.modifications:
            raise ValueError("modifications are required when decision is 'modify'")
        return self


class DecisionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    review_id: str
    decision: DecisionKind
    justification: str
    confidence: float
    modifications: dict[str, Any] | None
    reviewer: str
    cve_id: str
    severity: Severity
    patch_strategy: PatchStrategy
    wargame_verdict: WargameVerdict | None
    decision_latency_seconds: float
    action: str
    action_status: str
    action_attempts: int
    created_at: datetime


class DecisionHistory(BaseModel):
    review_id: str
    decisions: list[DecisionOut]


class ReviewTimeStats(BaseModel):
    average_seconds: float | None
    median_seconds: float | None
    fastest_seconds: float | None
    slowest_seconds: float | None


class Stats(BaseModel):
    pending_by_severity: dict[Severity, int]
    reviews_today: int
    reviews_this_week: int
    decisions_today: int
    decisions_this_week: int
    decisions_by_kind: dict[DecisionKind, int]
    review_time: ReviewTimeStats
    generated_at: datetime


class ErrorOut(BaseModel):
    detail: str
