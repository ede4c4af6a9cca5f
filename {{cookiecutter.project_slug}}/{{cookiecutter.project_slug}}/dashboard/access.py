"""Who may see the dashboard and press its buttons.

With API_KEYS set, a browser signs in once with a key and then carries a signed cookie
(HttpOnly, SameSite=Strict); without keys the dashboard is open on loopback, like the
API, and says so. Every POST must come from the dashboard's own pages: a browser names
the site a request comes from (Sec-Fetch-Site, or else Origin), and another site's is
refused.
"""

from urllib.parse import urlsplit

from fastapi import HTTPException, Request, Response, status

from {{ cookiecutter.project_slug }}.api.keys import (
    SESSION_SECONDS,
    ApiKeys,
    require_loopback_unless_open,
)

COOKIE = "dashboard_session"
# Scripts, styles and requests only from the service itself; no frames, no plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def api_keys(request: Request) -> ApiKeys:
    keys: ApiKeys = request.app.state.api_keys
    return keys


async def require_sign_in(request: Request) -> None:
    """Send a browser without a valid session to the sign-in form."""
    keys = api_keys(request)
    if keys.open:
        require_loopback_unless_open(request)
    elif not keys.allow_session(request.cookies.get(COOKIE)):
        raise HTTPException(status.HTTP_303_SEE_OTHER, headers={"Location": "/dashboard/login"})


async def require_same_site(request: Request) -> None:
    """Refuse a POST that another site's page made the browser send."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        allowed = site in ("same-origin", "none")  # "none": typed or bookmarked
    else:
        origin = request.headers.get("origin")
        # No Origin at all: not a browser's cross-site request (curl, a script).
        allowed = origin is None or urlsplit(origin).netloc == request.headers.get("host")
    if not allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a cross-site request is refused")


def sign_in(request: Request, response: Response) -> None:
    response.set_cookie(
        COOKIE,
        api_keys(request).new_session(),
        max_age=SESSION_SECONDS,
        path="/dashboard",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def sign_out(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict")
