"""Procrastinate's app (`procrastinate --app=procrastinate_app.app worker`), on psycopg 3."""

import os

from procrastinate import App, PsycopgConnector

app = App(connector=PsycopgConnector(conninfo=os.environ["PEER_URL"]))


@app.task(name="noop", queue=os.environ["PEER_QUEUE"])
async def noop() -> None:
    return None
