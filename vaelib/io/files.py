"""The one way vaelib writes a file: a temporary file in the destination's folder, fsync-ed, renamed over the name.

The rename replaces the name itself, so a symbolic link at the destination is replaced, never followed (a link
planted in a run folder cannot make vaelib overwrite the file it points to); a reader sees the old file or the new
one, never half of one; a crash or a full disk leaves the old file intact and at most a
`.<name>.vaelib-<random>.tmp` beside it, which clean_temporaries removes on the next run (and no other file: a
user's own `.notes.v2.tmp` is theirs).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

TMP_SUFFIX = ".tmp"
TMP_MARK = ".vaelib-"  # in every temporary vaelib writes, so that only those are ever cleaned


def shareable_mode(directory: bool = False) -> int:
    """The mode open() would give a new file (0o644 under the usual umask 022), or a new folder (0o755).

    mkstemp and mkdtemp ignore the umask (0o600, 0o700): outputs meant to be shared are chmod-ed to this.
    """
    return (0o777 if directory else 0o666) & ~_umask()


def _umask() -> int:
    try:  # Linux: read without changing it (os.umask can only read by setting, which is not thread-safe)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _mode_for(path: Path) -> int:
    """An existing regular file keeps its mode (a read-only checkpoint stays read-only); a new name, or one that
    is a link (replaced, not followed), gets the umask's."""
    try:
        st = os.lstat(path)
    except OSError:
        return shareable_mode()
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else shareable_mode()


def check_writable_file(path: str | Path) -> Path:
    """Refuse, in one line, a destination that cannot become a file: a folder, or a name under a file."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise ValueError(f"{str(path)!r} is a folder: allowed a file name (new, or a file to replace)")
    for d in path.parents:
        if d.exists():
            if not d.is_dir():
                raise ValueError(f"{str(path)!r} cannot be written: {str(d)!r} is a file; allowed a path in a folder")
            break
    return path


def atomic_write_bytes(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call write(file) on a temporary file beside `path`, fsync, then rename over `path`; returns `path`.

    A full disk is reported as OSError(ENOSPC) naming `path` (torch.save and savefig hide it behind other
    errors), and the old file is left intact.
    """
    path = check_writable_file(path)
    mode = _mode_for(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if _disk_full(err):
            raise OSError(errno.ENOSPC, "disk full while writing", str(path)) from None
        raise
    return path


def _disk_full(err: BaseException) -> bool:
    """Whether err, or an error it was raised while handling, is 'No space left on device'."""
    seen = 0
    while err is not None and seen < 5:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 text."""
    data = text.encode("utf-8")
    return atomic_write_bytes(path, lambda f: f.write(data))


def save_json(path: str | Path, obj: Any) -> Path:
    """Atomically write obj as indented JSON."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def save_torch(path: str | Path, obj: Any) -> Path:
    """torch.save `obj` (a checkpoint, a dataset cache) to `path` atomically: a crash leaves the old file intact."""
    return atomic_write_bytes(path, lambda f: torch.save(obj, f))


def copy_file(source: str | Path, dest: str | Path) -> Path:
    """Atomically copy a file's bytes to dest."""
    data = Path(source).read_bytes()
    return atomic_write_bytes(dest, lambda f: f.write(data))


def clean_temporaries(folder: str | Path) -> list[Path]:
    """Remove the `.<name>.vaelib-<random>.tmp` files a killed vaelib writer left in folder (call it holding the
    folder's lock: then no live writer owns one), and nothing else; returns those removed."""
    removed = []
    for p in Path(folder).glob(f".*{TMP_MARK}*{TMP_SUFFIX}"):
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
