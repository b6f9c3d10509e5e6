"""Property-based fuzzing of every operation in the OpenAPI schema (schemathesis), on both
database backends.

Runs as an admin key (allowed everywhere) so generated inputs reach the handlers; the checks
are schemathesis' defaults: no server error, status codes and bodies as documented, content
types as declared. The fault switch is left out (its 500s are on purpose).
"""

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection

from harness.factories import review_body

EXAMPLES_PER_OPERATION = 40


def test_every_operation_conforms_and_never_500s(app, client, keys):
    headers = {"X-API-Key": keys["admin"]}
    client.post("/api/v1/reviews", json=review_body(), headers={"X-API-Key": keys["pipeline"]})
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    tested = []
    for operation in operations:
        if operation.path == "/api/v1/admin/faults" and operation.method.upper() == "PUT":
            continue

        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            # Negative cases run with a valid key too, so "schema-violating request accepted"
            # would only flag the key we add and ignored unknown query parameters: that one
            # check is off for them; no-5xx, status codes and response schemas still apply.
            excluded = [negative_data_rejection] if mode is GenerationMode.NEGATIVE else []

            @given(case=operation.as_strategy(mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def fuzz(case):
                case.call_and_validate(headers=headers, excluded_checks=excluded)

            try:
                fuzz()  # noqa: B023 - runs before the loop variables change
            except Unsatisfiable:
                # An operation without inputs has no schema-violating request to make.
                assert mode is GenerationMode.NEGATIVE, operation.path
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /api/v1/reviews/{review_id}/decisions" in tested
