"""The DRAW model: pure PyTorch, knows nothing of data formats, Ray or storage."""

from .config import DRAWConfig, ImageShape
from .draw import DRAW, DrawingRecord, DRAWOutput
from .filterbank import Window

__all__ = ["DRAW", "DRAWConfig", "DRAWOutput", "DrawingRecord", "ImageShape", "Window"]
