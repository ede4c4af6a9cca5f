"""What the job layer refuses, each answered with its own HTTP status."""


class JobsUnavailable(Exception):
    """No new jobs are taken now (shutting down, or the queue is full): answer 503."""

    def __init__(self, reason: str, retry_after_seconds: int = 5) -> None:
        super().__init__(reason)
        self.retry_after_seconds = retry_after_seconds


class JobNotFound(Exception):
    """No job has this id: answer 404."""


class JobStateConflict(Exception):
    """The job's status does not allow this (e.g. cancelling a finished job): answer 409."""
