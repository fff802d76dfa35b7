"""The model's configuration, with the paper's names (Gregor et al., 2015, section 2 and table 3)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class DRAWConfig:
    """Everything needed to rebuild a DRAW network; stored in every checkpoint.

    `height` is the paper's B (rows, the y axis), `width` its A (columns, the x axis).
    Defaults are the paper's binarised-MNIST model with attention (table 3).
    """

    height: int = 28
    width: int = 28
    channels: int = 1
    T: int = 64
    enc_size: int = 256
    dec_size: int = 256
    z_size: int = 100
    attention: bool = True
    read_n: int = 2
    write_n: int = 5

    def __post_init__(self) -> None:
        for name in ("height", "width", "channels", "T", "enc_size", "dec_size", "z_size", "read_n", "write_n"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"DRAWConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.attention, bool):
            raise ValueError(f"DRAWConfig.attention must be True or False, got {self.attention!r}")
        longest = max(self.height, self.width)
        if self.attention and (self.read_n > longest or self.write_n > longest):
            raise ValueError(
                f"attention patches read_n={self.read_n}, write_n={self.write_n} are larger than the "
                f"{self.height}x{self.width} image"
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def read_size(self) -> int:
        """Values the read operation hands the encoder per image: 2·C·N² with attention, 2·C·H·W without."""
        n2 = self.read_n**2 if self.attention else self.height * self.width
        return 2 * self.channels * n2

    @property
    def write_size(self) -> int:
        """Values the decoder emits per step to write: C·N² with attention (the patch), C·H·W without."""
        n2 = self.write_n**2 if self.attention else self.height * self.width
        return self.channels * n2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DRAWConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown DRAW model option(s) {unknown}; known options are {sorted(known)}")
        return cls(**d)
