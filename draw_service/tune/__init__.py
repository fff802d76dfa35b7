"""Hyperparameter search: the space (space.py) and the Ray Tune driver (search.py)."""
