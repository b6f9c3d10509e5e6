"""Alembic environment: migrates the database given by the caller (or DATABASE_URL)."""

from alembic import context
from sqlalchemy import create_engine, pool

from app.auth import models as _auth_models  # noqa: F401 - registers the tables
from app.db import Base, prepare_url
from app.reviews import models as _review_models  # noqa: F401

config = context.config


def _url() -> str:
    url = config.attributes.get("database_url")
    if not url:
        from app.config import get_settings

        url = get_settings().database_url
    return prepare_url(url)


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
