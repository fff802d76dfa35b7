"""The DRAW model: pure PyTorch, knows nothing of data formats, Ray or storage."""

from .config import DRAWConfig
from .draw import DRAW, DrawingRecord, DRAWOutput
from .filterbank import Window

__all__ = ["DRAW", "DRAWConfig", "DRAWOutput", "DrawingRecord", "Window"]
