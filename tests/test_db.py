"""The timestamp column type: every backend stores and returns the same instant, in UTC."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select

from app.db import UTCDateTime, prepare_url

PLUS_TWO = timezone(timedelta(hours=2))


@pytest.fixture
def stamps(backend):
    engine = create_engine(prepare_url(backend["database_url"]))
    table = Table("utc_datetime_probe", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime))
    table.create(engine)
    try:
        yield engine, table
    finally:
        table.drop(engine)
        engine.dispose()


def test_an_aware_time_in_another_zone_is_stored_as_the_same_instant(stamps):
    engine, table = stamps
    with engine.begin() as conn:
        conn.execute(insert(table).values(id=1, at=datetime(2026, 1, 2, 12, 0, tzinfo=PLUS_TWO)))
        stored = conn.execute(select(table.c.at)).scalar_one()
    assert stored == datetime(2026, 1, 2, 10, 0, tzinfo=UTC)
    assert stored.utcoffset() == timedelta(0)


def test_a_naive_time_is_refused(stamps):
    engine, table = stamps
    with pytest.raises(Exception, match="naive datetime"), engine.begin() as conn:
        conn.execute(insert(table).values(id=1, at=datetime(2026, 1, 2, 12, 0)))
