"""Paths checked at the boundary, before any work: a folder asked for where a file is, or under a file, and a file
to replace that is a folder. Each is one line (a ValueError) instead of a NotADirectoryError or IsADirectoryError
half-way through a command."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def check_folder(path: str | Path, what: str = "folder") -> Path:
    """path, if it is a folder or can be made one; refuses an empty one (it would mean the current folder), one that
    is a file, or lies under a file."""
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
            break
    return path


NAME_MAX, PATH_MAX = 255, 4096  # bytes: a name and a whole path, as Linux file systems allow them


def check_name_lengths(path: str | Path, what: str = "path") -> None:
    """Refuse a path the file system cannot hold (a name over NAME_MAX or a path over PATH_MAX bytes), in one
    line, before anything is written (the OS would say 'File name too long' only once work was done)."""
    long = [part for part in Path(path).parts if len(part.encode()) > NAME_MAX]
    if long:
        raise ValueError(f"{what} {str(path)[:80]!r}... has a name of {len(long[0].encode())} bytes: allowed names "
                         f"of at most {NAME_MAX} bytes")
    if len(str(path).encode()) > PATH_MAX:
        raise ValueError(f"{what} of {len(str(path).encode())} bytes is too long: allowed at most {PATH_MAX}")


def check_files(folder: str | Path, names: Iterable[str], what: str = "file") -> None:
    """Refuse, before any is written, a name in folder that is there but is no file (a folder of that name)."""
    for name in names:
        target = Path(folder) / name
        if target.exists() and not target.is_file():
            raise ValueError(f"{what} {target} is a folder: allowed a folder where it is a file or absent "
                             "(move the folder away, or choose another)")
