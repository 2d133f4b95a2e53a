"""The one reader of users' text files: UTF-8 with or without a byte-order mark, any line ends.

Excel, Notepad and PowerShell write a UTF-8 byte-order mark (``EF BB BF``) and Windows tools end
lines with CRLF; both must give the same rows as a plain UTF-8 file with LF line ends. Bytes
that are not UTF-8 raise a ``DataError`` naming the file, the line, the column and the byte,
never a bare ``UnicodeDecodeError``. Every stage that reads a user's file (data rows, prompts,
YAML configs, rubrics, constitutions) goes through ``read_text`` or ``read_lines``.

A leaf: imports nothing of lmlab but ``errors``.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from lmlab.errors import DataError


def decode(data: bytes, file: str) -> str:
    """``data`` as text: the BOM dropped, CRLF and lone CR turned into LF."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(data, err, file) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _not_utf8(data: bytes, err: UnicodeDecodeError, file: str) -> DataError:
    """Where the first bad byte is: its 1-based line and the column in bytes on that line."""
    at = err.start
    line = data.count(b"\n", 0, at) + 1
    column = at - (data.rfind(b"\n", 0, at) + 1) + 1
    byte = data[at]
    hint = (" (it looks like Latin-1 / Windows-1252: save the file as UTF-8)"
            if 0x80 <= byte <= 0xFF else " (save the file as UTF-8)")
    return DataError(f"not UTF-8: byte 0x{byte:02x} at column {column}{hint}", file=file,
                     line=line)


def read_text(path: str | Path) -> str:
    """The whole file as text (see ``decode``); a missing file or a folder is a DataError."""
    p = Path(path)
    if not p.exists():
        raise DataError("no such file", file=str(path))
    if p.is_dir():
        raise DataError("is a folder, not a file", file=str(path))
    return decode(p.read_bytes(), str(path))


def read_lines(path: str | Path) -> list[tuple[int, str]]:
    """``(line number, text)`` for each line of the file, 1-based, without line ends; blank
    lines are kept (callers decide whether they are rows)."""
    text = read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another
    return list(enumerate(lines, start=1))
