"""The one reader of users' text files: BOM, CRLF and bytes that are not UTF-8."""

import codecs

import pytest

from lmlab.errors import DataError
from lmlab.textfile import read_lines, read_text


def test_bom_and_crlf_read_as_plain_utf8(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_bytes("a,b\nx,é\n".encode())
    windows = tmp_path / "windows.txt"
    windows.write_bytes(codecs.BOM_UTF8 + "a,b\r\nx,é\r\n".encode())
    old_mac = tmp_path / "cr.txt"
    old_mac.write_bytes("a,b\rx,é\r".encode())
    assert read_text(windows) == read_text(plain) == read_text(old_mac) == "a,b\nx,é\n"
    assert read_lines(windows) == read_lines(plain) == [(1, "a,b"), (2, "x,é")]


def test_blank_lines_keep_their_numbers(tmp_path):
    f = tmp_path / "f.txt"
    f.write_bytes(b"one\r\n\r\nthree")
    assert read_lines(f) == [(1, "one"), (2, ""), (3, "three")]


def test_bad_byte_names_file_line_column_and_byte(tmp_path):
    f = tmp_path / "latin1.csv"
    f.write_bytes("prompt\ncaf".encode() + b"\xe9 au lait\n")  # Windows-1252 e-acute
    with pytest.raises(DataError) as err:
        read_text(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}:2: ")
    assert "byte 0xe9 at column 4" in msg and "UTF-8" in msg
    assert err.value.line == 2


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_text(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="is a folder"):
        read_text(tmp_path)
