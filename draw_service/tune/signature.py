"""A search's state is resumed only if this product wrote it: an HMAC over each of Tune's state files.

Ray Tune resumes a search by unpickling the files it left in the search's folder (`tuner.pkl`, the
experiment state, the searcher's state): whoever can write that folder could run code on the driver that
resumes it. So every such file is signed when Tune writes it (`Signer`, a Tune callback whose `get_state`
Tune calls after writing its state and before uploading it), into `<search>/draw-state.sig`, and a resume
checks every top-level file of the folder against it before Ray reads any (`verify`).

The key is `DRAW_STATE_KEY` (keep it beside the storage credentials, in the same Secret), else a random
key made once per user in `~/.config/draw-service/state.key`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from .. import storage
from ..errors import UserError
from ..run_dir import RunDir

SIGNATURES = "draw-state.sig"
TUNER_STATE = "tuner.pkl"  # what Tuner(...) writes straight into the search's folder
# Files of the folder Tune never reads: best.json is plain JSON, and Ray only checks that its storage marker
# exists (an empty file it writes when a search starts, straight to storage, and leaves there).
NOT_STATE = {SIGNATURES, "best.json", ".validate_storage_marker"}
KEY_ENV = "DRAW_STATE_KEY"
KEY_FILE = Path("~/.config/draw-service/state.key")


class StateError(UserError):
    """Search state this product did not write (or not with this key)."""


def state_key() -> bytes:
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode()
    path = KEY_FILE.expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _mac(key: bytes, name: str, data: bytes) -> str:
    return hmac.new(key, name.encode() + b"\0" + data, hashlib.sha256).hexdigest()


KEPT = 3  # signatures kept per file: Tune uploads a file after it is signed, so the one before stays good


def _read_signatures(search: RunDir) -> dict[str, list[str]]:
    try:
        signed = json.loads(storage.read_bytes(search.loc.join(SIGNATURES)))
    except (FileNotFoundError, ValueError):
        return {}
    return signed if isinstance(signed, dict) else {}


def state_files(search: RunDir) -> list[str]:
    """The top-level files of the search's folder that Tune may read on a resume."""
    loc = search.loc
    return sorted(name for name in storage.list_dir(loc) if name not in NOT_STATE
                  and not storage.is_dir(loc.join(name)))


def sign(search: RunDir, files: dict[str, bytes], key: bytes | None = None) -> None:
    """Add the signatures of `files` (name → contents) to the search's signature file."""
    key = key or state_key()
    signed = _read_signatures(search)
    for name, data in files.items():
        macs = [m for m in signed.get(name, []) if isinstance(m, str)]
        signed[name] = [*macs, _mac(key, name, data)][-KEPT:]
    storage.write_bytes(search.loc.join(SIGNATURES), json.dumps(signed, indent=1, sort_keys=True).encode())


def sign_stored(search: RunDir, names: list[str]) -> None:
    """Sign files as they are now in the search's folder (tuner.pkl, which Tune writes there directly)."""
    sign(search, {name: storage.read_bytes(search.loc.join(name)) for name in names})


def verify(search: RunDir) -> None:
    """Refuse, in one line, a search folder holding a state file that is not signed with this key."""
    key = state_key()
    signed = _read_signatures(search)
    for name in state_files(search):
        data = storage.read_bytes(search.loc.join(name))
        mac = _mac(key, name, data)
        if not any(hmac.compare_digest(str(m), mac) for m in signed.get(name, [])):
            why = "is not signed" if name not in signed else "does not match its signature"
            raise StateError(f"refusing to resume the search {search.uri}: its state file {name} {why} (written by "
                             f"someone else, changed since, or signed with another {KEY_ENV}); Ray would unpickle "
                             f"it and run what it holds. Move the folder away to start afresh")


def make_signer(search: RunDir) -> Any:
    """A Tune callback that signs each state file Tune writes into its driver staging folder (uploaded
    from there to the search's folder), at the moment Tune saves its state. It holds no key: Tune pickles
    its callbacks into tuner.pkl."""
    from ray.tune import Callback

    class Signer(Callback):
        def __init__(self, search_uri: str):
            self.search_uri = search_uri
            self.signed: dict[str, str] = {}
            self.staging: str | None = None

        def on_step_begin(self, iteration, trials, **info):
            # Tune's staging folder has a timestamp in its name; every trial's storage context knows it. (Tune
            # has no hook for a trial's creation; its loop's step comes before every save.)
            if self.staging is None and trials:
                self.staging = trials[0].storage.experiment_driver_staging_path

        def get_state(self) -> None:
            # Called while Tune saves: after it wrote the experiment and searcher state into the staging
            # folder, before it uploads them.
            folder = Path(self.staging) if self.staging else None
            if folder is None or not folder.is_dir():
                return None
            key = state_key()
            files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name not in NOT_STATE}
            fresh = {n: d for n, d in files.items() if self.signed.get(n) != _mac(key, n, d)}
            if fresh:
                sign(RunDir(self.search_uri), fresh, key)
                self.signed.update({n: _mac(key, n, d) for n, d in fresh.items()})
            return None  # nothing of its own to save: Tune then writes no callback-state pickle

    # A class made here (ray.tune is imported only when a search runs) is pickled by value into tuner.pkl,
    # so a new process resuming the search unpickles it without having made it first.
    return Signer(search.uri)
