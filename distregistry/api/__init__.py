"""The HTTP API: the Klein app, its handlers, request bodies and responses."""
