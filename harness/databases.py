"""Throwaway PostgreSQL databases for tests and benchmarks."""

import uuid

import psycopg


def fresh_postgres_database(admin_url: str) -> str:
    """Create an empty database and return its URL."""
    name = f"hitl_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def migrated_with_keys(database_url: str, roles: dict) -> dict[str, str]:
    """Bring the database's schema up to date and create one API key per {name: Role};
    returns {name: token}."""
    from app.auth.service import create_key
    from app.config import Settings
    from app.db import Database
    from app.migrate import upgrade

    upgrade(database_url)
    db = Database(Settings(DATABASE_URL=database_url))
    try:
        with db.sessionmaker() as session:
            return {name: create_key(session=session, name=name, role=role)[1] for name, role in roles.items()}
    finally:
        db.engine.dispose()
