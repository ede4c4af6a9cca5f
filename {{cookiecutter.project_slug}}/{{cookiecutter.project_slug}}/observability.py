"""Logs: a readable line per event, or one JSON object per line for log collectors.

Every line carries the context bound where it was written: `request_id` inside a request,
`job_id`, `job_name` and `attempt` inside a job. Code logs with the standard `logging`
module; structlog only formats, so lines from uvicorn{% if cookiecutter.job_backend == "rq" %}, RQ{% elif cookiecutter.job_backend == "celery" %}, Celery{% endif %} and other libraries match.
"""

import logging
import re
import sys
import time
import uuid
from typing import Literal

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bound_contextvars, merge_contextvars

from {{ cookiecutter.project_slug }} import metrics

access_logger = logging.getLogger("{{ cookiecutter.project_slug }}.access")

REQUEST_ID_HEADER = "X-Request-ID"
# A client's request id is kept when it is short and plain; anything else could forge log lines.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def configure_logging(
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"], log_format: Literal["console", "json"]
) -> None:
    shared: list[structlog.typing.Processor] = [
        merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]
    renderer: list[structlog.typing.Processor]
    if log_format == "json":
        renderer = [
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(),
        ]
    else:
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(),
                timestamp_key="time",
                # Not a rich traceback, which would show local variables: secrets among them.
                exception_formatter=structlog.dev.plain_traceback,
            )
        ]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    # Replace any earlier handlers (a previous call's) so each line is written once.
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # uvicorn installs its own handlers: send its lines through this one instead. Its
    # access line is replaced by RequestContext's, which carries the request id.
    uvicorn = logging.getLogger("uvicorn")
    uvicorn.handlers.clear()
    uvicorn.propagate = True
    logging.getLogger("uvicorn.access").disabled = True


class RequestContext:
    """Gives each request an id (the client's `X-Request-ID`, or a new one) that every log
    line of the request carries and the response returns; writes one access line and
    counts the request in the metrics, by route template rather than raw path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = given if VALID_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        # Unless a response starts, the app failed: the server answers 500.
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        started = time.perf_counter()
        with bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                # The router leaves the matched route in the scope; unmatched paths are
                # counted together, so scanners cannot grow the metrics without bound.
                route = getattr(scope.get("route"), "path", "unmatched")
                metrics.observe_request(scope["method"], route, status, seconds)
                access_logger.info(
                    "%s %s %d %.1f ms", scope["method"], scope["path"], status, seconds * 1000
                )
