"""The local spool: settlements the store could not take (an outage) wait in a JSON-lines file and
are replayed, in order, once the store answers again, so the ledger loses nothing.

Each process has its own file per store (``spool-<pid>-<store>.jsonl``). A process that exits
during an outage leaves its file behind; the next process using the same store adopts it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from .records import CallRecord

__all__ = ["Spool"]

log = logging.getLogger("tokenguard")

Settle = Callable[[str | None, Sequence[tuple[str, str]], int, CallRecord], object]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    """The spool of one store (``store_id``, e.g. its URI) in ``directory``."""

    def __init__(self, directory: str | os.PathLike[str] | None, store_id: str) -> None:
        self.directory = Path(directory) if directory is not None else Path(tempfile.gettempdir()) / "tokenguard-spool"
        self._store = hashlib.sha256(store_id.encode()).hexdigest()[:12]
        self._lock = threading.Lock()
        self.pending = 1 if self._orphans() else 0

    @property
    def path(self) -> Path:
        return self.directory / f"spool-{os.getpid()}-{self._store}.jsonl"

    def _orphans(self) -> list[Path]:
        """Spool files of this store left by processes that no longer run."""
        found = []
        try:
            candidates = list(self.directory.glob(f"spool-*-{self._store}.jsonl"))
        except OSError:
            return []
        for path in candidates:
            pid = path.name.split("-")[1]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                found.append(path)
        return found

    def add(
        self, reservation_id: str | None, keys: Sequence[tuple[str, str]], cost_nano: int, record: CallRecord
    ) -> None:
        entry = {
            "rid": reservation_id,
            "keys": [list(k) for k in keys],
            "cost_nano": cost_nano,
            "record": record.model_dump_json(),
        }
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
            self.pending += 1

    def replay(self, settle: Settle) -> int:
        """Hand every spooled settlement (this process's, then orphans') to ``settle``, oldest first;
        stop at the first failure and keep what is left. Returns how many were replayed."""
        with self._lock:
            done = 0
            left = 0
            try:
                for path in [self.path, *self._orphans()]:
                    done += self._replay_file(path, settle)
            finally:
                left = sum(1 for p in [self.path, *self._orphans()] if p.exists())
                self.pending = left
            return done

    @staticmethod
    def _replay_file(path: Path, settle: Settle) -> int:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return 0
        done = 0
        try:
            for line in lines:
                entry = json.loads(line)
                settle(
                    entry["rid"],
                    [(k[0], k[1]) for k in entry["keys"]],
                    entry["cost_nano"],
                    CallRecord.model_validate_json(entry["record"]),
                )
                done += 1
        finally:
            rest = lines[done:]
            if rest:
                path.write_text("".join(line + "\n" for line in rest), encoding="utf-8")
            else:
                path.unlink(missing_ok=True)
        return done
