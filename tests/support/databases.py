"""Throwaway PostgreSQL databases for tests and benchmarks."""

import uuid

import psycopg


def fresh_postgres_database(admin_url: str) -> str:
    """Create an empty database and return its URL."""
    name = f"hitl_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name
