"""Reading a W&B offline run file (`run-<id>.wandb`) in tests.

The file is a LevelDB-style log (a 7-byte `:W&B` header, then 32 KiB blocks of CRC-framed chunks) of
protobuf `Record`s; wandb parses it in its Go core, so the tests frame it here and let wandb's own
protobuf classes decode each record.
"""

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            yield _record(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield _record(pending + chunk)
        elif kind == 0 and length == 0:  # zero padding up to the block's end
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0


def _record(data: bytes) -> pb.Record:
    r = pb.Record()
    r.ParseFromString(data)
    return r


def history(path: Path) -> list[dict]:
    """Every logged row: {"_step": n, key: value, ...} with values decoded from JSON."""
    rows = []
    for r in records(path):
        if r.WhichOneof("record_type") == "history":
            row = {"_step": r.history.step.num}
            for item in r.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            rows.append(row)
    return rows


def run_info(path: Path) -> pb.RunRecord:
    for r in records(path):
        if r.WhichOneof("record_type") == "run":
            return r.run
    raise AssertionError(f"{path} holds no run record")


def config(path: Path) -> dict:
    """The run's config (logged with the run record, and in later config records)."""
    out = {}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        updates = r.run.config.update if kind == "run" else r.config.update if kind == "config" else []
        for item in updates:
            out[item.key] = json.loads(item.value_json)
    return out
