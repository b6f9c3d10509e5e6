"""Secrets read from files (DATABASE_PASSWORD_FILE, CODE_HOST_TOKEN_FILE) instead of the
environment, and the clear start-up errors when such a file is missing or does not fit."""

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from app.config import Settings

PG = "postgresql+psycopg://hitl@db.internal:5432/hitl"


def test_the_password_file_fills_the_database_url(tmp_path):
    secret = tmp_path / "postgres_password"
    secret.write_text("p@ss/w:rd %x\n")  # characters a URL must escape; the newline is dropped
    settings = Settings(DATABASE_URL=PG, DATABASE_PASSWORD_FILE=str(secret))
    url = make_url(settings.database_url)
    assert url.password == "p@ss/w:rd %x"
    assert (url.username, url.host, url.port, url.database) == ("hitl", "db.internal", 5432, "hitl")


def test_the_password_file_replaces_a_password_in_the_url(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("from-file")
    settings = Settings(DATABASE_URL="postgresql://hitl:from-env@db/hitl", DATABASE_PASSWORD_FILE=str(secret))
    assert make_url(settings.database_url).password == "from-file"


def test_a_missing_password_file_stops_start_up_naming_the_setting(tmp_path):
    with pytest.raises(ValidationError) as err:
        Settings(DATABASE_URL=PG, DATABASE_PASSWORD_FILE=str(tmp_path / "absent"))
    assert "DATABASE_PASSWORD_FILE" in str(err.value) and "absent" in str(err.value)


def test_a_password_file_with_sqlite_is_refused(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("x")
    with pytest.raises(ValidationError, match="SQLite"):
        Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}", DATABASE_PASSWORD_FILE=str(secret))


def test_the_code_host_token_file_is_read_and_still_checked_for_placeholders(tmp_path):
    token = tmp_path / "code_host_token"
    token.write_text("ghp_realtoken123\n")
    settings = Settings(CODE_HOST_URL="https://code.example", CODE_HOST_TOKEN_FILE=str(token), APP_ENV="production",
                        DATABASE_URL=PG)
    assert settings.code_host_token == "ghp_realtoken123"
    token.write_text("changeme")
    with pytest.raises(ValidationError, match="CODE_HOST_TOKEN"):
        Settings(CODE_HOST_URL="https://code.example", CODE_HOST_TOKEN_FILE=str(token), APP_ENV="production",
                 DATABASE_URL=PG)


@pytest.mark.parametrize("deadline, lease", [(30, 30), (40, 30), (0, 30)])
def test_an_attempt_deadline_not_shorter_than_the_lease_stops_start_up(deadline, lease):
    """A call that may outlive its lease is taken over and sent again by another replica."""
    with pytest.raises(ValidationError) as err:
        Settings(CODE_HOST_TIMEOUT_SECONDS=deadline, ACTION_LEASE_SECONDS=lease)
    assert "CODE_HOST_TIMEOUT_SECONDS" in str(err.value)
