"""draw-service: DRAW (Gregor et al., 2015) trained, searched and served on Ray."""

__version__ = "0.1.0"
