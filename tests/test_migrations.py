"""The migrations build exactly the tables the models describe, on both backends, and the newest
one can be undone and redone."""

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from app.auth import models as _auth_models  # noqa: F401 - registers the tables
from app.db import Base, prepare_url
from app.migrate import alembic_config, upgrade
from app.reviews import models as _review_models  # noqa: F401
from harness.databases import fresh_postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrations.db'}"
    return fresh_postgres_database(request.getfixturevalue("postgres_admin_url"))


def differences(url: str) -> list:
    engine = create_engine(prepare_url(url))
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()


def test_the_migrated_schema_is_the_models_schema(empty_database):
    upgrade(empty_database)
    assert differences(empty_database) == []


def test_the_newest_migration_goes_down_and_up_again(empty_database):
    upgrade(empty_database)
    command.downgrade(alembic_config(empty_database), "-1")
    upgrade(empty_database)
    assert differences(empty_database) == []
