"""The HTTP routes."""

# Every versioned route carries it in its own path: metrics label requests by that path.
API_PREFIX = "/api/v1"
