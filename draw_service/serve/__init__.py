"""Serving: the HTTP schema (schema.py) and the Ray Serve deployment (app.py)."""
