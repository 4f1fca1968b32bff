"""The aggregator's journal of accepted reports: one JSON line each, durable (fsync'd) before the report's 202, and
replayed on start, so that a restart loses nothing that was accepted.

Group commit, as databases do it: appends that arrive while a write is under way queue up, and the next writer takes
them all, with one write and one fsync for the lot (an fsync here costs 0.6-0.8 ms idle, more under load; one per
report held the aggregator at about half its rate without a journal). No thread of its own: the first appender that
finds no writer becomes it (leader and followers), and runs each entry's `then` in journal order once its line is
durable, so what the live aggregator folds in is what a replay folds in, in the same order.

Compaction keeps the replay short and the file bounded: once `compact_after` lines follow the head, the next
writer (once the batch before it folded in, so that the state is exactly what the file holds) writes the state it
was given as a new file of one head line, fsyncs it, renames it over the journal and fsyncs the folder. A crash at
any point leaves either the old journal or the new one whole. At 1,000 nodes reporting every 10 s an hour is
360,000 reports; the compacted journal holds one state and at most `compact_after` reports.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger("netaware.aggregator")
HEAD = "head"
"""The key of the compacted head line (a report has no such field: the schema allows none beyond its own)."""


class JournalError(OSError):
    """The journal could not make a report durable; the report was not accepted."""


@dataclass
class _Entry:
    line: str
    then: Callable[[], None] | None
    woken: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    error: OSError | None = None
    """Why the line could not be made durable."""
    failure: Exception | None = None
    """What `then` raised (the line is durable; the appender sees the exception, the batch carries on)."""


class ReportJournal:
    """Append-only JSON lines, group-committed. `max_batch` bounds the lines one fsync makes durable (1 is the plain
    fsync-per-report journal, kept to compare against)."""

    def __init__(self, path: Path, *, max_batch: int = 1024, compact_after: int = 20_000) -> None:
        if max_batch < 1 or compact_after < 1:
            raise ValueError(f"max_batch and compact_after must be 1 or more, not {max_batch} and {compact_after}")
        self.path = path
        self.max_batch = max_batch
        self.compact_after = compact_after
        self.commits = 0
        """fsyncs so far (each made one batch durable)."""
        self.lines = 0
        self.compactions = 0
        self._tail = 0
        """Lines after the head."""
        self._state: Callable[[], Any] | None = None
        self._tail_checked = False
        self._queue: list[_Entry] = []
        self._writing = False
        """Whether some appender holds the writer's role."""
        self._mutex = threading.Lock()
        self._folding = threading.Lock()
        """Held while a batch folds in; taken by its writer before the next writer may start."""
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, data: Any, *, then: Callable[[], None] | None = None, encoded: str | None = None) -> None:
        """Return once `data`'s line is durable, after `then` ran (in journal order); JournalError if the line could
        not be written, in which case `then` never runs and nothing of it stays in the file. `encoded`: `data` as
        the JSON text it was parsed from, written as it is when it fits on one line (encoding it again would cost a
        quarter of a millisecond for a report of 50 peers)."""
        if encoded is None or "\n" in encoded or "\r" in encoded:
            encoded = json.dumps(data, separators=(",", ":"))
        entry = _Entry(encoded + "\n", then)
        with self._mutex:
            self._queue.append(entry)
            leading = not self._writing
            self._writing = True
        if not leading:
            entry.woken.wait()  # done, or handed the writer's role
        if not entry.done:
            self._lead()
        if entry.error is not None:
            raise JournalError(entry.error.errno, f"the journal {self.path} could not be written: {entry.error}")
        if entry.failure is not None:
            raise entry.failure

    def _lead(self) -> None:
        """A writer's turn: write and fsync the queue (up to `max_batch`, this writer's entry first), hand the
        writer's role to the first entry still queued, then fold the batch in. One batch's folds overlap the next
        one's write and still run in journal order: a writer takes the fold lock before it hands its role on.
        Each waiter is woken alone, when its entry is done or the role is its own (a condition that woke every
        waiter for every batch cost a fifth of the throughput in wake-ups alone)."""
        with self._mutex:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        folding = durable = False
        try:
            if self._state is not None and self._tail >= self.compact_after:
                with self._folding:  # the previous batch folded in: the state is exactly what the file holds
                    self._compact(self._state)
            durable = self._write(batch)
            self._folding.acquire()
            folding = True
        finally:
            with self._mutex:
                successor = self._queue[0] if self._queue else None
                self._writing = successor is not None
            if successor is not None:
                successor.woken.set()
        try:
            if durable:
                for entry in batch:
                    if entry.then is not None:
                        try:
                            entry.then()
                        except Exception as failure:
                            entry.failure = failure
        finally:
            if folding:
                self._folding.release()
            for entry in batch:
                entry.done = True
                entry.woken.set()

    def _write(self, batch: list[_Entry]) -> bool:
        """Write and fsync `batch`; False (each entry told why) when it could not be made durable."""
        try:
            # Opened per batch (a microsecond beside the fsync) rather than held: nothing to close, and a compaction's
            # rename is followed by the next batch without a stale handle on the old file.
            with self._open_for_append() as handle:
                start = handle.tell()
                try:
                    handle.write("".join(entry.line for entry in batch).encode())
                    handle.flush()
                    os.fsync(handle.fileno())
                except OSError:
                    # Not acknowledged, so it must not come back at a replay: cut the file back to where the batch
                    # began (after the handle's close, which may still flush what its buffer held).
                    with contextlib.suppress(OSError):
                        handle.close()
                    os.truncate(self.path, start)
                    raise
        except OSError as error:
            for entry in batch:
                entry.error = error
            return False
        self.commits += 1
        self.lines += len(batch)
        self._tail += len(batch)
        return True

    def compact_with(self, state: Callable[[], Any]) -> None:
        """Compact with `state()`: what every journalled line has been folded into (JSON), asked between batches."""
        self._state = state

    def _compact(self, state: Callable[[], Any]) -> None:
        started = time.monotonic()
        fresh = self.path.with_name(self.path.name + ".compacting")
        try:
            with fresh.open("wb") as handle:
                handle.write((json.dumps({HEAD: state()}, separators=(",", ":")) + "\n").encode())
                handle.flush()
                os.fsync(handle.fileno())
            fresh.replace(self.path)
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)  # the rename itself durable
            finally:
                os.close(folder)
        except Exception as error:  # the reports are durable in the old file still; the next commit tries again
            log.warning("journal_compaction_failed", extra={"error": f"{type(error).__name__}: {error}"})
            with contextlib.suppress(OSError):
                fresh.unlink(missing_ok=True)
            return
        log.info(
            "journal_compacted",
            extra={"lines": self._tail, "bytes": self.path.stat().st_size, "seconds": time.monotonic() - started},
        )
        self._tail = 0
        self.compactions += 1

    def _open_for_append(self) -> BinaryIO:
        """The file opened at its end, less a last line that a crash cut (never acknowledged): appended to, it
        would swallow the next report's line. Checked at the first open: every write since ends with a newline."""
        handle = self.path.open("ab")
        if self._tail_checked:
            return handle
        self._tail_checked = True
        end = position = handle.tell()
        with self.path.open("rb") as reader:
            while position > 0:
                start = max(0, position - 65536)
                reader.seek(start)
                chunk = reader.read(position - start)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    position = start + newline + 1
                    break
                position = start
        if position != end:
            handle.truncate(position)
            handle.seek(position)
        return handle

    def replay(self, *, restore: Callable[[Any], None] | None = None) -> Iterator[Any]:
        """The journalled entries, oldest first, after handing a compacted head's state to `restore` (ValueError
        without one). A last line cut by a crash mid-write was never acknowledged."""
        self._tail = 0
        if not self.path.exists():
            return
        with self.path.open() as handle:
            for line in handle:
                if not line.endswith("\n"):
                    break
                data = json.loads(line)
                if isinstance(data, dict) and HEAD in data:
                    if restore is None:
                        raise ValueError(f"{self.path} begins with a compacted state, and nothing restores it")
                    restore(data[HEAD])
                    continue
                self._tail += 1
                yield data
