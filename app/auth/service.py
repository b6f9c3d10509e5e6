"""Creating and checking API keys."""

import hashlib
import secrets
import threading
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import ApiKey, Role

TOKEN_PREFIX = "hitl_"
# Verified keys are remembered briefly so a request costs no key lookup; revocation takes
# effect within this many seconds.
VERIFIED_KEY_TTL_SECONDS = 10.0


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(*, session: Session, name: str, role: Role) -> tuple[ApiKey, str]:
    """Store a new key and return it with its one-time plaintext token."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, role=role, key_hash=hash_token(token), prefix=token[:12])
    session.add(key)
    session.commit()
    return key, token


def revoke_key(*, session: Session, name: str) -> ApiKey | None:
    """Mark the named key revoked (kept for the record); None if no key has that name. Replicas
    that verified it recently go on accepting it for up to VERIFIED_KEY_TTL_SECONDS."""
    key = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if key is not None:
        key.revoked = True
        session.commit()
    return key


class KeyVerifier:
    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, str, Role]] = {}
        self._lock = threading.Lock()

    def verify(self, *, session: Session, token: str) -> tuple[str, Role] | None:
        """(key name, role) for a valid, unrevoked token; None otherwise."""
        digest = hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._seen.get(digest)
        if hit and hit[0] > now:
            return hit[1], hit[2]
        key = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked.is_(False)))
        if key is None:
            return None
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[digest] = (now + VERIFIED_KEY_TTL_SECONDS, key.name, key.role)
        return key.name, key.role

    def forget(self) -> None:
        with self._lock:
            self._seen.clear()
