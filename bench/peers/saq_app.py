"""SAQ's worker settings (`saq saq_app.settings`), on Redis or PostgreSQL per PEER_URL."""

import os

from saq import Queue
from saq.types import Context, SettingsDict


async def noop(ctx: Context) -> None:
    return None


settings: SettingsDict[Context] = {
    "queue": Queue.from_url(os.environ["PEER_URL"], name=os.environ["PEER_QUEUE"]),
    "functions": [noop],
    "concurrency": int(os.environ["PEER_CONCURRENCY"]),
}
