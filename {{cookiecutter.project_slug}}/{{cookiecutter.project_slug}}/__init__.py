"""The service package: settings, database, job layer and HTTP routes."""
