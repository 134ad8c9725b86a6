"""The Optuna storage that holds the studies: opening it safely, and telling dead trials from live.

Storages (the `storage=` URL):
- `sqlite:///<file>.db` (default): one host; several processes may share it (writers wait for
  each other up to BUSY_TIMEOUT_S instead of failing with "database is locked").
- `journal:<file>`: Optuna's journal file (an append-only log), for many processes on one host;
  appends are serialized with flock, which the kernel releases when a process dies.
- `postgresql://user@host:port/db` (any SQLAlchemy URL): clusters; every job shares the studies.

An existing file is checked read-only before Optuna sees it: Optuna would otherwise add its tables
to a foreign database, and a corrupt file must be left exactly as it was.

Liveness: every trial a run asks for is stamped with its owner (machine, pid, process start time)
and, while it is measured, a heartbeat. A RUNNING trial is dead when its owner's process is gone
(same machine: checked at once), when its heartbeat is older than STALE_S (another machine), or
when it has no owner after OWNERLESS_GRACE_S (its run died between asking and stamping). Dead
trials are failed, so their configs may be proposed again; a live run's trial is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import random
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

from autotune.errors import UserError, first_line

log = logging.getLogger(__name__)

# Every table Optuna's RDB storage creates (optuna.storages._rdb.models), alembic's included.
_OPTUNA_TABLES = {"studies", "study_directions", "study_system_attributes",
                  "study_user_attributes", "trial_heartbeats", "trial_intermediate_values",
                  "trial_params", "trial_system_attributes", "trial_user_attributes",
                  "trial_values", "trials", "version_info", "alembic_version"}
JOURNAL_PREFIX = "journal:"

BUSY_TIMEOUT_S = 120  # an SQLite writer waits this long for another process's write
MIN_FREE_BYTES = 1 << 20  # refuse to start on a disk with less room than this

# File systems whose locking SQLite cannot rely on (sqlite.org/faq.html#q5).
_NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse.sshfs", "lustre", "gpfs",
               "beegfs", "glusterfs", "fuse.glusterfs", "ceph", "fuse.ceph"}


def default_storage_url(root: Path) -> str:
    return f"sqlite:///{(root / 'studies.db').resolve()}"


def sqlite_path(url: str) -> Optional[Path]:
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    rest = url[len(prefix):].split("?", 1)[0]
    return None if rest in ("", ":memory:") else Path(rest)


def journal_path(url: str) -> Optional[Path]:
    """`journal:<path>`; `journal:///abs` and `journal://rel` read as in other URLs."""
    if not url.startswith(JOURNAL_PREFIX):
        return None
    rest = url[len(JOURNAL_PREFIX):]
    rest = rest[2:] if rest.startswith("//") else rest
    if not rest:
        raise UserError(f"storage={url} names no file; pass storage=journal:<path>")
    return Path(rest).expanduser()


def check_url(url: str) -> None:
    """Refuse a storage= that cannot mean what was meant, with the spelling that works (SQLAlchemy
    would say only that it cannot parse it, or load a plugin)."""
    if url.startswith(JOURNAL_PREFIX):
        journal_path(url)
        return
    if url.startswith("sqlite:") and not (url.startswith("sqlite:///") or url == "sqlite://"):
        raise UserError(f"storage={url}: an SQLite URL has three slashes before a relative path "
                        f"(sqlite:///studies.db) and four before an absolute one "
                        f"(sqlite:////tmp/studies.db)")
    scheme, sep, _ = url.partition("://")
    if scheme == "postgres":
        raise UserError(f"storage={url}: write postgresql://{url[len('postgres://'):]} "
                        f"(SQLAlchemy does not know postgres://)")
    if not sep:
        raise UserError(f"storage={url}: not a storage URL; use sqlite:///<file>.db, "
                        f"journal:<file> or postgresql://user@host/db")


def storage_file(url: str) -> Optional[Path]:
    """The file an SQLite or journal storage lives in, as it will be opened (None: a server)."""
    path = journal_path(url) or sqlite_path(url)
    return path.absolute() if path is not None else None


def is_in_memory(url: str) -> bool:
    return url in ("sqlite://", "sqlite:///:memory:") or url.startswith("sqlite:///:memory:?")


# -- checks before Optuna touches anything -------------------------------------------------------
def _check_folder(path: Path) -> None:
    if not path.parent.exists():
        try:
            path.parent.mkdir(parents=True)
        except OSError as exc:
            raise UserError(f"storage folder {path.parent} cannot be created ({exc.strerror}); "
                            f"pass storage= with a writable path") from None


def _check_writable(path: Path) -> None:
    """Refuse a read-only file or folder, or a full disk, before writing anything."""
    where = path if path.exists() else path.parent
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"storage {where} is read-only; nothing was changed: pass a writable "
                        f"storage= (or copy the file somewhere writable)")
    try:
        stat = os.statvfs(path.parent)
        free = stat.f_bavail * stat.f_frsize
    except OSError:
        return
    if free < MIN_FREE_BYTES:
        raise UserError(f"the disk holding storage {path} is full ({free} bytes free); nothing "
                        f"was changed: free some space, then rerun to resume")


def check_sqlite_file(path: Path) -> None:
    """Refuse a file that exists but is not an Optuna database; never write to it."""
    if not path.exists():
        return
    if path.is_dir():
        raise UserError(f"storage {path} is a folder; pass storage=sqlite:///<file>.db")
    if path.stat().st_size == 0:
        return
    try:
        try:
            tables = _table_names(path, "mode=ro")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_READONLY_ROLLBACK:
                raise
            tables = _tables_after_rollback(path)
    except sqlite3.DatabaseError as exc:
        raise UserError(f"storage {path} is not a readable SQLite database ({exc}); it was left "
                        f"untouched: move it away or pass another storage=") from None
    # Only Optuna's tables (some may be missing: a run killed while creating them) is ours.
    foreign = sorted(tables - _OPTUNA_TABLES)
    if foreign:
        raise UserError(f"storage {path} is an SQLite database of something else (tables "
                        f"{', '.join(foreign[:3])}); it was left untouched: pass another storage=")


def _table_names(path: Path, mode: str) -> set[str]:
    con = sqlite3.connect(f"file:{path}?{mode}", uri=True)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()


def _tables_after_rollback(path: Path) -> set[str]:
    """The tables of a database a run killed mid-transaction left with a hot journal (possible
    while Optuna creates its tables, before WAL is on): only a writer may roll the journal back,
    as Optuna will on opening. Read a rolled-back copy, so that the file itself stays untouched."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / path.name
        try:
            shutil.copyfile(path, copy)
            shutil.copyfile(f"{path}-journal", f"{copy}-journal")
        except OSError as exc:
            raise UserError(f"storage {path} was left mid-write by a killed run and cannot be "
                            f"checked ({exc.strerror} copying it to {folder}); it was left "
                            f"untouched: free space there (TMPDIR=) and rerun") from None
        return _table_names(copy, "mode=rw")


def check_journal_file(path: Path) -> None:
    """Refuse a file that is not an Optuna journal (JSON lines with op codes); never write to it."""
    if not path.exists():
        return
    if path.is_dir():
        raise UserError(f"storage {path} is a folder; pass storage=journal:<file>")
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        return
    # Optuna writes each entry as one JSON object whose first key is op_code.
    if not head.startswith(b'{"op_code":'):
        raise UserError(f"storage {path} is not an Optuna journal file; it was left untouched: "
                        f"move it away or pass another storage=")


def network_fs_type(path: Path) -> Optional[str]:
    """The file system type of a network mount holding `path` (Linux), else None."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve().parent)
    best, kind = "", None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, kind = mount, parts[2]
    return kind if kind in _NETWORK_FS else None


def check_parallel_safe(url: str, processes: int) -> None:
    """Refuse a storage that several processes cannot share safely."""
    if processes <= 1:
        return
    if is_in_memory(url):
        raise UserError(f"storage={url} lives in one process's memory; workers={processes} "
                        f"needs a shared one: storage=journal:<file> or sqlite:///<file>.db")
    path = sqlite_path(url)
    if path is not None:
        fs = network_fs_type(path)
        if fs:
            raise UserError(f"storage {path} is SQLite on a network file system ({fs}), whose "
                            f"locks SQLite cannot trust with workers={processes}; use "
                            f"storage=journal:<file> or storage=postgresql://...")


# -- opening -------------------------------------------------------------------------------------
class LockedJournalFile(JournalFileBackend):
    """Optuna's journal file with appends serialized by flock.

    Optuna's default symlink lock outlives a killed process (others then wait its 30 s grace
    period); flock is released by the kernel. A writer killed mid-append can leave a partial last
    line: the next writer, holding the lock, cuts it off before appending, so the log stays valid.
    """

    def __init__(self, path: Path):
        super().__init__(str(path))
        self._lock_path = str(path) + ".flock"

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(entry, separators=(",", ":")) + "\n" for entry in logs)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(self._file_path, "r+b") as f:
                    _cut_partial_tail(f)
                    f.seek(0, os.SEEK_END)
                    f.write(text.encode())
                    f.flush()
                    os.fsync(f.fileno())
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _cut_partial_tail(f) -> None:
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return
    f.seek(size - 1)
    if f.read(1) == b"\n":
        return
    # Scan back to the last complete line (a log line is small: a few KiB at most).
    pos = size
    while pos > 0:
        step = min(pos, 65536)
        f.seek(pos - step)
        chunk = f.read(step)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            f.truncate(pos - step + cut + 1)
            log.warning("journal: cut a partial line left by a killed writer")
            return
        pos -= step
    f.truncate(0)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    path = journal_path(url)
    if path is not None:
        _check_folder(path)
        check_journal_file(path)
        _check_writable(path)
        try:
            return JournalStorage(LockedJournalFile(path))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise UserError(f"storage {path} is a damaged journal ({exc}); it was left "
                            f"untouched: move it away or pass another storage=") from None
    path = sqlite_path(url)
    kwargs: dict[str, Any] = {}
    if path is not None:
        _check_folder(path)
        _check_writable(path)
        check_sqlite_file(path)
        kwargs = {"connect_args": {"timeout": BUSY_TIMEOUT_S}}
    url = with_installed_driver(url)
    # Several jobs starting at once on an empty PostgreSQL database race to create the tables.
    for attempt in range(5):
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs,
                                                 heartbeat_interval=None)
            break
        except Exception as exc:  # sqlalchemy and schema-version errors: all mean "cannot use this"
            if attempt < 4 and _is_creation_race(exc):
                time.sleep(0.2 + random.random())
                continue
            raise UserError(f"storage {url} cannot be opened: {first_line(exc)}") from None
    if path is not None:
        _fast_commits(storage)
    return storage


def _fast_commits(storage: optuna.storages.RDBStorage) -> None:
    """SQLite in WAL mode with synchronous=NORMAL: a trial makes about 15 commits, and a full sync
    each (about 6 ms) cost as much as timing the config. WAL stays consistent when the process is
    killed; only an OS crash or power loss can drop the last commits. (WAL needs shared memory
    between processes: one host, which check_parallel_safe enforces for workers.)"""
    from sqlalchemy import event

    def pragmas(dbapi_connection, record_of):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()  # connections made while opening reconnect with the pragmas


def with_installed_driver(url: str) -> str:
    """`postgresql://` with whichever driver is installed (SQLAlchemy 2.0 assumes psycopg2, 2.1
    psycopg 3); a URL naming its driver (`postgresql+psycopg2://`) is kept as given."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    for module, dialect in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return dialect + url[len("postgresql"):]
    raise UserError(f"storage {url} needs a PostgreSQL driver: pip install 'psycopg[binary]' "
                    f"(or install autotune[cluster])")


def _is_creation_race(exc: Exception) -> bool:
    text = str(exc)
    return ("already exists" in text or "duplicate key" in text or "UniqueViolation" in text
            or "IntegrityError" in type(exc).__name__)


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """The storage failing under a run (disk full, read-only, locked, server gone) as one line."""
    import sqlalchemy.exc

    try:
        try:
            yield
        except optuna.exceptions.StorageInternalError as exc:
            # Optuna wraps the database's error: judge by the database's own
            raise (exc.__cause__ or exc) from None
    except sqlalchemy.exc.OperationalError as exc:
        reason = first_line(exc.orig if exc.orig is not None else exc)
        raise UserError(f"storage {url} failed: {reason}; finished trials are kept: fix the "
                        f"cause, then rerun to resume") from None
    except sqlalchemy.exc.DatabaseError as exc:
        if "malformed" not in str(exc) and "not a database" not in str(exc):
            raise
        raise UserError(f"storage {url} is damaged: {first_line(exc.orig or exc)}") from None
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EFBIG):
            raise
        where = exc.filename or url
        raise UserError(f"cannot write {where}: {exc.strerror}; finished trials are kept: fix "
                        f"the cause, then rerun to resume") from None
