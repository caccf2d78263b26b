"""The HTML pages. They are static shells (no patient data in them) that fetch the JSON API with the session
cookie; a page of patient data is still never served to an anonymous visitor: they are sent to /login."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, RedirectResponse, Response

from ..deps import Principal, optional_principal

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(tags=["pages"], include_in_schema=False)


def _page(name: str, p: Principal | None) -> Response:
    if p is None:
        return RedirectResponse("/login", status_code=303)
    return FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})


@router.get("/login")
def login_page() -> Response:
    return FileResponse(STATIC / "login.html")


@router.get("/")
def home(p: Principal | None = Depends(optional_principal)) -> Response:
    if p is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse("/devices" if p.user.role == "fleet_admin" else "/worklist", status_code=303)


@router.get("/worklist")
def worklist(p: Principal | None = Depends(optional_principal)) -> Response:
    return _page("worklist.html", p)


@router.get("/history")
def history(p: Principal | None = Depends(optional_principal)) -> Response:
    return _page("history.html", p)


@router.get("/cases/{result_id}")
def case(result_id: str, p: Principal | None = Depends(optional_principal)) -> Response:
    return _page("case.html", p)


@router.get("/devices")
def devices(p: Principal | None = Depends(optional_principal)) -> Response:
    return _page("devices.html", p)


@router.get("/devices/{device_id}")
def device(device_id: str, p: Principal | None = Depends(optional_principal)) -> Response:
    return _page("device.html", p)
