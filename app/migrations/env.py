"""Alembic environment: migrates the database given by the caller (or DATABASE_URL)."""

from alembic import context
from sqlalchemy import create_engine, pool, text

from app.auth import models as _auth_models  # noqa: F401 - registers the tables
from app.db import Base, prepare_url
from app.reviews import models as _review_models  # noqa: F401

config = context.config
MIGRATION_LOCK_KEY = 0x6869746C  # "hitl": any constant the application uses for nothing else


def _url() -> str:
    url = config.attributes.get("database_url")
    if not url:
        from app.config import get_settings

        url = get_settings().database_url
    return prepare_url(url)


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas that start together migrate one after the other (the lock is the session's,
            # released when the connection closes); the later ones then find nothing to do.
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
