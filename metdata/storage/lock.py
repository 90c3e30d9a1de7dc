"""One writer per root and stage: a lease file that a run creates atomically and keeps alive.

A stage's writer (``metdata ingest`` on ``objects/``, ``metdata images`` on one store) holds the
lease ``_locks/<folder>.json`` under the root (``layout.lock_file``) from its planning to its
summary. The file appears only if it was not there: locally by hard-linking a written temp file
(``os.link`` fails if the name exists), on S3 by a conditional PUT (``If-None-Match: *``). A second
run finds it and refuses, naming the holder. The holder rewrites it every ``heartbeat`` seconds;
a lease is stale when its heartbeat is older than ``stale_after``, or at once when its holder was a
process of this host that is gone. A stale lease is taken over by a compare-and-swap (S3: a PUT
with ``If-Match`` on the ETag read; locally: a rename aside, then a check that what was moved is
the stale lease read), so two runs taking over the same stale lease cannot both win.

The lease is released on every exit of ``hold`` (errors and Ctrl-C included). A process killed
hard leaves its lease behind: on its host the next run takes it over at once, elsewhere after
``stale_after`` seconds, or at once if the user deletes the file the message names.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from metdata.errors import UserError
from metdata.storage.dataset import Dataset

log = logging.getLogger(__name__)

STALE_AFTER_S = 300.0
HEARTBEAT_S = 30.0


class LockHeld(UserError):
    """Another run writes the same stage of the same root; the message names it and the fix."""


class LockLost(UserError):
    """The lease was taken over while this run held it (its heartbeat stalled past ``stale_after``)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: the content of the lease file."""

    command: str
    host: str
    pid: int
    token: str
    since: str
    heartbeat: str

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        """The holder written in a lease file, or None if the bytes are not one (a damaged file)."""
        try:
            fields = json.loads(data)
            return cls(**{k: fields[k] for k in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError):
            return None

    def encode(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has this pid (another user's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):  # not a pid at all
        return False
    return True


def stale_reason(
    holder: Holder | None,
    now: dt.datetime,
    stale_after: float,
    host: str,
    alive: Callable[[int], bool] = pid_alive,
) -> str | None:
    """Why a lease may be taken over, or None while its holder looks alive.

    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> h = Holder("metdata ingest", "a", 7, "x", t.isoformat(), t.isoformat())
    >>> stale_reason(h, t + dt.timedelta(seconds=10), 300, "b") is None
    True
    >>> stale_reason(h, t + dt.timedelta(seconds=400), 300, "b")
    'its last heartbeat is 400 s old'
    >>> stale_reason(h, t, 300, "a", alive=lambda pid: False)
    'process 7 of this host is gone'
    >>> stale_reason(h, t + dt.timedelta(seconds=400), 300, "a", alive=lambda pid: True) is None  # stopped, not gone
    True
    """
    if holder is None:
        return "the lease file is not readable"
    if holder.host == host:  # a live process here is never stale, however late its heartbeat
        return None if alive(holder.pid) else f"process {holder.pid} of this host is gone"
    try:
        age = (now - dt.datetime.fromisoformat(holder.heartbeat)).total_seconds()
    except (ValueError, TypeError):
        return "its heartbeat is not a time"
    if age > stale_after:
        return f"its last heartbeat is {age:.0f} s old"
    return None


def _s3_code(exc: BaseException) -> str | None:
    """The S3 error code behind an s3fs OSError (botocore's ClientError is its cause)."""
    return getattr(exc.__cause__, "response", {}).get("Error", {}).get("Code")


class Lease:
    """The lease on one stage folder of a root; use ``hold`` rather than this class directly."""

    def __init__(
        self,
        dataset: Dataset,
        relative: str,
        command: str,
        stale_after: float = STALE_AFTER_S,
        heartbeat: float = HEARTBEAT_S,
    ) -> None:
        self.dataset, self.relative, self.command = dataset, relative, command
        self.stale_after, self.heartbeat = stale_after, heartbeat
        self.path = dataset.path(relative)
        self.host = socket.gethostname()
        self.token = uuid.uuid4().hex
        self.since = _now().isoformat()
        self.lost: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _holder(self) -> Holder:
        return Holder(self.command, self.host, os.getpid(), self.token, self.since, _now().isoformat())

    # -- the storage primitives: create if absent, read with a version, replace if unchanged --

    def _create(self, data: bytes) -> None:
        """Write the lease only if there is none. Raises FileExistsError otherwise."""
        fs = self.dataset.fs
        if not self.dataset.local:
            try:
                fs.pipe_file(self.path, data, mode="create")  # PUT with If-None-Match: *
            except OSError as exc:  # AWS answers 409 to a create racing another create
                if isinstance(exc, FileExistsError) or _s3_code(exc) != "ConditionalRequestConflict":
                    raise
                raise FileExistsError(self.path) from exc
            return
        parent = self.path.rsplit("/", 1)[0]
        os.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, self.path)  # atomic, and the lease appears whole
        finally:
            os.unlink(tmp)

    def _read(self) -> tuple[bytes, str] | None:
        """The lease's bytes and version (S3: its ETag, read consistently; locally: the bytes)."""
        fs = self.dataset.fs
        for _ in range(5):
            try:
                if self.dataset.local:
                    with open(self.path, "rb") as f:
                        data = f.read()
                    return data, data.hex()
                fs.invalidate_cache(self.path)
                before = fs.info(self.path)["ETag"]
                data = fs.cat_file(self.path)
                fs.invalidate_cache(self.path)
                if fs.info(self.path)["ETag"] == before:
                    return data, before
            except FileNotFoundError:
                return None
        raise LockHeld(f"the lease {self.path} changes too fast to be read; is a run looping on it?")

    def _swap(self, version: str, data: bytes) -> bool:
        """Replace the lease with ``data`` if it is still at ``version``; whether it was."""
        if not self.dataset.local:
            try:
                self.dataset.fs.pipe_file(self.path, data, IfMatch=version)
            except FileNotFoundError:
                return False
            except OSError as exc:  # s3fs maps 412 PreconditionFailed to OSError(EINVAL)
                if _s3_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise
            return True
        aside = f"{self.path.rsplit('/', 1)[0]}/.{uuid.uuid4().hex}.stale"
        try:
            os.rename(self.path, aside)  # only one of two racing takers can move it
        except FileNotFoundError:
            return False
        with open(aside, "rb") as f:
            moved = f.read()
        if moved.hex() != version:  # we moved a lease that was just renewed or taken: put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                log.error("a lease of %s was displaced by a concurrent takeover", self.path)
            os.unlink(aside)
            return False
        os.unlink(aside)
        try:
            self._create(data)
        except FileExistsError:
            return False
        return True

    # -- the lease --

    def acquire(self) -> None:
        """Create the lease, or take over a stale one.

        Raises:
            LockHeld: a live run holds it (the message names it and how to clear a stale one).
        """
        for _ in range(5):
            try:
                self._create(self._holder().encode())
                break
            except FileExistsError:
                pass
            found = self._read()
            if found is None:
                continue  # released meanwhile: try again
            data, version = found
            holder = Holder.parse(data)
            reason = stale_reason(holder, _now(), self.stale_after, self.host)
            if reason is None:
                raise LockHeld(self._held_message(holder))
            if self._swap(version, self._holder().encode()):
                log.warning("took over the stale lease %s (%s): %s", self.path, reason, holder)
                break
        else:
            raise LockHeld(f"{self.path} is contended by several runs at once: wait for them, then rerun")
        self._beat = threading.Thread(target=self._renew, name=f"lease {self.relative}", daemon=True)
        self._beat.start()
        log.info("holding %s", self.path)

    def _held_message(self, holder: Holder) -> str:
        age = (_now() - dt.datetime.fromisoformat(holder.heartbeat)).total_seconds()
        where = "this host" if holder.host == self.host else f"host {holder.host}"
        return (
            f"another '{holder.command}' is writing {self.dataset.url.rstrip('/')} ({where}, pid {holder.pid}, "
            f"since {holder.since}, last heartbeat {age:.0f} s ago). Two writers would duplicate rows and spend "
            "the request budget twice: wait for it to finish, then rerun. If that process is gone, this lock is "
            f"taken over by itself (at once on its own host, elsewhere after {self.stale_after:.0f} s without a "
            f"heartbeat); to clear it now, delete {self.path}"
        )

    def _renew(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                found = self._read()
                holder = Holder.parse(found[0]) if found else None
                if holder is None or holder.token != self.token:
                    self.lost = f"now held by {holder}" if holder else "the lease file was deleted"
                    log.error("lost the lease %s: %s", self.path, self.lost)
                    return
                fresh = self._holder().encode()
                if self.dataset.local:
                    self.dataset.write_bytes(self.relative, fresh)  # atomic rename over our own lease
                elif not self._swap(found[1], fresh):
                    self.lost = "it was replaced while renewing"
                    return
            except OSError as exc:  # a network or disk hiccup: the next beat tries again
                log.warning("could not renew the lease %s: %s", self.path, exc)

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        try:
            found = self._read()
            holder = Holder.parse(found[0]) if found else None
            if holder is not None and holder.token == self.token:
                self.dataset.fs.rm_file(self.path)
                if self.dataset.local:  # leave no empty _locks/ behind
                    with contextlib.suppress(OSError):
                        os.rmdir(self.path.rsplit("/", 1)[0])
        except OSError as exc:
            log.warning("could not delete the lease %s (%s): delete it by hand", self.path, exc)
        log.info("released %s", self.path)


_held: dict[tuple[str, str, int], list] = {}
_held_guard = threading.Lock()


@contextmanager
def hold(
    dataset: Dataset,
    relative: str,
    command: str,
    stale_after: float = STALE_AFTER_S,
    heartbeat: float = HEARTBEAT_S,
) -> Iterator[Lease]:
    """Hold the lease ``relative`` of ``dataset`` for the block; re-entrant within one thread.

    Raises:
        LockHeld: another live run holds it.
        LockLost: the lease was taken over while the block ran (its heartbeat had stalled).
    """
    key = (dataset.url, relative, threading.get_ident())
    with _held_guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is not None:
        try:
            yield entry[0]
        finally:
            with _held_guard:
                entry[1] -= 1
        return
    dataset.check_writable()  # a bad root fails with its own clear message, not as a lock error
    lease = Lease(dataset, relative, command, stale_after, heartbeat)
    lease.acquire()
    with _held_guard:
        _held[key] = [lease, 1]
    try:
        yield lease
    finally:
        with _held_guard:
            del _held[key]
        lease.release()
    if lease.lost:
        raise LockLost(
            f"the lock {lease.path} was taken over during this run ({lease.lost}): another run may have "
            "written the same files; rerun the command alone to check that everything is accounted for"
        )
