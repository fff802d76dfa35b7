"""Reading W&B's transaction log (`run-<id>.wandb`): the records a run has put on disk so far.

W&B writes a run's records there from its own process, a moment after `run.log` returns and later still on a
busy machine. A run that may be killed next (a search trial that ASHA stops at its first rung) must know its
report is in the file before it copies the file into storage, and a finished run that its end is;
`tracking.py` waits for `history_steps` and `ended`.

The file is a LevelDB-style log: a 7-byte `:W&B` header, then 32 KiB blocks of CRC-framed chunks, each a
protobuf `Record` or a piece of one. wandb parses it in its Go core, so it is framed here and wandb's own
protobuf classes decode each record. A file still being written ends in a partial chunk: reading stops there.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
HEADER = 7  # each chunk's: crc32 (4), length (2), kind (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[pb.Record]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, pending = 7, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:  # zero padding up to the block's end (or bytes not yet written)
            pos += BLOCK - pos % BLOCK
            continue
        if pos + HEADER + length > len(data):
            return  # the chunk W&B is writing now
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield _record(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield _record(pending + chunk)


def _record(data: bytes) -> pb.Record:
    r = pb.Record()
    r.ParseFromString(data)
    return r


def history_steps(path: Path) -> set[int]:
    """The steps of the history rows (`run.log` commits) already in the file; none while it does not exist."""
    try:
        return {r.history.step.num for r in records(path) if r.WhichOneof("record_type") == "history"}
    except FileNotFoundError:
        return set()


def ended(path: Path) -> bool:
    """Whether the run's exit record, which `run.finish()` writes after the run's last rows and summary, is
    in the file."""
    try:
        return any(r.WhichOneof("record_type") == "exit" for r in records(path))
    except FileNotFoundError:
        return False


def wait_until(path: Path, written: Callable[[Path], bool], timeout_s: float, every_s: float = 0.1) -> bool:
    """Poll `written(path)` until true (True) or `timeout_s` has passed (False)."""
    deadline = time.monotonic() + timeout_s
    while not written(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(every_s)
    return True
