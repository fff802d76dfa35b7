"""The model's architecture, with the paper's names (Gregor et al., 2015, section 2 and table 3).

The architecture says nothing of the images: their shape `(C, H, W)` comes from the data and is given
when the network is built (`DRAW(config, image_shape)`), so one architecture fits any dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..settings import Settings, option
from .likelihood import NAMES, canvas_channels

LIKELIHOODS = ("auto", *NAMES)
EIGHT_BIT = "logistic-mixture"  # what auto picks for 8-bit data: the best of the probes (README, "Colour")


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

    component = "DRAW model"

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
                             help="p(x | canvas): bernoulli (the paper's, for binary pixels); for 8-bit pixels, "
                                  "in bits/dim, a discretised logistic with a learned scale per sub-pixel "
                                  "(logistic), with the scale drawn on the canvas too (logistic-scale), or a "
                                  "mixture of --mixtures logistics with PixelCNN++'s colour coupling "
                                  "(logistic-mixture); auto picks bernoulli for binarised data and "
                                  f"{EIGHT_BIT} otherwise")
    mixtures: int = option(5, min=1, help="logistic-mixture: components K per pixel")

    def described(self) -> dict:
        """The settings that shape this network, for people (a card, /info): `mixtures` only for a mixture,
        the patch sizes only with attention."""
        unused = ({"mixtures"} if self.likelihood != "logistic-mixture" else set()) | \
                 (set() if self.attention else {"read_n", "write_n"})
        return {k: v for k, v in self.to_dict().items() if k not in unused}

    def for_data(self, binarized: bool) -> DRAWConfig:
        """The architecture with `likelihood` settled for the data: what a checkpoint records."""
        if self.likelihood != "auto":
            return self
        return self.replace(likelihood="bernoulli" if binarized else EIGHT_BIT)

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

    def canvas_channels(self, shape: tuple[int, int, int]) -> int:
        """Channels P of the canvas c_t: what the likelihood needs per pixel (C for bernoulli and logistic)."""
        if self.likelihood == "auto":
            raise ValueError("the canvas depends on the likelihood: settle 'auto' for the data with for_data")
        return canvas_channels(self.likelihood, ImageShape(*shape).channels, self.mixtures)

    def write_size(self, shape: tuple[int, int, int]) -> int:
        """Values the decoder emits per step to write: P·N² with attention (the patch), P·H·W without, for
        the P canvas channels."""
        shape = ImageShape(*shape)
        n2 = self.write_n**2 if self.attention else shape.height * shape.width
        return self.canvas_channels(shape) * n2
