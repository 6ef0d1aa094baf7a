"""Paths checked at the boundary, before any work: a folder asked for where a file is, or under a file, one that
cannot be created or written, a file to read that is a folder or no regular file, and a file to replace that is a
folder. Each is one line (a ValueError; a missing file a FileNotFoundError) instead of a NotADirectoryError,
IsADirectoryError or bare errno message half-way through a command."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

PROBE = ".vaelib-probe-"  # the empty folder check_folder makes, and removes at once, to test that it can


def check_folder(path: str | Path, what: str = "folder") -> Path:
    """path, if it is a folder or can be made one, and new entries can be made in it; refuses an empty one (it
    would mean the current folder), one that is a file, lies under a file, or cannot be created or written (a
    read-only mount, /proc, a folder without write permission): nothing is left behind."""
    if not str(path).strip():
        raise ValueError(f"{what} {str(path)!r} is empty: allowed a folder's path (new or existing; '.' for the "
                         "current folder)")
    path = Path(path)
    check_name_lengths(path, what)
    for above in (path, *path.parents):
        if above.exists():  # False under a file (NotADirectoryError): the loop goes on to the file itself
            if not above.is_dir():
                where = "is a file" if above == path else f"lies under {above}, a file"
                raise ValueError(f"{what} {path} {where}: allowed a folder (new or existing)")
            _check_writable(path, above, what)
            break
    return path


def _check_writable(path: Path, nearest: Path, what: str) -> None:
    """Make an empty folder in `nearest` (path itself, or the deepest folder above it that exists) and remove it
    at once: the one test that holds for root too (who passes every permission check), on a read-only mount and in
    /proc, where the OS says only 'No such file or directory' once work was done."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=PROBE, dir=nearest))
    except OSError as err:
        why = "new entries cannot be made there" if isinstance(err, FileNotFoundError) else err.strerror
        verb = "is not writable" if nearest == path else f"cannot be created in {nearest}"
        raise ValueError(f"{what} {path} {verb} ({why}): allowed a folder you can create and write to") from None


NAME_MAX, PATH_MAX = 255, 4096  # bytes: a name and a whole path, as Linux file systems allow them


def check_name_lengths(path: str | Path, what: str = "path") -> None:
    """Refuse a path the file system cannot hold (a name over NAME_MAX or a path over PATH_MAX bytes), in one
    line, before anything is written (the OS would say 'File name too long' only once work was done)."""
    long = [part for part in Path(path).parts if _bytes(part) > NAME_MAX]
    if long:
        raise ValueError(f"{what} {str(path)[:80]!r}... has a name of {_bytes(long[0])} bytes: allowed names of at "
                         f"most {NAME_MAX} bytes")
    if _bytes(str(path)) > PATH_MAX:
        raise ValueError(f"{what} of {_bytes(str(path))} bytes is too long: allowed at most {PATH_MAX}")


def _bytes(name: str) -> int:
    return len(name.encode("utf-8", "surrogatepass"))  # a lone surrogate (an undecodable byte) counts, not fails


KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
         (stat.S_ISSOCK, "a socket"))  # what a path that is neither a file nor a folder can be


def check_readable_file(path: str | Path, what: str, allowed: str, inside: str | None = None) -> Path:
    """path, if it is a regular file (or a link to one); a missing one is a FileNotFoundError, a folder or
    something else (/dev/null, a named pipe, which would block) a ValueError, each one line: '<what> '<path>' is a
    folder: allowed <allowed>'. inside: the file a folder given instead may hold (a run folder's checkpoint.pt),
    named in the refusal where it is there."""
    path = Path(path)
    check_name_lengths(path, what)
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError, ValueError):  # missing, a dangling link, under a file, a NUL
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist: allowed {allowed}") from None
    except OSError as err:  # a folder on the way that cannot be searched, a loop of links
        raise ValueError(f"{what} {str(path)!r} cannot be read ({err.strerror}): allowed {allowed}") from None
    if stat.S_ISDIR(mode):
        held = path / inside if inside else None
        raise ValueError(f"{what} {str(path)!r} is a folder: allowed {allowed}"
                         + (f", e.g. {str(held)!r}, which it holds" if held is not None and held.is_file() else ""))
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in KINDS if test(mode)), "neither a file nor a folder")
        raise ValueError(f"{what} {str(path)!r} is not a regular file ({kind}): allowed {allowed}")
    return path


def check_files(folder: str | Path, names: Iterable[str], what: str = "file") -> None:
    """Refuse, before any is written, a name in folder that is there but is no file (a folder of that name)."""
    for name in names:
        target = Path(folder) / name
        if target.exists() and not target.is_file():
            raise ValueError(f"{what} {target} is a folder: allowed a folder where it is a file or absent "
                             "(move the folder away, or choose another)")
