"""The service's tasks. Importing this package registers every one of them."""

from {{ cookiecutter.project_slug }}.tasks import documents, emails

__all__ = ["documents", "emails"]
