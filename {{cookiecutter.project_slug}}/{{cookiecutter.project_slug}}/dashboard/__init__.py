"""The operators' dashboard at /dashboard: server-rendered pages of the jobs, their
executors and schedules, with Cancel and Retry. No build step and no CDN: the pages,
their stylesheet and their script are served from this package."""

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from {{ cookiecutter.project_slug }}.dashboard import pages


def add_dashboard(app: FastAPI) -> None:
    static = StaticFiles(directory=Path(__file__).with_name("static"))
    app.mount("/dashboard/static", static, name="dashboard-static")
    app.include_router(pages.sign_in)
    app.include_router(pages.router)
