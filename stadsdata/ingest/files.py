"""Time series from CSV and Parquet files: ``stadsdata import FILE``.

A file is read in fixed-size chunks of rows; each chunk becomes one ``Message`` of many readings
that ``Service.ingest`` commits on the bulk path together with its key. The source is the file's
SHA-256 and the key the chunk number (and a fingerprint of the mapping), so running the same
import again after a crash or Ctrl-C skips the chunks that were committed and goes on with the
rest: every row ends up stored exactly once.

A row that cannot be used (a time that does not parse, a value that is no number, an unknown
Datastream, a local time that does not exist) does not stop the import: it goes to the rejected
file with its line number, the raw row and the reason. Input that cannot be used at all (a
missing file, a mapping that names a column the file lacks, a corrupt Parquet file) raises
``ImportProblem`` before anything is stored, with a message fit for the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import hashlib
import io
import itertools
import math
import os
import re
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from stadsdata.ingest.base import Delivery, Message, Reading
from stadsdata.model.values import MAX_MICROS, MIN_MICROS, to_micros

if TYPE_CHECKING:
    from stadsdata.service import Service
    from stadsdata.settings import Settings

CHUNK_ROWS = 10_000
"""Rows per chunk, so per message and per transaction: large enough for the bulk path to pay off,
small enough that an interrupted import loses little work."""

TIME_FORMATS = ("iso", "epoch-s", "epoch-ms")
"""Named time formats; anything else with a ``%`` in it is a ``strptime`` pattern."""

DST_POLICIES = ("reject", "earlier", "later", "infer")
EMPTY_POLICIES = ("skip", "reject")
FORMATS = ("csv", "parquet")
PARQUET_SUFFIXES = (".parquet", ".pq")
PARQUET_HINT = "reading Parquet files needs pyarrow: pip install 'stadsdata[files]'"


class ImportProblem(Exception):
    """Input the import cannot use at all; the message says what and how to fix it."""


# -- the mapping ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueColumn:
    """A column of values for one Datastream (wide format): ``value * scale + offset`` is stored."""

    column: str
    datastream: int
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class LongFormat:
    """One value per row: a column names the Datastream (an id, or a name of ``names``), another holds the value."""

    datastream_column: str
    value_column: str
    names: dict[str, int] = field(default_factory=dict)
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class FileMapping:
    """How the columns of a file become readings."""

    time: str
    time_format: str = "iso"
    timezone: str = "UTC"
    """The IANA zone of times without an offset; times with one keep theirs."""
    dst: str = "reject"
    """A local time that occurs twice or not at all: reject the row, take the earlier or the later instant, or
    ``infer`` from the order of the file (the first occurrence of a repeated time is the earlier)."""
    values: tuple[ValueColumn, ...] = ()
    long: LongFormat | None = None
    result_time: str | None = None
    decimal: str = "."
    delimiter: str | None = None
    """CSV only; None: detected from the header line."""
    empty: str = "skip"
    """An empty value cell: no reading (skip), or a rejected row (reject)."""
    chunk_rows: int = CHUNK_ROWS
    encoding: str = "utf-8-sig"

    def __post_init__(self) -> None:
        if not self.time:
            raise ImportProblem('the mapping needs the time column (--time COLUMN or time = "...")')
        if self.time_format not in TIME_FORMATS and "%" not in self.time_format:
            raise ImportProblem(
                f"time format {self.time_format!r}: use iso, epoch-s, epoch-ms or a strptime pattern such as %Y-%m-%d"
            )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ImportProblem(
                f"time zone {self.timezone!r} is not an IANA zone name such as Europe/Amsterdam"
            ) from None
        if self.dst not in DST_POLICIES:
            raise ImportProblem(f"dst {self.dst!r}: use one of {', '.join(DST_POLICIES)}")
        if self.empty not in EMPTY_POLICIES:
            raise ImportProblem(f"empty {self.empty!r}: use one of {', '.join(EMPTY_POLICIES)}")
        if self.decimal not in (".", ","):
            raise ImportProblem(f"decimal {self.decimal!r}: use . or ,")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ImportProblem(f"delimiter {self.delimiter!r} must be one character (\\t for a tab)")
        if not self.values and self.long is None:
            raise ImportProblem(
                "the mapping names no value column: --value COLUMN=DATASTREAM (wide) or "
                "--datastream-column and --value-column (long)"
            )
        if self.values and self.long is not None:
            raise ImportProblem("a mapping is wide (value columns) or long (a datastream column), not both")
        if self.chunk_rows < 1:
            raise ImportProblem(f"chunk_rows must be at least 1, not {self.chunk_rows}")

    def fingerprint(self) -> str:
        """What the readings depend on, hashed: a different mapping of the same file is a different import."""
        doc = asdict(self)
        doc.pop("encoding")  # a wrong encoding fails loudly; it does not change what is stored
        return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]

    def columns(self) -> list[str]:
        """The columns the mapping reads, each once."""
        names = [self.time, *(v.column for v in self.values)]
        if self.long is not None:
            names += [self.long.datastream_column, self.long.value_column]
        if self.result_time is not None:
            names.append(self.result_time)
        return list(dict.fromkeys(names))


def parse_value_spec(spec: str) -> ValueColumn:
    """``COLUMN=DATASTREAM[:SCALE[:OFFSET]]`` from the command line."""
    column, sep, rest = spec.rpartition("=")
    parts = rest.split(":")
    if not sep or not column or not 1 <= len(parts) <= 3:
        raise ImportProblem(f"--value {spec!r}: expected COLUMN=DATASTREAM_ID[:SCALE[:OFFSET]], e.g. RH=3:0.1")
    try:
        datastream = int(parts[0])
        scale = float(parts[1]) if len(parts) > 1 else 1.0
        offset = float(parts[2]) if len(parts) > 2 else 0.0
    except ValueError:
        raise ImportProblem(f"--value {spec!r}: the Datastream id, scale and offset must be numbers") from None
    return ValueColumn(column, datastream, scale, offset)


def load_mapping(path: str | None, overrides: dict[str, Any] | None = None) -> FileMapping:
    """The mapping of a TOML file (if any) with ``overrides`` (from flags; None values ignored) on top."""
    doc: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except OSError as exc:
            raise ImportProblem(f"mapping file {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ImportProblem(f"mapping file {path} is not valid TOML: {exc}") from None
    where = f"mapping file {path}" if path else "mapping"
    values = _toml_values(doc.pop("values", {}), where)
    long = _toml_long(doc.pop("long", None), where)
    known = {f for f in FileMapping.__dataclass_fields__ if f not in ("values", "long")}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ImportProblem(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "values":
            values = tuple(value)
        elif key == "long":
            long = value
        else:
            doc[key] = value
    if values and long is not None and overrides and overrides.get("long") is not None:
        values = ()  # long format from the command line replaces value columns of the file
    for key, kind in (("chunk_rows", int), ("time", str), ("timezone", str), ("time_format", str)):
        if key in doc and not isinstance(doc[key], kind):
            raise ImportProblem(f"{where}: {key} must be a {kind.__name__}")
    if "time" not in doc:
        raise ImportProblem('the mapping needs the time column (--time COLUMN, or time = "..." in the mapping file)')
    try:
        return FileMapping(values=values, long=long, **doc)
    except TypeError as exc:
        raise ImportProblem(f"{where}: {exc}") from None


def _toml_values(table: object, where: str) -> tuple[ValueColumn, ...]:
    if not isinstance(table, dict):
        raise ImportProblem(f"{where}: [values] must be a table of column = datastream id")
    out = []
    for column, spec in table.items():
        if isinstance(spec, int) and not isinstance(spec, bool):
            out.append(ValueColumn(column, spec))
        elif isinstance(spec, dict) and isinstance(spec.get("datastream"), int):
            extra = set(spec) - {"datastream", "scale", "offset"}
            if extra:
                raise ImportProblem(f"{where}: values.{column}: unknown key(s) {', '.join(sorted(extra))}")
            out.append(
                ValueColumn(
                    column,
                    spec["datastream"],
                    _number_of(spec, "scale", 1.0, where),
                    _number_of(spec, "offset", 0.0, where),
                )
            )
        else:
            raise ImportProblem(
                f"{where}: values.{column} must be a Datastream id or {{ datastream = 1, scale = 0.1, offset = 0 }}"
            )
    return tuple(out)


def _toml_long(table: object, where: str) -> LongFormat | None:
    if table is None:
        return None
    if (
        not isinstance(table, dict)
        or not isinstance(table.get("datastream"), str)
        or not isinstance(table.get("value"), str)
    ):
        raise ImportProblem(f'{where}: [long] needs datastream = "<column>" and value = "<column>"')
    names = table.get("datastreams", {})
    if not isinstance(names, dict) or not all(isinstance(v, int) for v in names.values()):
        raise ImportProblem(f"{where}: [long.datastreams] must map names to Datastream ids")
    extra = set(table) - {"datastream", "value", "datastreams", "scale", "offset"}
    if extra:
        raise ImportProblem(f"{where}: [long]: unknown key(s) {', '.join(sorted(extra))}")
    return LongFormat(
        table["datastream"],
        table["value"],
        dict(names),
        _number_of(table, "scale", 1.0, where),
        _number_of(table, "offset", 0.0, where),
    )


def _number_of(table: dict[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImportProblem(f"{where}: {key} must be a number")
    return float(value)


# -- reading files ----------------------------------------------------------------------------


class _Source:
    """The rows of a file as (line or row number, cells), and how to print one."""

    label = "line"
    columns: list[str]
    total: int | None

    def index(self, column: str) -> int:
        try:
            return self.columns.index(column)
        except ValueError:
            shown = ", ".join(self.columns[:30]) + (", …" if len(self.columns) > 30 else "")
            raise ImportProblem(f"the file has no column {column!r}; its columns are: {shown}") from None

    def records(self) -> Iterator[tuple[int, Sequence[Any]]]:
        raise NotImplementedError

    def raw(self, cells: Sequence[Any]) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""


class _CsvSource(_Source):
    def __init__(self, path: Path, mapping: FileMapping, lines: int) -> None:
        try:
            self.file: TextIO = open(path, encoding=mapping.encoding, newline="")  # noqa: SIM115 (closed by close())
            first = self.file.readline()
            self.file.seek(0)
        except UnicodeDecodeError as exc:
            raise ImportProblem(f"{path} is not {mapping.encoding} text ({exc.reason}); set the encoding") from None
        self.delimiter = mapping.delimiter or _detect_delimiter(first)
        self.reader = csv.reader(self.file, delimiter=self.delimiter)
        try:
            header = next(self.reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ImportProblem(f"{path}: cannot read the header line: {exc}") from None
        if not header:
            raise ImportProblem(f"{path} is empty: it needs a header line naming the columns")
        self.columns = [c.strip() for c in header]
        self.total = max(lines - 1, 0)
        out = io.StringIO()
        self._out = out
        self._writer = csv.writer(out, delimiter=self.delimiter, lineterminator="")

    def records(self) -> Iterator[tuple[int, Sequence[Any]]]:
        reader = self.reader
        try:
            for row in reader:
                if row:
                    yield reader.line_num, row
        except UnicodeDecodeError as exc:
            raise ImportProblem(f"line {reader.line_num + 1} is not {self.file.encoding} text ({exc.reason})") from None
        except csv.Error as exc:
            raise ImportProblem(f"line {reader.line_num}: {exc}") from None

    def raw(self, cells: Sequence[Any]) -> str:
        self._out.seek(0)
        self._out.truncate()
        self._writer.writerow(cells)
        return self._out.getvalue()

    def close(self) -> None:
        self.file.close()


def _detect_delimiter(header: str) -> str:
    """The candidate that occurs most in the header line: column names rarely hold any of them."""
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


class _ParquetSource(_Source):
    label = "row"

    def __init__(self, path: Path, mapping: FileMapping) -> None:
        try:
            import pyarrow
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportProblem(PARQUET_HINT) from None
        self._errors = (pyarrow.ArrowException, OSError)
        try:
            self.file = pq.ParquetFile(path)
        except self._errors as exc:
            raise ImportProblem(f"{path} is not a readable Parquet file: {exc}") from None
        self.path = path
        self.columns = list(self.file.schema_arrow.names)
        self.total = int(self.file.metadata.num_rows)
        self.wanted = mapping.columns()
        self.batch = mapping.chunk_rows

    def index(self, column: str) -> int:
        super().index(column)
        return self.wanted.index(column)  # records hold only the wanted columns, in this order

    def records(self) -> Iterator[tuple[int, Sequence[Any]]]:
        n = 0
        try:
            for batch in self.file.iter_batches(batch_size=self.batch, columns=self.wanted):
                columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
                for cells in zip(*columns, strict=True):
                    n += 1
                    yield n, cells
        except self._errors as exc:
            raise ImportProblem(f"{self.path}: cannot read row {n + 1} on: {exc}") from None

    def raw(self, cells: Sequence[Any]) -> str:
        return orjson.dumps(dict(zip(self.wanted, cells, strict=True)), default=str).decode()

    def close(self) -> None:
        self.file.close()


def open_source(path: Path, mapping: FileMapping, fmt: str | None = None, lines: int = 0) -> _Source:
    """The reader of ``path``: Parquet for .parquet/.pq (or ``fmt``), CSV otherwise."""
    fmt = fmt or ("parquet" if path.suffix.lower() in PARQUET_SUFFIXES else "csv")
    if fmt == "parquet":
        return _ParquetSource(path, mapping)
    return _CsvSource(path, mapping, lines)


def digest(path: Path) -> tuple[str, int]:
    """The SHA-256 of the file (what identifies it across runs) and its number of newlines (for progress)."""
    h = hashlib.sha256()
    lines = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            lines += block.count(b"\n")
    return h.hexdigest(), lines


# -- decoding rows ----------------------------------------------------------------------------


class _Bad(Exception):
    """A cell that cannot be used; the message is the reason written to the rejected file."""


class _Empty(Exception):
    """A cell without a value."""


@dataclass(frozen=True)
class _Ambiguous:
    """A local time that occurs twice (``infer`` decides by the order of the file)."""

    wall: dt.datetime
    earlier: int
    later: int


_NAIVE_EPOCH = dt.datetime(1970, 1, 1)
_MICROSECOND = dt.timedelta(microseconds=1)
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(\.\d{3})+(,\d*)?")


class _Decoder:
    """Cells to readings, following the mapping; one per import, as ``infer`` keeps state across chunks."""

    def __init__(self, mapping: FileMapping, source: _Source) -> None:
        self.mapping = mapping
        self.zone = ZoneInfo(mapping.timezone)
        self.utc = mapping.timezone in ("UTC", "Etc/UTC", "Z")
        self.time_at = source.index(mapping.time)
        self.result_at = source.index(mapping.result_time) if mapping.result_time else None
        self.values = [(source.index(v.column), v) for v in mapping.values]
        long = mapping.long
        self.long_at = (source.index(long.datastream_column), source.index(long.value_column)) if long else None
        self.width = 1 + max([self.time_at, *(i for i, _ in self.values), *(self.long_at or ()), self.result_at or 0])
        self.seen_ambiguous: set[tuple[int, dt.datetime]] = set()
        self._local: dict[dt.datetime, int | _Ambiguous] = {}
        self._fmt = mapping.time_format
        self.comma = mapping.decimal == ","

    # time

    def time(self, cell: object) -> int | _Ambiguous:
        """Microseconds UTC, or the two instants of an ambiguous local time under ``infer``."""
        if cell is None:
            raise _Bad("no time")
        fmt = self._fmt
        if isinstance(cell, str):
            text = cell.strip()
            if not text:
                raise _Bad("no time")
            if fmt.startswith("epoch"):
                return self._epoch(text)
            try:
                value = dt.datetime.fromisoformat(text) if fmt == "iso" else dt.datetime.strptime(text, fmt)
            except ValueError:
                shown = "ISO 8601" if fmt == "iso" else repr(fmt)
                raise _Bad(f"time {text!r} does not match the format {shown}") from None
        elif isinstance(cell, dt.datetime):
            value = cell
        elif isinstance(cell, dt.date):
            value = dt.datetime(cell.year, cell.month, cell.day)
        elif isinstance(cell, int | float) and not isinstance(cell, bool):
            if not fmt.startswith("epoch"):
                raise _Bad(f"time {cell!r} is a number; for seconds or milliseconds since 1970 use epoch-s or epoch-ms")
            return self._epoch(cell)
        else:
            raise _Bad(f"time {cell!r} is not a time")
        if value.tzinfo is None:
            return self._localize(value)
        try:
            us = to_micros(value)
        except OverflowError:
            raise _Bad(f"time {value.isoformat()} is outside the years 1 to 9999") from None
        return self._checked(us, value)

    def _epoch(self, cell: str | int | float) -> int:
        try:
            whole = isinstance(cell, int) or (isinstance(cell, str) and cell.lstrip("-").isdigit())
            number = int(cell) if whole else float(cell)
        except ValueError:
            unit = "seconds" if self._fmt == "epoch-s" else "milliseconds"
            raise _Bad(f"time {cell!r} is not a number of {unit} since 1970") from None
        factor = 1_000_000 if self._fmt == "epoch-s" else 1_000
        if isinstance(number, float):
            if not math.isfinite(number):
                raise _Bad(f"time {cell!r} is not a finite number")
            return self._checked(round(number * factor), cell)
        return self._checked(number * factor, cell)

    @staticmethod
    def _checked(us: int, shown: object) -> int:
        if not MIN_MICROS <= us <= MAX_MICROS:
            raise _Bad(f"time {shown} is outside the years 1 to 9999")
        return us

    def _localize(self, wall: dt.datetime) -> int | _Ambiguous:
        if self.utc:
            return (wall - _NAIVE_EPOCH) // _MICROSECOND  # naive: always within the years 1 to 9999
        known = self._local.get(wall)
        if known is not None:
            return known
        if len(self._local) > 100_000:
            self._local.clear()
        try:
            first = wall.replace(tzinfo=self.zone, fold=0)
            second = wall.replace(tzinfo=self.zone, fold=1)
            a, b = to_micros(first), to_micros(second)
        except OverflowError:
            raise _Bad(f"time {wall.isoformat()} is outside the years 1 to 9999") from None
        out: int | _Ambiguous
        if a == b:
            out = a
        else:
            earlier, later = min(a, b), max(a, b)
            exists = first.astimezone(dt.UTC).astimezone(self.zone).replace(tzinfo=None) == wall
            policy = self.mapping.dst
            if policy == "reject" or (policy == "infer" and not exists):
                if exists:
                    raise _Bad(
                        f"local time {wall.isoformat(sep=' ')} occurs twice in {self.mapping.timezone} (clocks go "
                        "back); choose --dst earlier, later or infer"
                    )
                raise _Bad(
                    f"local time {wall.isoformat(sep=' ')} does not exist in {self.mapping.timezone} (clocks go "
                    "forward); choose --dst earlier or later"
                )
            out = _Ambiguous(wall, earlier, later) if policy == "infer" else earlier if policy == "earlier" else later
        self._local[wall] = out
        return out

    def _infer(self, t: _Ambiguous, series: int) -> int:
        """The first occurrence of a repeated local time (per Datastream) is the earlier instant, the next the later."""
        key = (series, t.wall)
        if key in self.seen_ambiguous:
            return t.later
        self.seen_ambiguous.add(key)
        return t.earlier

    # values

    def number(self, cell: object, scale: float, offset: float) -> int | float:
        value: int | float
        if type(cell) is str:
            text = cell.strip()
            if not text:
                raise _Empty
            if self.comma:
                if "." in text:
                    if not _THOUSANDS.fullmatch(text):
                        raise _Bad(f"{text!r} is not a number with a decimal comma")
                    text = text.replace(".", "")
                text = text.replace(",", ".")
            if text.isdigit() and text.isascii():  # the common case; int() would accept "1_000"
                value = int(text)
            elif "_" in text:
                raise _Bad(f"{cell!r} is not a number")
            else:
                try:
                    value = int(text) if text[1:].isdigit() else float(text)
                except ValueError:
                    raise _Bad(f"{cell!r} is not a number") from None
                if not math.isfinite(value):
                    raise _Bad(f"{cell!r} is not a finite number")
        elif cell is None:
            raise _Empty
        elif isinstance(cell, int | float) and not isinstance(cell, bool):
            value = cell
            if not math.isfinite(value):
                raise _Bad(f"{cell!r} is not a finite number")
        else:
            raise _Bad(f"{cell!r} is not a number")
        if scale != 1.0 or offset != 0.0:
            value = float(f"{value * scale + offset:.12g}")  # 0.1 * 9 is 0.9, not 0.9000000000000001
        return value

    def datastream(self, cell: object) -> int:
        assert self.mapping.long is not None
        if cell is None or (isinstance(cell, str) and not cell.strip()):
            raise _Bad("no Datastream")
        key = cell.strip() if isinstance(cell, str) else cell
        if isinstance(key, str) and key in self.mapping.long.names:
            return self.mapping.long.names[key]
        if isinstance(key, int) and not isinstance(key, bool):
            return key
        if isinstance(key, str) and key.isdigit():
            return int(key)
        raise _Bad(f"Datastream {key!r} is not an id, nor a name of the mapping's [long.datastreams]")

    # rows

    def decode(
        self, records: list[tuple[int, Sequence[Any]]]
    ) -> tuple[list[Reading], list[int], list[tuple[int, str, str]], int]:
        """Readings of a chunk; for each, the index of its record; the rejects (record index, column, reason);
        the number of empty value cells skipped."""
        readings: list[Reading] = []
        origins: list[int] = []
        rejects: list[tuple[int, str, str]] = []
        empty = 0
        skip_empty = self.mapping.empty == "skip"
        time_at, result_at, width = self.time_at, self.result_at, self.width
        long = self.mapping.long
        time_column = self.mapping.time
        for i, (_, cells) in enumerate(records):
            if len(cells) < width:
                rejects.append((i, "", f"the row has {len(cells)} fields; the mapping reads field {width}"))
                continue
            column = time_column
            try:
                t = self.time(cells[time_at])
                result_time: int | None = None
                if result_at is not None:
                    column = self.mapping.result_time or ""
                    rt = self.time(cells[result_at])
                    result_time = rt if isinstance(rt, int) else self._infer(rt, -2)
                if long is not None:
                    column = long.datastream_column
                    ds = self.datastream(cells[self.long_at[0]])  # type: ignore[index]
                    column = long.value_column
                    try:
                        value = self.number(cells[self.long_at[1]], long.scale, long.offset)  # type: ignore[index]
                    except _Empty:
                        if skip_empty:
                            empty += 1
                            continue
                        raise _Bad("no value") from None
                    when = t if isinstance(t, int) else self._infer(t, ds)
                    readings.append(Reading(ds, when, value, result_time))
                    origins.append(i)
                    continue
            except _Bad as exc:
                rejects.append((i, column, str(exc)))
                continue
            when = t if isinstance(t, int) else self._infer(t, -1)
            for at, spec in self.values:
                try:
                    value = self.number(cells[at], spec.scale, spec.offset)
                except _Empty:
                    if skip_empty:
                        empty += 1
                        continue
                    rejects.append((i, spec.column, "no value"))
                    continue
                except _Bad as exc:
                    rejects.append((i, spec.column, str(exc)))
                    continue
                readings.append(Reading(spec.datastream, when, value, result_time))
                origins.append(i)
        return readings, origins, rejects, empty


# -- the import ----------------------------------------------------------------------------


@dataclass
class Summary:
    """What an import did; ``line()`` is what the command prints."""

    rows: int = 0
    imported: int = 0
    skipped: int = 0
    """Readings of chunks committed by an earlier run (resumed)."""
    rejected: int = 0
    empty: int = 0
    chunks: int = 0
    skipped_chunks: int = 0
    seconds: float = 0.0
    rejected_path: str | None = None

    def line(self) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        rejected = f"{self.rejected:,} rejected" + (f" (see {self.rejected_path})" if self.rejected else "")
        return (
            f"imported {self.imported:,} observations from {self.rows:,} rows; "
            f"{self.skipped:,} skipped as imported before ({self.skipped_chunks} of {self.chunks} chunks); "
            f"{rejected}; {self.empty:,} empty cells; {self.seconds:.1f} s, {rate:,.0f} rows/s"
        )


class _Rejects:
    """The rejected file, written from scratch by every run (chunks skipped on resume are decoded again)."""

    def __init__(self, path: Path, label: str) -> None:
        self.path = path
        self.label = label
        self.file: TextIO | None = None
        self.writer: Any = None
        self.count = 0

    def add(self, line: int | str, column: str, reason: str, raw: str) -> None:
        if self.file is None:
            self.file = open(self.path, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed by close())
            self.writer = csv.writer(self.file)
            self.writer.writerow([self.label, "column", "reason", "raw"])
        self.writer.writerow([line, column, reason, raw])
        self.count += 1

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


async def import_file(
    service: Service,
    path: str | os.PathLike[str],
    mapping: FileMapping,
    *,
    fmt: str | None = None,
    rejected: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    on_chunk: Callable[[int, Delivery], None] | None = None,
) -> Summary:
    """Import ``path`` through ``service.ingest``, one message per chunk; safe to run again after an interruption.

    ``on_chunk(n, delivery)`` is called after chunk ``n`` was committed (tests interrupt here).
    Raises ``ImportProblem`` for input that cannot be used at all.
    """
    from tqdm import tqdm  # type: ignore[import-untyped]

    from stadsdata.model.entities import DATASTREAM

    started = time.perf_counter()
    file = Path(path)
    if not file.is_file():
        raise ImportProblem(f"{file}: no such file")
    if fmt is not None and fmt not in FORMATS:
        raise ImportProblem(f"format {fmt!r}: use csv or parquet")
    sha, lines = digest(file)
    source_name = f"file:{sha}"
    fingerprint = mapping.fingerprint()
    src = open_source(file, mapping, fmt, lines)
    rejected_path = Path(rejected) if rejected is not None else file.with_name(file.name + ".rejected.csv")
    summary = Summary(rejected_path=str(rejected_path))
    try:
        decoder = _Decoder(mapping, src)
        known: dict[int, bool] = {}

        async def exist(ids: set[int]) -> None:
            missing = sorted(ids - known.keys())
            if missing:
                found = await service.store.run_read(lambda tx: [tx.exists(DATASTREAM, i) for i in missing])
                known.update(zip(missing, found, strict=True))

        wide = {v.datastream for v in mapping.values}
        await exist(wide)
        absent = [f"{v.column} → {v.datastream}" for v in mapping.values if not known[v.datastream]]
        if absent:
            raise ImportProblem(f"there is no Datastream with these ids: {', '.join(absent)}; create them first")
        if rejected_path.is_file():
            rejected_path.unlink()  # from an earlier run: this run writes it again in full, or not at all
        rejects = _Rejects(rejected_path, src.label)
        show = progress if progress is not None else sys.stderr.isatty()
        bar = tqdm(
            total=src.total,
            unit=" rows",
            desc=file.name,
            file=sys.stderr,
            disable=not show,
            mininterval=0.5,
            unit_scale=True,
        )
        pending: tuple[int, int, asyncio.Task[Delivery]] | None = None

        async def settle() -> None:
            nonlocal pending
            if pending is None:
                return
            n, size, task = pending
            pending = None
            delivery = await task
            if delivery.duplicate:
                summary.skipped += size
                summary.skipped_chunks += 1
            else:
                summary.imported += len(delivery.created)
                for reason in delivery.rejected:
                    rejects.add("", "", f"chunk {n}: {reason} (kept as a dead letter)", "")
            if on_chunk is not None:
                on_chunk(n, delivery)

        try:
            for n, chunk in enumerate(_chunks(src.records(), mapping.chunk_rows)):
                readings, origins, bad, empty = decoder.decode(chunk)
                if mapping.long is not None:
                    await exist({r.datastream_id for r in readings})
                    if not all(known[r.datastream_id] for r in readings):
                        readings = _known_only(readings, origins, known, bad, mapping.long.datastream_column)
                for i, column, reason in sorted(bad, key=lambda b: b[0]):
                    line, cells = chunk[i]
                    rejects.add(line, column, reason, src.raw(cells))
                summary.rows += len(chunk)
                summary.empty += empty
                summary.chunks += 1
                await settle()
                message = Message(source_name, f"chunk:{n}:{fingerprint}", tuple(readings), path="file")
                pending = (n, len(readings), asyncio.ensure_future(service.ingest(message)))
                bar.update(len(chunk))
            await settle()
        finally:
            if pending is not None:
                await asyncio.wait([pending[2]])  # let a submitted chunk finish, so that the store closes cleanly
            bar.close()
            rejects.close()
            summary.rejected = rejects.count
    finally:
        src.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _known_only(
    readings: list[Reading], origins: list[int], known: dict[int, bool], bad: list[tuple[int, str, str]], column: str
) -> list[Reading]:
    """The readings of existing Datastreams; the others become rejects of their rows."""
    keep = []
    for reading, origin in zip(readings, origins, strict=True):
        if known[reading.datastream_id]:
            keep.append(reading)
        else:
            bad.append((origin, column, f"there is no Datastream with @iot.id {reading.datastream_id}"))
    return keep


def _chunks(records: Iterator[tuple[int, Sequence[Any]]], size: int) -> Iterator[list[tuple[int, Sequence[Any]]]]:
    """Consecutive runs of ``size`` records: the same file gives the same chunks on every run."""
    while chunk := list(itertools.islice(records, size)):
        yield chunk


# -- the command ----------------------------------------------------------------------------


def mapping_from_args(args: argparse.Namespace) -> FileMapping:
    """The mapping of ``--mapping`` with the flags of ``stadsdata import`` on top."""
    long = None
    if args.datastream_column or args.value_column:
        if not (args.datastream_column and args.value_column):
            raise ImportProblem("long format needs both --datastream-column and --value-column")
        names = {}
        for spec in args.datastream or ():
            name, sep, id_text = spec.rpartition("=")
            if not sep or not name or not id_text.strip().isdigit():
                raise ImportProblem(f"--datastream {spec!r}: expected NAME=DATASTREAM_ID, e.g. T=4")
            names[name] = int(id_text)
        long = LongFormat(args.datastream_column, args.value_column, names)
    delimiter = "\t" if args.delimiter in ("\\t", "tab") else args.delimiter
    overrides: dict[str, Any] = {
        "time": args.time,
        "time_format": args.time_format,
        "timezone": args.timezone,
        "dst": args.dst,
        "result_time": args.result_time,
        "decimal": args.decimal,
        "delimiter": delimiter,
        "empty": args.empty,
        "chunk_rows": args.chunk_rows,
        "encoding": args.encoding,
        "values": tuple(parse_value_spec(v) for v in args.value) if args.value else None,
        "long": long,
    }
    return load_mapping(args.mapping, overrides)


def command(settings: Settings, args: argparse.Namespace) -> int:
    """``stadsdata import``: 0 when every row was handled (rejected rows included), 2 for unusable input."""
    from stadsdata.model.entities import sensing_registry
    from stadsdata.service import Service
    from stadsdata.store import open_store

    async def run(mapping: FileMapping) -> Summary:
        store = open_store(settings.db, sensing_registry(), synchronous=settings.synchronous)
        try:
            service = Service(store.registry, store)
            return await import_file(
                service, args.file, mapping, fmt=args.format, rejected=args.rejected, progress=args.progress
            )
        finally:
            await store.close()

    try:
        mapping = mapping_from_args(args)
        if not Path(args.file).is_file():
            raise ImportProblem(f"{args.file}: no such file")
        summary = asyncio.run(run(mapping))
    except ImportProblem as exc:
        print(f"stadsdata import: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "stadsdata import: interrupted; the chunks committed so far are kept: run the same command again to "
            "go on where it stopped",
            file=sys.stderr,
        )
        return 130
    print(summary.line())
    return 0
