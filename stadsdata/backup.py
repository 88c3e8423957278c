"""Backup and restore of a stadsdata database, while the server may be running.

SQLite: the online backup API copies the database as of one moment (a read transaction held for the
whole copy, so writers carry on and nothing committed after that moment is half in it) into a
self-contained file. PostgreSQL: ``pg_dump -Fc`` (its own consistent snapshot) and
``pg_restore --clean --if-exists``. A restore checks that what it restores is a stadsdata database at a
schema revision this version knows, and does not overwrite a database holding data unless forced.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from stadsdata.store import is_postgres

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"
PROGRESS_ABOVE = 64 * 1024 * 1024
"""A SQLite copy shows a progress bar when the database is larger than this (bytes)."""
STEP_PAGES = 1024
# Tables whose rows are no data of the city's.
BOOKKEEPING = {"alembic_version", "sqlite_sequence", "spatial_ref_sys"}


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why."""


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    from stadsdata.store import migrations

    return {s.revision for s in ScriptDirectory.from_config(migrations.config(None)).walk_revisions()}


def _check_revision(revision: str | None, what: str) -> str:
    if revision is None:
        raise BackupError(f"{what} is not a stadsdata database (it has no schema revision)")
    if revision not in known_revisions():
        raise BackupError(
            f"{what} is at schema revision {revision}, which this stadsdata version does not know "
            "(made by a newer version?)"
        )
    return revision


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def _free_target(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise BackupError(f"{out} exists; use --force to overwrite it")
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent} is not a directory")


def _fsync_file_and_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- entry points -------------------------------------------------------------------------


def backup(db: str, out: str | os.PathLike[str], *, force: bool = False, progress: bool | None = None) -> str:
    """Write a consistent snapshot of ``db`` to ``out``; a line saying what was done."""
    target = Path(out)
    _free_target(target, force)
    if is_postgres(db):
        return _postgres_backup(db, target)
    return _sqlite_backup(Path(db), target, progress)


def restore(src: str | os.PathLike[str], db: str, *, force: bool = False) -> str:
    """Bring the backup ``src`` back into ``db``; a line saying what was done."""
    path = Path(src)
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise BackupError(f"{src} cannot be read: {e.strerror or e}") from None
    if is_postgres(db):
        if not head.startswith(PGDUMP_MAGIC):
            kind = "a SQLite database" if head == SQLITE_MAGIC else "no pg_dump -Fc archive"
            raise BackupError(f"{src} is {kind}; a PostgreSQL database is restored from a stadsdata backup of one")
        return _postgres_restore(path, db, force)
    if head != SQLITE_MAGIC:
        kind = "a PostgreSQL dump" if head.startswith(PGDUMP_MAGIC) else "not a SQLite database"
        raise BackupError(f"{src} is {kind}; a SQLite database is restored from a stadsdata backup of one")
    return _sqlite_restore(path, Path(db), force)


# -- SQLite -------------------------------------------------------------------------------


def _sqlite_revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else str(row[0])


def _sqlite_has_data(conn: sqlite3.Connection) -> bool:
    tables = [
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if r[0] not in BOOKKEEPING and not r[0].startswith("sqlite_")
    ]
    return any(conn.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone() for t in tables)


def _sqlite_backup(path: Path, out: Path, progress: bool | None) -> str:
    from tqdm import tqdm  # type: ignore[import-untyped]

    if not path.is_file():
        raise BackupError(f"{path}: no such database file")
    started = time.monotonic()
    part = out.with_name(out.name + ".part")
    part.unlink(missing_ok=True)
    src = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        src.execute("PRAGMA busy_timeout=30000")
        # The snapshot: a read transaction held over the whole copy. Writers to the WAL go on; the copy
        # does not restart for them, and holds exactly what was committed when it began.
        src.execute("BEGIN")
        revision = _check_revision(_sqlite_revision(src), str(path))
        page_size = src.execute("PRAGMA page_size").fetchone()[0]
        pages = src.execute("PRAGMA page_count").fetchone()[0]
        show = pages * page_size > PROGRESS_ABOVE if progress is None else progress
        dst = sqlite3.connect(part, isolation_level=None)
        try:
            with tqdm(
                total=pages * page_size,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc="backup",
                disable=not show,
                file=sys.stderr,
                mininterval=0.5,
            ) as bar:

                def step(status: int, remaining: int, total: int) -> None:
                    bar.total = total * page_size
                    bar.update((total - remaining) * page_size - bar.n)

                src.backup(dst, pages=STEP_PAGES, progress=step)
            # A file on its own: no -wal beside it to be lost when it is copied elsewhere.
            dst.execute("PRAGMA journal_mode=DELETE")
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"the copy of {path} fails its check: {check}")
        finally:
            dst.close()
        src.execute("COMMIT")
    except sqlite3.Error as e:
        part.unlink(missing_ok=True)
        raise BackupError(f"backup of {path} failed: {e}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    _fsync_file_and_dir(part)
    os.replace(part, out)
    return (
        f"backed up SQLite database {path} (schema revision {revision}, {_size(out.stat().st_size)}) "
        f"to {out} in {time.monotonic() - started:.1f} s"
    )


def _sqlite_restore(src: Path, db: Path, force: bool) -> str:
    started = time.monotonic()
    try:
        source = sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as e:
        raise BackupError(f"{src} cannot be opened: {e}") from None
    try:
        try:
            revision = _check_revision(_sqlite_revision(source), str(src))
            check = source.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise BackupError(f"{src} is not a usable SQLite database: {e}") from None
        if check != "ok":
            raise BackupError(f"{src} fails its check: {check}")
        if db.exists() and db.stat().st_size > 0:
            try:
                probe = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
                try:
                    has_data = _sqlite_has_data(probe)
                finally:
                    probe.close()
            except sqlite3.DatabaseError as e:
                raise BackupError(f"{db} exists and is not a SQLite database ({e}); remove it first") from None
            if has_data and not force:
                raise BackupError(f"{db} exists and holds data; use --force to overwrite it")
        # Through SQLite, not a file copy: one transaction on the target, its -wal and any reader
        # taken care of.
        target = sqlite3.connect(db, isolation_level=None, timeout=30)
        try:
            target.execute("PRAGMA busy_timeout=30000")
            source.backup(target)
            restored = _sqlite_revision(target)
        except sqlite3.Error as e:
            raise BackupError(f"restore into {db} failed: {e}") from None
        finally:
            target.close()
    finally:
        source.close()
    return (
        f"restored SQLite database {db} from {src} (schema revision {restored}) "
        f"in {time.monotonic() - started:.1f} s"
        + ("" if revision == _head() else "; `stadsdata db upgrade` or `serve` migrates it to the newest schema")
    )


def _head() -> str:
    from stadsdata.store import migrations

    return migrations.head()


# -- PostgreSQL ---------------------------------------------------------------------------


def find_tool(name: str) -> str:
    """The PostgreSQL client program ``name``: on PATH, else the newest in /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", Path(path).parent.parent.name))

    candidates = sorted(
        (p for p in glob.glob(f"/usr/lib/postgresql/*/bin/{name}") if os.access(p, os.X_OK)), key=version
    )
    if candidates:
        return candidates[-1]
    raise BackupError(
        f"{name} is not installed: not on PATH nor in /usr/lib/postgresql/*/bin "
        "(Debian: apt-get install postgresql-client, of the server's major version or newer)"
    )


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without its password, and an environment passing the password (not on a command line)."""
    url = url.replace("postgresql+psycopg://", "postgresql://", 1)
    env = dict(os.environ)
    parts = urlsplit(url)
    if parts.password is not None:
        from urllib.parse import unquote

        env["PGPASSWORD"] = unquote(parts.password)
        netloc = parts.netloc.replace(f":{parts.password}@", "@", 1)
        url = urlunsplit(parts._replace(netloc=netloc))
    return url, env


def _run(argv: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{what} failed ({Path(argv[0]).name} exit {done.returncode}): {done.stderr.strip()}")
    return done


def _pg_query(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    try:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as conn:
            return list(conn.execute(sql).fetchall())
    except psycopg.errors.UndefinedTable:
        return []
    except psycopg.Error as e:
        raise BackupError(f"cannot query the database: {str(e).strip()}") from None


def _pg_revision(url: str) -> str | None:
    rows = _pg_query(url, "SELECT version_num FROM alembic_version")
    return str(rows[0][0]) if rows else None


def _pg_has_data(url: str) -> bool:
    tables = [
        r[0]
        for r in _pg_query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        if r[0] not in BOOKKEEPING
    ]
    return any(_pg_query(url, f'SELECT 1 FROM public."{t}" LIMIT 1') for t in tables)


def _postgres_backup(db: str, out: Path) -> str:
    from stadsdata.cli import redact

    pg_dump = find_tool("pg_dump")
    started = time.monotonic()
    revision = _check_revision(_pg_revision(db), redact(db))
    url, env = _libpq(db)
    part = out.with_name(out.name + ".part")
    part.unlink(missing_ok=True)
    try:
        _run([pg_dump, "--format=custom", f"--file={part}", f"--dbname={url}"], env, f"pg_dump of {redact(db)}")
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    _fsync_file_and_dir(part)
    os.replace(part, out)
    return (
        f"backed up PostgreSQL database {redact(db)} (schema revision {revision}, {_size(out.stat().st_size)}) "
        f"to {out} with {pg_dump} in {time.monotonic() - started:.1f} s"
    )


def _archive_revision(pg_restore: str, src: Path) -> str | None:
    """The schema revision recorded in a pg_dump archive (its alembic_version row)."""
    done = _run(
        [pg_restore, "--data-only", "--table=alembic_version", "--file=-", str(src)],
        dict(os.environ),
        f"reading {src}",
    )
    lines = done.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("COPY ") and "alembic_version" in line and i + 1 < len(lines):
            value = lines[i + 1].strip()
            return None if value in ("", "\\.") else value
    return None


def _postgres_restore(src: Path, db: str, force: bool) -> str:
    from stadsdata.cli import redact

    pg_restore = find_tool("pg_restore")
    started = time.monotonic()
    _check_revision(_archive_revision(pg_restore, src), str(src))
    if _pg_has_data(db) and not force:
        raise BackupError(f"{redact(db)} holds data; use --force to replace it")
    url, env = _libpq(db)
    _run(
        [
            pg_restore,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={url}",
            str(src),
        ],
        env,
        f"pg_restore into {redact(db)}",
    )
    restored = _pg_revision(db)
    return (
        f"restored PostgreSQL database {redact(db)} from {src} (schema revision {restored}) "
        f"with {pg_restore} in {time.monotonic() - started:.1f} s"
        + ("" if restored == _head() else "; `stadsdata db upgrade` or `serve` migrates it to the newest schema")
    )
