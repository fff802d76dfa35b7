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


def lifetime(path: Path) -> tuple[str, float, float]:
    """(the run's name, when it started, its last row's time), in seconds since the epoch, as W&B recorded
    them where the run ran."""
    info = run_info(path)
    return (info.display_name, info.start_time.seconds + info.start_time.nanos / 1e9,
            max(row["_timestamp"] for row in history(path)))


def most_at_once(lives: list[tuple[float, float]]) -> int:
    """The most intervals (start, end) that were open at one moment."""
    events = sorted([(start, 1) for start, _ in lives] + [(end, -1) for _, end in lives], key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, change in events:
        now += change
        most = max(most, now)
    return most
