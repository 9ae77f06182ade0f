"""Reading contact exports as real people have them, one bounded row at a time.

Files arrive as UTF-8 with or without BOM, UTF-16, or cp1252/Latin-1; separated by commas,
semicolons or tabs; with quoted newlines, CRLF, and sometimes a ZIP of several CSVs
(Mailchimp). Nothing here holds more than one row and a small sample in memory.
"""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO, NamedTuple

SAMPLE_BYTES = 64 * 1024
# Longer physical lines are reported and skipped, so one broken line cannot exhaust memory.
MAX_LINE_CHARS = 1024 * 1024
DELIMITERS = [",", ";", "\t", "|"]
OVERLONG = "\x00deliverwell-overlong-line\x00"
# A line holding a NUL character: binary data in a text file, which PostgreSQL's COPY refuses
# in any text (one such cell would fail the whole import).
NUL_LINE = "\x00deliverwell-nul-line\x00"


class UnreadableFile(ValueError):
    """The file as a whole cannot be read as a table (binary, empty, no header)."""


class Row(NamedTuple):
    """One record: its first physical line in the file, and its cells in the header's order.

    A tuple, not a dict by header name: a million-row import builds one per row.
    """

    line: int
    cells: list[str]
    error: str = ""


@dataclass(frozen=True)
class Table:
    """One CSV: its name (a ZIP member's, or the file's), header, encoding and rows."""

    name: str
    header: list[str]
    encoding: str
    delimiter: str
    rows: Iterator[Row]


def detect_encoding(sample: bytes) -> str:
    """The encoding of a file from its first bytes: BOM first, then UTF-16 by NULs, UTF-8, cp1252."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if sample:
        even_nuls = sample[0::2].count(0)
        odd_nuls = sample[1::2].count(0)
        if odd_nuls > len(sample) // 4:
            return "utf-16-le"
        if even_nuls > len(sample) // 4:
            return "utf-16-be"
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A sample cut inside a multi-byte character is still UTF-8.
        if exc.start < len(sample) - 3:
            return "cp1252"
    return "utf-8"


def sniff_delimiter(first_line: str) -> str:
    """The delimiter that splits the header line into the most columns (outside quotes)."""
    unquoted = "".join(part for index, part in enumerate(first_line.split('"')) if index % 2 == 0)
    counts = {delimiter: unquoted.count(delimiter) for delimiter in DELIMITERS}
    best = max(counts, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def _bounded_lines(text: io.TextIOBase) -> Iterator[str]:
    while True:
        line = text.readline(MAX_LINE_CHARS)
        if not line:
            return
        if len(line) == MAX_LINE_CHARS and not line.endswith("\n"):
            while True:
                rest = text.readline(MAX_LINE_CHARS)
                if not rest or rest.endswith("\n"):
                    break
            yield OVERLONG + "\n"
            continue
        yield NUL_LINE + "\n" if "\x00" in line else line


def _binary_garbage(sample: bytes, encoding: str) -> bool:
    if encoding.startswith("utf-16"):
        return False
    text = sample.decode("cp1252", errors="replace")
    controls = sum(1 for char in text if ord(char) < 32 and char not in "\r\n\t")
    return controls > max(8, len(text) // 100)


def read_table(binary: BinaryIO, name: str, *, limit: int | None = None) -> Table:
    """Open one CSV stream. Raises UnreadableFile for binary data, an empty file or no header.

    `limit` yields only the first rows (the admin's preview reads a bounded sample).
    """
    buffered = io.BufferedReader(binary, SAMPLE_BYTES) if not isinstance(binary, io.BufferedReader) else binary
    sample = buffered.peek(SAMPLE_BYTES)[:SAMPLE_BYTES]
    if not sample.strip():
        raise UnreadableFile(f"{name}: the file is empty.")
    encoding = detect_encoding(sample)
    if _binary_garbage(sample, encoding):
        raise UnreadableFile(f"{name}: this is not a text file (is it a spreadsheet or an archive?).")
    text = io.TextIOWrapper(buffered, encoding=encoding, errors="replace", newline="")
    lines = _bounded_lines(text)
    header_line = next(lines, "")
    if header_line.startswith(OVERLONG) or not header_line.strip():
        raise UnreadableFile(f"{name}: the first line must be a header naming the columns.")
    delimiter = sniff_delimiter(header_line)
    header = [cell.strip() for cell in next(csv.reader([header_line], delimiter=delimiter))]
    if not any(header):
        raise UnreadableFile(f"{name}: the first line must be a header naming the columns.")
    rows = _rows(lines, header, delimiter)
    return Table(
        name=name,
        header=header,
        encoding=encoding,
        delimiter=delimiter,
        rows=rows if limit is None else islice(rows, limit),
    )


def _rows(lines: Iterator[str], header: list[str], delimiter: str) -> Iterator[Row]:
    csv.field_size_limit(MAX_LINE_CHARS)
    reader = csv.reader(lines, delimiter=delimiter, strict=False)
    previous_end = 1
    width = len(header)
    while True:
        start = previous_end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            previous_end = reader.line_num + 1
            yield Row(start, [], f"cannot be parsed: {exc}")
            continue
        previous_end = reader.line_num + 1
        if not any(map(str.strip, cells)):
            continue
        if cells[0].startswith(OVERLONG):
            yield Row(start, [], f"line longer than {MAX_LINE_CHARS:,} characters")
            continue
        if cells[0].startswith(NUL_LINE):
            yield Row(start, [], "holds a NUL character (binary data, not text)")
            continue
        if len(cells) != width:
            yield Row(start, [], f"has {len(cells)} fields, the header has {width}")
            continue
        yield Row(start, cells)


def open_tables(path: Path, *, display_name: str | None = None, limit: int | None = None) -> Iterator[Table]:
    """The tables in an uploaded file: each CSV of a ZIP in name order, or the file itself (`limit` rows each)."""
    name = display_name or path.name
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = sorted(
                info.filename
                for info in archive.infolist()
                if not info.is_dir()
                and info.filename.lower().endswith((".csv", ".txt"))
                and not Path(info.filename).name.startswith((".", "__MACOSX"))
                and "__MACOSX" not in info.filename
            )
            if not members:
                raise UnreadableFile(f"{name}: the ZIP file holds no CSV file.")
            for member in members:
                with archive.open(member) as stream:
                    yield read_table(stream, Path(member).name, limit=limit)
        return
    with path.open("rb") as stream:
        yield read_table(stream, name, limit=limit)
