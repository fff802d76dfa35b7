"""A finished search, summarised: one row per trial, the trial table, and the best record.

Plain data in, plain data out: the Ray driver (`search.py`) hands over each trial as a `TrialOutcome`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

# Bits per sub-pixel: the literature's measure, comparable across image sizes (and, within one dataset,
# the same ranking as nats).
METRIC, MODE = "bits_per_dim", "min"
HYPERPARAMETERS = ("read_n", "write_n", "z_size", "hidden", "T", "lr")


@dataclass
class TrialOutcome:
    trial_id: str
    params: dict[str, Any]  # the trial's hyperparameters
    reports: int  # evaluations it reported
    last: dict[str, Any]  # its last report
    error: str | None = None
    # Every report that came with a checkpoint: its metrics and the checkpoint's URI.
    checkpoints: list[tuple[dict[str, Any], str]] = field(default_factory=list)


def summarise(trials: list[TrialOutcome], max_reports: int, search_uri: str,
              dataset: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One row per trial, and the best record (the lowest validation bound any trial reported)."""
    rows, best = [], None
    for t in trials:
        status = "error" if t.error else ("completed" if t.reports >= max_reports else "stopped early")
        row = {"trial": t.trial_id, **{k: t.params.get(k) for k in HYPERPARAMETERS[:-1]},
               "lr": float(t.params.get("lr", float("nan"))), "reports": t.reports,
               "nll_bound": t.last.get("nll_bound"), "bits_per_dim": t.last.get("bits_per_dim"), "status": status}
        if t.error:
            row["error"] = cause(t.error)
        rows.append(row)
        for metrics, uri in t.checkpoints:
            value = metrics.get(METRIC)
            if value is None or (best is not None and value >= best["value"]):
                continue
            best = {"search": search_uri, "trial_id": t.trial_id, "metric": METRIC, "mode": MODE,
                    "value": float(value), "nll_bound": metrics.get("nll_bound"),
                    "bits_per_dim": metrics.get("bits_per_dim"), "eval_split": "validation",
                    "step": int(metrics.get("step", 0)), "checkpoint": uri,
                    "hyperparameters": {k: t.params[k] for k in HYPERPARAMETERS if k in t.params},
                    "dataset": dataset}
    if best is not None:
        best.update({"trials": len(rows), "stopped_early": sum(r["status"] == "stopped early" for r in rows),
                     "errors": sum(r["status"] == "error" for r in rows),
                     "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    return rows, best


def cause(error: str) -> str:
    """The line of a trial's error that says what went wrong: Ray wraps it in tracebacks, and the exception
    itself (`ValueError: attention patches ... are larger than the 32x32 image`) comes last."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "failed"


def format_table(rows: list[dict[str, Any]]) -> str:
    cols = ["trial", "read_n", "write_n", "z_size", "hidden", "T", "lr", "reports", "nll_bound", "bits_per_dim",
            "status"]

    def cell(row: dict[str, Any], c: str) -> str:
        v = row.get(c)
        if v is None:
            return ""
        if c == "lr":
            return f"{v:.3g}"  # 1e-07 stays 1e-07, not 0.0
        return f"{v:.2f}" if c == "nll_bound" else f"{v:.4f}" if c == "bits_per_dim" else str(v)

    ordered = sorted(rows, key=lambda r: (r[METRIC] is None, r[METRIC] or 0))
    cells = [[cell(r, c) for c in cols] for r in ordered]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths))  # noqa: E731
    failed = [f"trial {r['trial']} failed: {r['error']}" for r in rows if r.get("error")]
    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(r) for r in cells), *failed])
