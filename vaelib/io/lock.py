"""One writer per folder: a lock file names the process that writes there.

Two `train` commands (or notebooks) into one folder would each overwrite the other's checkpoint and both
report success; two reports built into one folder would replace each other. The lock holds {pid, host, started}
as JSON: it is written complete to a temporary file and hard-linked into place, which fails if the name exists
(atomic, like O_EXCL), so a crash or a full disk never leaves an empty lock. It is removed on exit, also on an
exception. A lock left by a process that died on this host is taken over with a warning; one held by a live
process, or by another host (which cannot be checked), is refused in one line, as is a lock that is a link or
a folder, or unreadable (with the command that clears it).
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import socket
import stat
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from vaelib.io.files import TMP_MARK, TMP_SUFFIX, clean_temporaries, shareable_mode

LOCK = ".lock"
PID_MAX = 2**22  # the largest process id Linux allows (pid_max); a lock naming more is not vaelib's


class RunLocked(RuntimeError):
    """Another process holds the folder's lock, or the lock is not one vaelib can read."""


class RunBusy(RunLocked):
    """A live process on this host holds the lock: it will let go, so waiting for it makes sense."""


@contextmanager
def run_lock(folder: str | Path, wait: float = 0.0, poll: float = 1.0) -> Iterator[Path]:
    """Hold `folder`/.lock for the block (creating the folder); refuses an unwritable folder with a ValueError.

    wait: seconds to wait for a live holder to finish (saying once, on stderr, whom it waits for) before
    RunLocked is raised; 0 refuses at once. The run cache waits: the second of two notebooks training the same
    config then loads what the first trained. Holding it, the temporary files a killed writer left are removed.
    """
    folder = Path(folder)
    with file_lock(folder / LOCK, f"run folder {str(folder)!r}", wait, poll) as path:
        clean_temporaries(folder)  # left by a writer that was killed: no live one can own them now
        yield path


@contextmanager
def file_lock(path: str | Path, what: str, wait: float = 0.0, poll: float = 1.0) -> Iterator[Path]:
    """Hold the lock file `path` for the block, creating its folder (removed again if it stays empty); `what`
    names what it guards in messages ("report folder 'reports/mnist-small'")."""
    if not wait >= 0 or not poll > 0:
        raise ValueError(f"wait={wait!r}, poll={poll!r} are invalid: allowed wait >= 0 and poll > 0 seconds")
    path = Path(path)
    folder = path.parent
    created = _make_folder(folder, what)
    try:
        me = _acquire_waiting(path, what, wait, poll)
        if me["remade"] and folder not in created:
            created.insert(0, folder)  # re-made after the previous holder removed it: ours to clean up too
        try:
            yield path
        finally:
            if _owner(path) == me["owner"]:  # never remove a lock another process took meanwhile
                path.unlink(missing_ok=True)
    finally:
        for d in created:  # deepest first: leave nothing behind in a folder this run made and did not fill
            try:
                d.rmdir()
            except OSError:
                break


def _make_folder(folder: Path, what: str) -> list[Path]:
    """Create folder and its missing parents; return those created, deepest first."""
    missing = [d for d in (folder, *folder.parents) if not d.exists()]
    for d in (folder, *folder.parents):
        if d.exists() and not d.is_dir():
            raise ValueError(f"{what} is invalid: {str(d)!r} is a file; allowed a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # ENOENT under an existing folder: one that refuses new entries (/proc/self, ...)
        why = "new entries cannot be made there" if isinstance(err, FileNotFoundError) else err.strerror
        raise ValueError(f"{what} cannot be created ({why}): allowed a folder you can write to") from None
    return missing


def _acquire_waiting(path: Path, what: str, wait: float, poll: float) -> dict:
    """_acquire, waiting up to `wait` seconds for a live holder on this host (never for a lock that cannot clear
    by itself: unreadable, a link, or another host's)."""
    deadline, told = time.monotonic() + wait, False
    while True:
        try:
            return _acquire(path, what)
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


def _acquire(path: Path, what: str) -> dict:
    """Link a complete lock file into place; returns {"owner": what it holds, "remade": whether the folder had
    to be made again (its previous holder removed it, empty)}."""
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": datetime.now(UTC).isoformat(timespec="seconds")}
    remade = False
    for _ in range(5):
        try:
            candidate = _write_candidate(path, owner, what)
        except FileNotFoundError:
            remade = _remake(path.parent, what) or remade
            continue
        try:
            os.link(candidate, path)  # fails if the name exists, as a file, a folder or a (dangling) link
            return {"owner": owner, "remade": remade}
        except FileExistsError:
            _take_over_if_stale(path, what)
        except FileNotFoundError:  # the candidate or the folder was removed meanwhile: start again
            remade = _remake(path.parent, what) or remade
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise ValueError(f"{what} is not writable ({err.strerror}): allowed a folder you can write "
                                 "to") from None
            return {"owner": _acquire_without_links(path, owner, what), "remade": remade}
        finally:
            Path(candidate).unlink(missing_ok=True)
    raise RunLocked(f"{what} is contended: its lock {str(path)!r} keeps changing hands")


def _write_candidate(path: Path, owner: dict, what: str) -> str:
    """The lock's JSON, complete and fsync-ed, in a temporary file beside it (FileNotFoundError: no folder)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{path.name}{TMP_MARK}", suffix=TMP_SUFFIX, dir=path.parent)
    except FileNotFoundError:
        if path.parent.is_dir():  # there but refuses new files (/proc/self, ...)
            raise ValueError(f"{what} is not writable (new files cannot be made there): allowed a folder you can "
                             "write to") from None
        raise
    except OSError as err:
        raise ValueError(f"{what} is not writable ({err.strerror}): allowed a folder you can write to") from None
    try:
        os.fchmod(fd, shareable_mode())
        with os.fdopen(fd, "w") as f:
            json.dump(owner, f)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(errno.ENOSPC, "disk full while writing", str(path)) from None
        raise
    return tmp


def _remake(folder: Path, what: str) -> bool:
    """Make the folder again (its previous holder removed it, empty, when it let go); True if it was missing."""
    if folder.is_dir():
        return False
    _make_folder(folder, what)
    return True


def _acquire_without_links(path: Path, owner: dict, what: str) -> dict:
    """Where the file system has no hard links: O_EXCL, then write (a crash in between leaves an empty lock)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o666)
    except FileExistsError:
        _take_over_if_stale(path, what)
        raise RunLocked(f"{what} is contended: its lock {str(path)!r} keeps changing hands") from None
    with os.fdopen(fd, "w") as f:
        json.dump(owner, f)
    return owner


def _take_over_if_stale(path: Path, what: str) -> None:
    """Remove a lock whose owner died on this host (with a warning); raise RunBusy for a live one here,
    RunLocked for one that cannot be checked (another host's, unreadable, a link or a folder)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:  # removed meanwhile: try again
        return
    if stat.S_ISLNK(st.st_mode):
        raise RunLocked(f"{what} has a lock {str(path)!r} that is a symbolic link (to {os.readlink(path)!r}): "
                        f"allowed a plain file, which vaelib writes itself; remove the link: rm {_quote(path)}")
    if not stat.S_ISREG(st.st_mode):
        raise RunLocked(f"{what} has a lock {str(path)!r} that is not a file: allowed a plain file, which vaelib "
                        f"writes itself; remove it: rm -r {_quote(path)}")
    owner = _owner(path)
    if owner is None:  # removed meanwhile: try again
        return
    if not owner:
        since = datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds")
        raise RunLocked(f"{what} has an unreadable lock {str(path)!r} (empty or not JSON, written {since}; vaelib "
                        "writes its locks complete, so no vaelib process is writing it): allowed one writer per "
                        f"folder; if no process writes there, clear it: rm {_quote(path)}")
    pid, host = owner.get("pid"), owner.get("host")
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= PID_MAX:
        raise RunLocked(f"{what} has a lock {str(path)!r} naming pid {_brief(pid)}, which no process can have "
                        f"(allowed 1 to {PID_MAX}): vaelib did not write it; if no process writes there, clear it: "
                        f"rm {_quote(path)}")
    if not isinstance(host, str) or not isinstance(owner.get("started"), (str, type(None))):
        key, value = ("host", host) if not isinstance(host, str) else ("started", owner.get("started"))
        raise RunLocked(f"{what} has a lock {str(path)!r} whose {key} is {_brief(value)}, which vaelib never writes "
                        f"(allowed a string): if no process writes there, clear it: rm {_quote(path)}")
    if host != socket.gethostname() or _alive(pid):
        busy = host == socket.gethostname()  # alive here: it will let go
        raise (RunBusy if busy else RunLocked)(
            f"{what} is in use by pid {pid} on {host} since {owner.get('started')}: "
            f"allowed one writer per folder; wait for it, use another folder, or delete {str(path)!r} if that "
            "process is gone")
    grab = path.with_name(f"{path.name}.stale-{os.getpid()}")
    try:
        os.replace(path, grab)  # atomic: of two processes taking over, one gets the file
    except FileNotFoundError:
        return
    if _owner(grab) != owner:  # a live process locked it in between: give it back
        os.replace(grab, path)
        return
    grab.unlink()
    warnings.warn(f"took over the stale lock of {what}: pid {pid} on {host} "
                  f"(since {owner.get('started')}) is no longer running", stacklevel=5)


def _brief(value: object) -> str:
    """A value a lock holds, as one short line: its repr up to 40 characters, a list or dict by its size (a
    nested one's repr could run to megabytes, or past the recursion limit)."""
    if isinstance(value, (list, dict)):
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _quote(path: Path) -> str:
    return shlex.quote(str(path))


def _owner(path: Path) -> dict | None:
    """The lock's JSON; None if it is gone, {} for one that stays unreadable (written by something else than
    vaelib, or by an older vaelib that died between creating and writing it)."""
    for _ in range(20):  # an older vaelib wrote right after creating it: give it a moment
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            return {}
        try:
            owner = json.loads(text)
            return owner if isinstance(owner, dict) else {}
        except RecursionError:  # nested too deep to be a lock vaelib wrote
            return {}
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
