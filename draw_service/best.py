"""A search's best record: `<search>/best.json`, written when a search ends and read by Serve and the CLI.

It names the best trial's checkpoint and what it scored, with the trial's hyperparameters and the model,
so a server can load the best model without knowing anything about searches.
"""

from __future__ import annotations

import json
from typing import Any

from . import storage

FILENAME = "best.json"


def location(uri: str) -> storage.Location:
    """A best record by its own URI, or by its search's folder."""
    loc = storage.resolve(uri)
    return loc if loc.path.endswith(".json") else loc.join(FILENAME)


def write(search_uri: str, record: dict[str, Any]) -> str:
    loc = location(search_uri)
    storage.write_bytes(loc, json.dumps(record, indent=2).encode())
    return loc.uri


def read(uri: str) -> dict[str, Any]:
    loc = location(uri)
    try:
        record = json.loads(storage.read_bytes(loc))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"no best record at {loc.uri}: has the search finished?") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{loc.uri} is not a best record (not JSON: {err})") from err
    if not isinstance(record, dict) or not isinstance(record.get("checkpoint"), str):
        raise ValueError(f"{loc.uri} is not a best record: it names no checkpoint")
    return record
