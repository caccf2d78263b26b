"""Users, roles, passwords (argon2), API tokens and the audit trail: the station's security facts in one place.

Why argon2id (argon2-cffi's defaults): memory-hard, the current OWASP recommendation; the hash string carries its
own parameters, so raising them later re-hashes on the next login (`needs_rehash`).
API tokens are random 32-byte secrets shown once; only their SHA-256 is stored (a leaked database does not leak
usable tokens, and a token is long enough that a fast hash is safe).
"""
from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from .db.models import ApiToken, AuditEntry, User, utcnow

ROLES = ("clinician", "fleet_admin", "viewer")
#: What each role may do. Patient data (results, strips) is readable by clinicians and viewers; reviews only by
#: clinicians; device administration only by fleet admins (who see no patient data).
PERMISSIONS = {"clinician": {"read_results", "review", "read_devices"},
               "viewer": {"read_results", "read_devices"},
               "fleet_admin": {"read_devices", "admin_fleet"}}
_hasher = PasswordHasher()
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
TOKEN_PREFIX = "ecgt_"


class UserError(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise UserError("password too short: use at least 8 characters")
    return _hasher.hash(password)


def verify_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def sha256_hex(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def add_user(session: Session, username: str, password: str, role: str, display_name: str | None = None,
             by: str = "cli") -> User:
    if not _USERNAME.match(username):
        raise UserError(f"user name {username!r}: use 1-64 of letters, digits, _ . @ -")
    if role not in ROLES:
        raise UserError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if session.scalar(select(User).where(User.username == username)):
        raise UserError(f"user {username!r} exists (use `ecg-cloud user passwd`)")
    user = User(username=username, display_name=display_name or username, role=role,
                password_hash=hash_password(password))
    session.add(user)
    session.flush()
    audit(session, by, "user_add", username, {"role": role})
    return user


def set_password(session: Session, username: str, password: str, by: str = "cli") -> User:
    user = get_user(session, username)
    user.password_hash = hash_password(password)
    audit(session, by, "user_passwd", username, None)
    return user


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise UserError(f"no user {username!r} (see `ecg-cloud user list`)")
    return user


def new_token(session: Session, username: str, name: str = "api", by: str = "cli") -> str:
    """Create an API token for a user; returns the secret (shown once, stored hashed)."""
    user = get_user(session, username)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=name[:80], token_hash=sha256_hex(secret)))
    audit(session, by, "token_add", username, {"name": name})
    return secret


def audit(session: Session, username: str, action: str, target: str | None, details: dict[str, Any] | None) -> None:
    """Every review and admin action, with who and when (written in the caller's transaction)."""
    session.add(AuditEntry(at=utcnow(), username=username, action=action, target=target, details=details))
