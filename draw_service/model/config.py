"""The model's architecture, with the paper's names (Gregor et al., 2015, section 2 and table 3).

The architecture says nothing of the images: their shape `(C, H, W)` comes from the data and is given
when the network is built (`DRAW(config, image_shape)`), so one architecture fits any dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..settings import Settings, option

LIKELIHOODS = ("auto", "bernoulli", "logistic")


class ImageShape(NamedTuple):
    """`(C, H, W)`: the paper's B is H (rows, the y axis), its A is W (columns, the x axis)."""

    channels: int
    height: int
    width: int



@dataclass(frozen=True)
class DRAWConfig(Settings):
    """Everything that defines a DRAW network but the image shape; stored in every checkpoint.

    Defaults are the paper's binarised-MNIST model with attention (table 3).
    """

    what = "DRAW model"

    T: int = option(64, min=1, help="drawing steps")
    enc_size: int = option(256, min=1, help="encoder LSTM units")
    dec_size: int = option(256, min=1, help="decoder LSTM units")
    z_size: int = option(100, min=1, help="latent size per step")
    attention: bool = option(True, help="Gaussian attention read and write (--no-attention: read and write whole "
                                        "images)")
    read_n: int = option(2, min=1, help="read patch N×N (attention)")
    write_n: int = option(5, min=1, help="write patch N×N (attention)")
    # The network's own default is the paper's; a training run's is "auto" (train/config.py), settled by the data.
    likelihood: str = option("bernoulli", choices=LIKELIHOODS,
                             help="p(x | canvas): bernoulli (the paper's, for binary pixels) or logistic (a "
                                  "discretised logistic per 8-bit sub-pixel, for real likelihoods in bits/dim); "
                                  "auto picks bernoulli for binarised data and logistic otherwise")

    def for_data(self, binarized: bool) -> DRAWConfig:
        """The architecture with `likelihood` settled for the data: what a checkpoint records."""
        if self.likelihood != "auto":
            return self
        return self.replace(likelihood="bernoulli" if binarized else "logistic")

    def check_fits(self, shape: tuple[int, int, int]) -> None:
        """Attention patches must fit the image `(C, H, W)` they read and write."""
        shape = ImageShape(*shape)
        longest = max(shape.height, shape.width)
        if self.attention and (self.read_n > longest or self.write_n > longest):
            raise ValueError(f"attention patches read_n={self.read_n}, write_n={self.write_n} are larger than the "
                             f"{shape.height}x{shape.width} image")

    def read_size(self, shape: tuple[int, int, int]) -> int:
        """Values the read operation hands the encoder per image: 2·C·N² with attention, 2·C·H·W without."""
        shape = ImageShape(*shape)
        n2 = self.read_n**2 if self.attention else shape.height * shape.width
        return 2 * shape.channels * n2

    def write_size(self, shape: tuple[int, int, int]) -> int:
        """Values the decoder emits per step to write: C·N² with attention (the patch), C·H·W without."""
        shape = ImageShape(*shape)
        n2 = self.write_n**2 if self.attention else shape.height * shape.width
        return shape.channels * n2
