"""One writer per run folder: `<folder>/.lock` names the process that writes there.

Two `train` commands (or notebooks) into one folder would each overwrite the other's checkpoint and both
report success. The lock is created atomically (O_CREAT | O_EXCL), holds {pid, host, started} as JSON, and is
removed on exit, also on an exception. A lock left by a process that died on this host is taken over with a
warning; one held by a live process, or by another host (which cannot be checked), is refused in one line.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

LOCK = ".lock"


class RunLocked(RuntimeError):
    """Another process holds the run folder's lock."""


class RunBusy(RunLocked):
    """A live process on this host holds the lock: it will let go, so waiting for it makes sense."""


@contextmanager
def run_lock(folder: str | Path, wait: float = 0.0, poll: float = 1.0) -> Iterator[Path]:
    """Hold `folder`/.lock for the block (creating the folder); refuses an unwritable folder with a ValueError.

    wait: seconds to wait for a live holder to finish (saying once, on stderr, whom it waits for) before
    RunLocked is raised; 0 refuses at once. The run cache waits: the second of two notebooks training the same
    config then loads what the first trained.
    """
    if not wait >= 0 or not poll > 0:
        raise ValueError(f"wait={wait!r}, poll={poll!r} are invalid: allowed wait >= 0 and poll > 0 seconds")
    folder = Path(folder)
    created = _make_folder(folder)
    path = folder / LOCK
    try:
        if _acquire_waiting(path, wait, poll) and folder not in created:
            created.insert(0, folder)  # re-made after the previous holder removed it: ours to clean up too
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)
    finally:
        for d in created:  # deepest first: leave nothing behind in a folder this run made and did not fill
            try:
                d.rmdir()
            except OSError:
                break


def _make_folder(folder: Path) -> list[Path]:
    """Create folder and its missing parents; return those created, deepest first."""
    missing = [d for d in (folder, *folder.parents) if not d.exists()]
    for d in (folder, *folder.parents):
        if d.exists() and not d.is_dir():
            raise ValueError(f"run folder {str(folder)!r} is invalid: {str(d)!r} is a file; allowed a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"run folder {str(folder)!r} cannot be created ({err.strerror}): "
                         "allowed a folder you can write to") from None
    return missing


def _acquire_waiting(path: Path, wait: float, poll: float) -> bool:
    """_acquire, waiting up to `wait` seconds for a live holder on this host (never for a lock that cannot clear
    by itself: unreadable, or another host's); True if the folder had to be made again."""
    deadline, told = time.monotonic() + wait, False
    while True:
        try:
            return _acquire(path)
        except RunBusy as err:
            left = deadline - time.monotonic()
            if left <= 0:
                if wait > 0:
                    raise RunLocked(f"{err} (waited {wait:g} s)") from None
                raise
            if not told:
                print(f"vaelib: waiting for the lock: {err}", file=sys.stderr, flush=True)
                told = True
            time.sleep(min(poll, left))


def _acquire(path: Path) -> bool:
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.now(UTC).isoformat(timespec="seconds")}
    remade = False
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # the umask applies
        except FileExistsError:
            _take_over_if_stale(path)
            continue
        except FileNotFoundError:  # the holder that created the folder removed it, empty, when it let go
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise ValueError(f"run folder {str(path.parent)!r} cannot be created ({err.strerror}): "
                                 "allowed a folder you can write to") from None
            remade = True
            continue
        except OSError as err:  # read-only folder or file system, ...
            raise ValueError(f"run folder {str(path.parent)!r} is not writable ({err.strerror}): "
                             "allowed a folder you can write to") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return remade
    raise RunLocked(f"run folder {str(path.parent)!r} is contended: its lock {str(path)!r} keeps changing hands")


def _take_over_if_stale(path: Path) -> None:
    """Remove a lock whose owner died on this host (with a warning); raise RunBusy for a live one here,
    RunLocked for one that cannot be checked (another host's, or unreadable)."""
    owner = _owner(path)
    if owner is None:  # removed meanwhile: try again
        return
    if not owner:
        raise RunLocked(f"run folder {str(path.parent)!r} has an unreadable lock {str(path)!r}: allowed one writer "
                        "per folder; delete the lock if no process writes there")
    pid, host = owner.get("pid"), owner.get("host")
    if host != socket.gethostname() or not isinstance(pid, int) or _alive(pid):
        busy = host == socket.gethostname() and isinstance(pid, int)  # alive here: it will let go
        raise (RunBusy if busy else RunLocked)(
            f"run folder {str(path.parent)!r} is in use by pid {pid} on {host} since {owner.get('started')}: "
            f"allowed one writer per folder; wait for it, use another folder, or delete {str(path)!r} if that "
            "process is gone")
    grab = path.with_name(f"{LOCK}.stale-{os.getpid()}")
    try:
        os.replace(path, grab)  # atomic: of two processes taking over, one gets the file
    except FileNotFoundError:
        return
    if _owner(grab) != owner:  # a live process locked it in between: give it back
        os.replace(grab, path)
        return
    grab.unlink()
    warnings.warn(f"took over the stale lock of run folder {str(path.parent)!r}: pid {pid} on {host} "
                  f"(since {owner.get('started')}) is no longer running", stacklevel=4)


def _owner(path: Path) -> dict | None:
    """The lock's JSON; {} for one that stays unreadable (a writer that died between create and write)."""
    for _ in range(20):  # its creator writes right after creating it: give it a moment
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            owner = json.loads(text)
            return owner if isinstance(owner, dict) else {}
        except json.JSONDecodeError:
            time.sleep(0.01)
    return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True
