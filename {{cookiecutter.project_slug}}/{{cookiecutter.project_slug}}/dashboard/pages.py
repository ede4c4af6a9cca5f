"""The dashboard's pages. Each is one server-rendered template; the parts of a page
marked `data-live` are fetched again every few seconds by static/dashboard.js."""

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from {{ cookiecutter.project_slug }}.api.deps import JobControlDep, SessionDep
from {{ cookiecutter.project_slug }}.api.fields import MAX_OFFSET, NO_NUL
from {{ cookiecutter.project_slug }}.dashboard import access
from {{ cookiecutter.project_slug }}.jobs import reads
from {{ cookiecutter.project_slug }}.jobs.errors import JobStateConflict
from {{ cookiecutter.project_slug }}.jobs.registry import TASKS, schedules
from {{ cookiecutter.project_slug }}.models import JobStatus
from {{ cookiecutter.project_slug }}.settings import Settings

PAGE_SIZE = 50

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
# The sign-in form and sign-out; every other page asks for a signed-in browser.
sign_in = APIRouter(prefix="/dashboard", include_in_schema=False)
router = APIRouter(
    prefix="/dashboard", include_in_schema=False, dependencies=[Depends(access.require_sign_in)]
)
same_site = [Depends(access.require_same_site)]


def when(moment: datetime | None) -> str:
    return "—" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def age(seconds: float) -> str:
    """A duration in its two largest units: `3 min 4 s`."""
    if seconds < 1:
        return f"{seconds:.2f} s"
    whole, parts = int(seconds), list[str]()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if whole >= size or parts:
            parts.append(f"{whole // size} {unit}")
            whole %= size
    return " ".join(parts[:2])


# Lines holding only a tag leave nothing behind.
templates.env.trim_blocks = templates.env.lstrip_blocks = True
templates.env.filters["when"] = when
templates.env.filters["age"] = age


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = status.HTTP_200_OK
) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    open_ = access.api_keys(request).open
    context = {
        "open": open_,
        "open_to_all": open_ and settings.allow_open_api,
        "refresh_ms": round(settings.dashboard_refresh_seconds * 1000),
        **context,
    }
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=access.SECURITY_HEADERS
    )


def back_to(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=status.HTTP_303_SEE_OTHER)


@sign_in.get("/login")
async def login_form(request: Request) -> Response:
    if access.api_keys(request).open:
        return back_to("/dashboard")
    return render(request, "login.html", {})


@sign_in.post("/login", dependencies=same_site)
async def login(request: Request, key: Annotated[str, Form(max_length=1000)]) -> Response:
    if not access.api_keys(request).allow(key):
        context = {"refused": True}
        return render(request, "login.html", context, status.HTTP_401_UNAUTHORIZED)
    response = back_to("/dashboard")
    access.sign_in(request, response)
    return response


@sign_in.post("/logout", dependencies=same_site)
async def logout() -> Response:
    response = back_to("/dashboard/login")
    access.sign_out(response)
    return response


@dataclass(frozen=True)
class Bar:
    """One minute of the throughput chart: succeeded below, failed stacked on top."""

    x: int
    succeeded: int
    failed: int
    succeeded_height: float
    failed_height: float


CHART_HEIGHT = 100


def chart(per_minute: list[tuple[int, int]]) -> list[Bar]:
    scale = CHART_HEIGHT / max(1, *(ok + bad for ok, bad in per_minute))
    return [
        Bar(10 * minute, ok, bad, ok * scale, bad * scale)
        for minute, (ok, bad) in enumerate(per_minute)
    ]


@router.get("")
async def overview(request: Request, session: SessionDep) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    seen = await reads.overview(session, settings.job_lease_seconds)
    by_status = dict.fromkeys(JobStatus, 0)
    by_task: dict[str, dict[JobStatus, int]] = {}
    for (name, job_status), count in sorted(seen.counts.items()):
        by_status[job_status] += count
        by_task.setdefault(name, dict.fromkeys(JobStatus, 0))[job_status] = count
    context = {
        "seen": seen,
        "by_status": by_status,
        "by_task": by_task,
        "bars": chart(seen.per_minute),
        "chart_height": CHART_HEIGHT,
        "failed_last_hour": sum(bad for _, bad in seen.per_minute),
    }
    return render(request, "overview.html", context)


@router.get("/jobs")
async def jobs(
    request: Request,
    session: SessionDep,
    status: JobStatus | Literal[""] = "",
    name: Annotated[str, Query(max_length=100, pattern=NO_NUL)] = "",
    page: Annotated[int, Query(ge=1, le=MAX_OFFSET // PAGE_SIZE + 1)] = 1,
) -> HTMLResponse:
    """Jobs newest first, a page at a time: one more row than shown tells of a next page."""
    rows = await reads.page(
        session,
        status=status or None,
        name=name or None,
        limit=PAGE_SIZE + 1,
        offset=(page - 1) * PAGE_SIZE,
    )

    def page_url(number: int) -> str:
        query = {"status": status, "name": name, "page": number if number > 1 else None}
        return "/dashboard/jobs?" + urlencode({k: v for k, v in query.items() if v})

    context = {
        "jobs": rows[:PAGE_SIZE],
        "statuses": list(JobStatus),
        "tasks": sorted(TASKS),
        "status": status,
        "name": name,
        "page": page,
        "previous_url": page_url(page - 1) if page > 1 else None,
        "next_url": page_url(page + 1) if len(rows) > PAGE_SIZE else None,
    }
    return render(request, "jobs.html", context)


@router.get("/jobs/{job_id}")
async def job(request: Request, job_id: uuid.UUID, control: JobControlDep) -> HTMLResponse:
    found = await control.get(job_id)
    return render(request, "job.html", {"job": found, "JobStatus": JobStatus})


@router.post("/jobs/{job_id}/cancel", dependencies=same_site)
async def cancel(job_id: uuid.UUID, control: JobControlDep) -> Response:
    # Finished meanwhile: the job's page shows how.
    with contextlib.suppress(JobStateConflict):
        await control.cancel(job_id)
    return back_to(f"/dashboard/jobs/{job_id}")


@router.post("/jobs/{job_id}/retry", dependencies=same_site)
async def retry(job_id: uuid.UUID, control: JobControlDep) -> Response:
    with contextlib.suppress(JobStateConflict):
        await control.retry(job_id)
    return back_to(f"/dashboard/jobs/{job_id}")


@router.get("/schedules")
async def schedule_list(request: Request, session: SessionDep) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    states = await reads.schedule_states(session, schedules(settings))
    return render(request, "schedules.html", {"states": states})
