"""The job layer: the backend that executes background work."""
