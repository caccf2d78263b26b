"""Login / logout / who am I. Login is throttled per user name and per client address (failed attempts in
the last `http.login_window_s`), and protected against login CSRF by a double-submit cookie."""
from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ...db.models import LoginAttempt, User, WebSession, utcnow
from ...users import PERMISSIONS, audit, hash_password, sha256_hex, verify_password
from ..deps import LOGIN_CSRF_COOKIE, SESSION_COOKIE, Principal, db, principal

router = APIRouter(tags=["auth"])


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


@router.get("/auth/csrf")
def login_csrf(request: Request, response: Response) -> dict[str, str]:
    """A pre-login CSRF token (double submit: cookie + header must match)."""
    token = secrets.token_urlsafe(24)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=False, samesite="strict", path="/auth",
                        secure=request.app.state.config.http.secure_cookies)
    return {"csrf_token": token}


@router.post("/auth/login")
def login(body: Login, request: Request, response: Response, s: Session = Depends(db)) -> dict[str, str]:
    cfg = request.app.state.config.http
    sent, cookie = request.headers.get("x-csrf-token", ""), request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not sent or not cookie or not hmac.compare_digest(sent, cookie):
        raise HTTPException(403, "login CSRF token missing or wrong: GET /auth/csrf first")
    client = (request.client.host if request.client else "?")[:64]
    since = utcnow() - timedelta(seconds=cfg.login_window_s)
    fails_user = s.scalar(select(func.count()).select_from(LoginAttempt).where(
        LoginAttempt.ok.is_(False), LoginAttempt.at >= since, LoginAttempt.username == body.username))
    fails_client = s.scalar(select(func.count()).select_from(LoginAttempt).where(
        LoginAttempt.ok.is_(False), LoginAttempt.at >= since, LoginAttempt.client == client))
    if max(fails_user, fails_client) >= cfg.login_max_failures:
        raise HTTPException(429, "too many failed logins; wait and try again",
                            headers={"Retry-After": str(int(cfg.login_window_s))})
    user = s.scalar(select(User).where(User.username == body.username))
    ok = user is not None and not user.disabled and verify_password(user, body.password)
    if user is None:
        verify_password(User(password_hash=_DUMMY), body.password)   # same time whether or not the user exists
    s.add(LoginAttempt(username=body.username[:64], client=client, ok=ok))
    if not ok:
        s.commit()
        raise HTTPException(401, "wrong user name or password")
    # housekeeping on the way: expired sessions and day-old login attempts go
    s.execute(delete(WebSession).where(WebSession.expires_at < utcnow()))
    s.execute(delete(LoginAttempt).where(LoginAttempt.at < utcnow() - timedelta(days=1)))
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    s.add(WebSession(token_hash=sha256_hex(token), user_id=user.id, csrf_token=csrf,
                     expires_at=utcnow() + timedelta(hours=cfg.session_hours)))
    audit(s, user.username, "login", client, None)
    s.commit()
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=cfg.secure_cookies,
                        max_age=int(cfg.session_hours * 3600), path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/auth")
    return {"username": user.username, "role": user.role, "csrf_token": csrf}


@router.post("/auth/logout")
def logout(request: Request, response: Response, p: Principal = Depends(principal), s: Session = Depends(db)) -> dict:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        ws = s.get(WebSession, sha256_hex(cookie))
        if ws:
            s.delete(ws)
    audit(s, p.username, "logout", None, None)
    s.commit()
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"ok": True}


@router.get("/api/v1/me")
def me(request: Request, p: Principal = Depends(principal)) -> dict:
    return {"username": p.username, "display_name": p.user.display_name, "role": p.user.role,
            "permissions": sorted(PERMISSIONS.get(p.user.role, ())), "csrf_token": p.csrf_token,
            "station": request.app.state.config.station.name}


_DUMMY = hash_password("dummy-password-for-timing")
