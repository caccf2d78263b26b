"""FastAPI dependencies: the database session, who is asking (session cookie or API token), what they may do,
and CSRF on every state change.

Why CSRF only for cookie sessions: a browser attaches cookies to cross-site requests by itself; it never
attaches an `Authorization: Bearer` header, so token requests cannot be forged that way. A cookie-authenticated
POST must carry the session's CSRF token in `X-CSRF-Token` (synchronizer token; the pages read it from
/api/v1/me), on top of SameSite=Strict cookies.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Callable, Iterator

from fastapi import Depends, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db.models import ApiToken, User, WebSession, utc, utcnow
from ..users import PERMISSIONS, sha256_hex

SESSION_COOKIE = "ecg_session"
LOGIN_CSRF_COOKIE = "ecg_login_csrf"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Principal:
    user: User
    via: str                     # "session" | "token"
    csrf_token: str | None = None

    @property
    def username(self) -> str:
        return self.user.username

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.user.role, set())


def db(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as s:
        yield s


def optional_principal(request: Request, s: Session = Depends(db)) -> Principal | None:
    auth = request.headers.get("authorization", "")
    if auth:
        scheme, _, secret = auth.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            return None
        tok = s.scalar(select(ApiToken).where(ApiToken.token_hash == sha256_hex(secret.strip()),
                                              ApiToken.revoked.is_(False)))
        user = s.get(User, tok.user_id) if tok else None
        if user is None or user.disabled:
            return None
        tok.last_used_at = utcnow()
        s.commit()
        return Principal(user, "token")
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    ws = s.get(WebSession, sha256_hex(cookie))
    if ws is None or utc(ws.expires_at) < utcnow():
        return None
    user = s.get(User, ws.user_id)
    if user is None or user.disabled:
        return None
    p = Principal(user, "session", ws.csrf_token)
    if request.method in UNSAFE:
        sent = request.headers.get("x-csrf-token", "")
        if not sent or not hmac.compare_digest(sent, ws.csrf_token):
            raise HTTPException(403, "CSRF token missing or wrong: send the X-CSRF-Token header from /api/v1/me")
    return p


def principal(p: Principal | None = Depends(optional_principal)) -> Principal:
    if p is None:
        raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
    return p


def require(permission: str) -> Callable[[Principal], Principal]:
    def check(p: Principal = Depends(principal)) -> Principal:
        if not p.can(permission):
            raise HTTPException(403, f"role {p.user.role!r} may not {permission.replace('_', ' ')}")
        return p
    check.__name__ = f"require_{permission}"
    return check
