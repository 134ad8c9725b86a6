"""Opening the Optuna storage that holds the studies, refusing anything that is not one.

An existing SQLite file is checked read-only before Optuna sees it: Optuna would otherwise add its
tables to a foreign database, and a corrupt file must be left exactly as it was.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Optional

import optuna

from autotune.errors import UserError

_OPTUNA_TABLES = {"studies", "trials", "version_info"}


def default_storage_url(root: Path) -> str:
    return f"sqlite:///{(root / 'studies.db').resolve()}"


def sqlite_path(url: str) -> Optional[Path]:
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    rest = url[len(prefix):].split("?", 1)[0]
    return None if rest in ("", ":memory:") else Path(rest)


def check_sqlite_file(path: Path) -> None:
    """Refuse a file that exists but is not an Optuna database; never write to it."""
    if not path.exists():
        if not path.parent.exists():
            try:
                path.parent.mkdir(parents=True)
            except OSError as exc:
                raise UserError(f"storage folder {path.parent} cannot be created ({exc.strerror}); "
                                f"pass storage=sqlite:///<writable path>") from None
        return
    if path.is_dir():
        raise UserError(f"storage {path} is a folder; pass storage=sqlite:///<file>.db")
    if path.stat().st_size == 0:
        return
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise UserError(f"storage {path} is not a readable SQLite database ({exc}); it was left "
                        f"untouched: move it away or pass another storage=") from None
    if not _OPTUNA_TABLES <= tables:
        raise UserError(f"storage {path} is an SQLite database of something else (no Optuna "
                        f"tables); it was left untouched: pass another storage=")


def open_storage(url: str) -> optuna.storages.BaseStorage:
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_file(path)
    try:
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=None)
    except Exception as exc:  # sqlalchemy and schema-version errors: all mean "cannot use this"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"storage {url} cannot be opened: {reason}") from None
    if path is not None:
        _fast_commits(storage)
    return storage


def _fast_commits(storage: optuna.storages.RDBStorage) -> None:
    """SQLite in WAL mode with synchronous=NORMAL: a trial makes about 15 commits, and a full sync
    each (about 6 ms) cost as much as timing the config. WAL stays consistent when the process is
    killed; only an OS crash or power loss can drop the last commits."""
    from sqlalchemy import event

    def pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()  # connections made while opening reconnect with the pragmas
