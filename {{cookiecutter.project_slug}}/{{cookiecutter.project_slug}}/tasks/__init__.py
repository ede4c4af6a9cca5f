"""The service's tasks. Importing this package registers every one of them."""

from {{ cookiecutter.project_slug }}.tasks import batches, cleanup, documents, emails, reports

__all__ = ["batches", "cleanup", "documents", "emails", "reports"]
