"""The local spool: settlements the store could not take (an outage) wait in a JSON-lines file of
this process and are replayed, in order, once the store answers again. The ledger loses nothing."""

from __future__ import annotations

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


class Spool:
    """One process's spool file, ``<directory>/spool-<pid>.jsonl``."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else Path(tempfile.gettempdir()) / "tokenguard-spool"
        self._lock = threading.Lock()
        self.pending = 0

    @property
    def path(self) -> Path:
        return self.directory / f"spool-{os.getpid()}.jsonl"

    def add(
        self, reservation_id: str | None, keys: Sequence[tuple[str, str]], cost_nano: int, record: CallRecord
    ) -> None:
        line = json.dumps(
            {
                "rid": reservation_id,
                "keys": [list(k) for k in keys],
                "cost_nano": cost_nano,
                "record": record.model_dump_json(),
            }
        )
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
            self.pending += 1

    def replay(self, settle: Settle) -> int:
        """Hand every spooled settlement to ``settle``, oldest first; stop at the first failure and
        keep what is left. Returns how many were replayed."""
        with self._lock:
            try:
                lines = self.path.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                self.pending = 0
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
                    self.path.write_text("".join(line + "\n" for line in rest), encoding="utf-8")
                else:
                    self.path.unlink(missing_ok=True)
                self.pending = len(rest)
            return done
