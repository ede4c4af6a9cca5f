"""Logging: a readable line per event, or one JSON object per line for log collectors."""

import logging
import sys
from typing import Literal

from pythonjsonlogger.json import JsonFormatter


def configure_logging(
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"], log_format: Literal["console", "json"]
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    # Replace any earlier handlers (uvicorn's, a previous call's) so each line is written once.
    logging.basicConfig(level=level, handlers=[handler], force=True)
