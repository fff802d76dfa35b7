"""Reading a W&B offline run file (`run-<id>.wandb`) in tests: its rows, run record and config, from the
records `draw_service.wandb_file` frames."""

import json
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

from draw_service.wandb_file import records


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
