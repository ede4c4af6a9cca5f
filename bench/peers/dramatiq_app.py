"""Dramatiq's broker and actor (`dramatiq dramatiq_app`): Redis, results in Redis."""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

# Dramatiq's constructors carry no annotations.
broker = RedisBroker(url=os.environ["PEER_URL"])  # type: ignore[no-untyped-call]
backend = RedisBackend(url=os.environ["PEER_URL"])  # type: ignore[no-untyped-call]
broker.add_middleware(Results(backend=backend))  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop", queue_name=os.environ["PEER_QUEUE"], store_results=True)
def noop() -> None:
    return None
