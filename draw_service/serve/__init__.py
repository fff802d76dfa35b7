"""Serving: the HTTP schema (schema.py), the routes (routes.py) and the Ray Serve deployment (app.py)."""
