"""Where a run writes, checked before it measures anything.

A run writes its files only at the end (the config file, its report, copies, recorded tables), so
a path it cannot write must be refused in the plan, not found after an hour of measuring. Nothing
is created here (a dry run touches nothing): each path is judged by its nearest existing folder.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from autotune.errors import UserError

PATH_MAX = 4096  # Linux's limit on a whole path


def check_folder(setting: str, value: str | Path, *, writable: bool = True) -> Path:
    """A folder the run will create if needed and write into; returns it (user's ~ expanded).

    setting names what the user gave (`output_dir=outputs/configs`, `--json`) in the message;
    writable=False leaves that check to the caller (the storage says more: read-only, full).
    """
    path = Path(value).expanduser()
    _check_length(setting, path)
    existing = _nearest_existing(path)
    if not existing.is_dir():
        if existing == path:
            raise UserError(f"{setting}: {path} is a file, not a folder; pass a folder (it is "
                            f"created if missing), or move the file away")
        raise UserError(f"{setting}: {existing} is a file, so no folder can be made under it; "
                        f"pass another path")
    if writable:
        _check_writable(setting, existing)
    return path


def check_file(setting: str, value: str | Path, *, writable: bool = True) -> Path:
    """A file the run will write (replacing it if it exists); returns it."""
    path = Path(value).expanduser()
    _check_length(setting, path)
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise UserError(f"{setting}: {existing} is a file, so no {path.name} can be made under "
                        f"it; pass another path")
    if path.is_dir():
        raise UserError(f"{setting}: {path} is a folder, not a file; pass a file name, or move "
                        f"the folder away")
    if writable:
        _check_writable(setting, existing)
    return path


def _check_length(setting: str, path: Path) -> None:
    limit = _name_max(path)
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > limit:
            raise UserError(f"{setting}: the name {part[:40]}... is {size} bytes, more than the "
                            f"{limit} a file name may have; pass a shorter path")
    size = len(os.fsencode(str(path.absolute())))
    if size >= PATH_MAX:
        raise UserError(f"{setting}: the path is {size} bytes, more than the {PATH_MAX - 1} a "
                        f"path may have; pass a shorter one")


def _name_max(path: Path) -> int:
    try:
        return os.pathconf(_nearest_existing(path, checked=False), "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _nearest_existing(path: Path, checked: bool = True) -> Path:
    """The path itself, or its nearest ancestor that exists (a file, when the path is under one).

    checked: every name is within the file system's limit (else stat could fail on it).
    """
    current = path.absolute()
    while True:
        try:
            current.stat()
            return current
        except OSError as exc:
            # missing, or under a file (ENOTDIR): look further up
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR) and (
                    checked or exc.errno != errno.ENAMETOOLONG):
                raise UserError(f"{current} cannot be looked at ({exc.strerror})") from None
        if current.parent == current:
            return current
        current = current.parent


def _check_writable(setting: str, folder: Path) -> None:
    if os.access(folder, os.W_OK | os.X_OK):
        return
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    why = "is on a read-only file system" if read_only else "is not writable by this user"
    raise UserError(f"{setting}: {folder} {why}; pass a writable path")
