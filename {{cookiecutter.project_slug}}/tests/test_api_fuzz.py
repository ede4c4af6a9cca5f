"""Schema-driven fuzzing: requests generated from the service's own OpenAPI schema, valid
and invalid, against the real service. None may get a 5xx."""

from pathlib import Path
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.generation.case import Case

from {{ cookiecutter.project_slug }}.settings import Settings
from tests.processes import start_service

EXAMPLES = 300


def test_no_generated_request_gets_a_server_error(settings: Settings, tmp_path: Path) -> None:
{%- if cookiecutter.job_backend == "rq" %}
    # With a worker: the jobs the requests make run, and /health/ready has one to find.
{%- endif %}
    with start_service(settings, tmp_path) as service:
        web = service[0]
        schema = schemathesis.openapi.from_url(f"{web.url}/openapi.json")
        requests = st.one_of(
            schema.as_strategy(GenerationMode.POSITIVE),
            schema.as_strategy(GenerationMode.NEGATIVE),
        )
        server_errors: list[str] = []

        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=requests)
        def answer(case: Case[Any]) -> None:
            response = case.call(base_url=web.url, timeout=30)
            if response.status_code >= 500:
                server_errors.append(f"{case.method} {case.formatted_path}: {response.text}")

        answer()
        logs = "".join(process.output() for process in service)
        assert not server_errors, "\n".join(server_errors[:10]) + f"\n\n{logs}"
