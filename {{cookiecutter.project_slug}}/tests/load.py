"""Clients posting emails from threads until stopped, as a test's load; every answer is
kept. And the checks that follow a load: every email sent, nothing left to run."""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import httpx


@dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic() when it came
    status: int  # 0: no answer (connection refused or reset)
    retry_after: str | None
    email_id: str | None


class EmailLoad:
    """`clients` threads, each posting one email after another to the `urls` in turn."""

    def __init__(self, urls: list[str], clients: int = 4, requests: int = 100_000) -> None:
        self._urls = urls
        self._clients = clients
        self._left = requests
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self.answers: list[Answer] = []

    def __enter__(self) -> "EmailLoad":
        self._threads = [
            threading.Thread(target=self._post, args=(n,), daemon=True)
            for n in range(self._clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def done(self) -> bool:
        return not any(thread.is_alive() for thread in self._threads)

    def _take(self) -> bool:
        with self._lock:
            self._left -= 1
            return self._left >= 0

    def _post(self, client_number: int) -> None:
        with httpx.Client(timeout=30) as client:
            n = 0
            while not self._stopped.is_set() and self._take():
                url = self._urls[(client_number + n) % len(self._urls)]
                n += 1
                # A subject of its own: a test can count how often each one was sent.
                subject = f"Load {client_number}-{n}"
                email = {"to": "ada@example.com", "subject": subject, "body": "Hello."}
                try:
                    response = client.post(f"{url}/api/v1/emails", json=email)
                except httpx.TransportError:
                    self.answers.append(Answer(time.monotonic(), 0, None, None))
                    time.sleep(0.05)
                    continue
                accepted = response.status_code == 202
                self.answers.append(
                    Answer(
                        time.monotonic(),
                        response.status_code,
                        response.headers.get("Retry-After"),
                        response.json()["id"] if accepted else None,
                    )
                )
                if response.status_code == 503:
                    time.sleep(0.05)  # as a client honouring Retry-After would, briefly

    def accepted_since(self, moment: float) -> bool:
        return any(a.status == 202 and a.at > moment for a in list(self.answers))

    def accepted(self) -> list[str]:
        return [a.email_id for a in self.answers if a.email_id is not None]


def all_sent(url: str, accepted: list[str]) -> bool:
    """Every accepted email sent, and no job left queued or running."""
    with httpx.Client(base_url=url, timeout=10) as client:
        for status in ("queued", "running"):
            if client.get("/api/v1/jobs", params={"status": status}).json():
                return False
        return all(client.get(f"/api/v1/emails/{i}").json()["status"] == "sent" for i in accepted)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `condition` held; fails after `timeout`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what} not within {timeout} s"
        time.sleep(0.1)
    return time.monotonic() - started
