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
    for above in (path, *path.parents):
        if above.exists():  # False under a file (NotADirectoryError): the loop goes on to the file itself
            if not above.is_dir():
                where = "is a file" if above == path else f"lies under {above}, a file"
                raise ValueError(f"{what} {path} {where}: allowed a folder (new or existing)")
            break
    return path


def check_files(folder: str | Path, names: Iterable[str], what: str = "file") -> None:
    """Refuse, before any is written, a name in folder that is there but is no file (a folder of that name)."""
    for name in names:
        target = Path(folder) / name
        if target.exists() and not target.is_file():
            raise ValueError(f"{what} {target} is a folder: allowed a folder where it is a file or absent "
                             "(move the folder away, or choose another)")
