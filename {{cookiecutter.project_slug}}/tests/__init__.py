"""The service's tests, run against real servers."""
