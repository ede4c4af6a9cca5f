"""`python -m {{ cookiecutter.project_slug }}`: the operator's command line (`cli.py`)."""

from {{ cookiecutter.project_slug }}.cli import app

app(prog_name="python -m {{ cookiecutter.project_slug }}")
