"""The service's tasks. Importing this package registers every one of them."""

from {{ cookiecutter.project_slug }}.tasks import emails

__all__ = ["emails"]
