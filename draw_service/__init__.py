"""draw-service: DRAW (Gregor et al., 2015) trained, searched and served on Ray."""

import os

# PyTorch's CPU allocator puts tensors of 2 MB and more on transparent huge pages when this is set (read once,
# at torch's first allocation, so here, before any module of ours imports torch). A step of the colour model
# allocates hundreds of MB of canvas-sized tensors afresh; on 4 kB pages their page faults cost more than the
# arithmetic (docs/speed.md, "bf16 on CPUs"). Set THP_MEM_ALLOC_ENABLE=0 to turn it off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
