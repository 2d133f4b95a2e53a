"""What users' tools write: a UTF-8 byte-order mark and CRLF line ends load as the same rows as
plain UTF-8 with LF, in every reader of users' files; bytes that are not UTF-8 are a DataError
naming the file, the line and the byte."""

import codecs
import types

import pytest

from lmlab.data import load_rows
from lmlab.errors import DataError, UserError

CHAT_JSONL = ('{"messages": [{"role": "user", "content": "Café?"}, '
              '{"role": "assistant", "content": "Oui."}]}\n'
              "\n"
              '{"prompt": "2+2?", "completion": "4"}\n'
              '{"prompt": "Say hi.", "completion": "hi"}\n')
CHAT_JSON = ('[\n  {"prompt": "Café?", "completion": "Oui."},\n'
             '  {"prompt": "2+2?", "completion": "4"},\n'
             '  {"prompt": "Say hi.", "completion": "hi"}\n]\n')
# a quoted cell spanning two lines: its line end is CRLF in the Windows file and LF after reading
CHAT_CSV = ('prompt,completion\nCafé?,Oui.\n"Two lines:\nwhich?",second\n'
            'Say hi.,hi\n')
PREFS_JSONL = ('{"prompt": "Café?", "chosen": "Oui.", "rejected": "Non."}\n'
               '{"prompt": "2+2?", "chosen": "4", "rejected": "5"}\n')
TEXT_JSONL = '{"text": "première ligne"}\n{"text": "second"}\n'


def windows(text: str) -> bytes:
    """What Notepad / Excel / PowerShell write: a BOM, then CRLF line ends."""
    return codecs.BOM_UTF8 + text.replace("\n", "\r\n").encode("utf-8")


def both(tmp_path, name: str, text: str) -> tuple[str, str]:
    plain, win = tmp_path / f"plain{name}", tmp_path / f"win{name}"
    plain.write_bytes(text.encode("utf-8"))
    win.write_bytes(windows(text))
    return str(plain), str(win)


@pytest.mark.parametrize("name,text,kind,n", [
    (".jsonl", CHAT_JSONL, "chat", 3), (".json", CHAT_JSON, "chat", 3),
    (".csv", CHAT_CSV, "chat", 3), (".jsonl", PREFS_JSONL, "preference", 2),
    (".jsonl", TEXT_JSONL, "text", 2)])
def test_bom_and_crlf_give_the_same_rows(tmp_path, name, text, kind, n):
    plain, win = both(tmp_path, name, text)
    rows = load_rows(plain, kind)
    assert len(rows) == n and load_rows(win, kind) == rows


def test_crlf_csv_keeps_the_header_and_the_quoted_newline(tmp_path):
    _, win = both(tmp_path, ".csv", CHAT_CSV)
    rows = load_rows(win, "chat")
    assert rows[0]["messages"][0]["content"] == "Café?"  # not '\ufeffprompt' as the column
    assert rows[1]["messages"][0]["content"] == "Two lines:\nwhich?"


def test_csv_line_numbers_count_quoted_newlines(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('prompt,completion\n"a\nb",x\nc,\n')
    with pytest.raises(DataError) as info:
        load_rows(str(path), "chat")
    assert str(info.value).startswith(f"{path}:4: field 'completion': is empty")


def test_csv_with_only_a_header_has_no_rows(tmp_path):
    path = tmp_path / "h.csv"
    path.write_bytes(windows("prompt,completion\n"))
    with pytest.raises(DataError, match="no rows"):
        load_rows(str(path), "chat")


@pytest.mark.parametrize("name,data", [
    (".jsonl", b'{"text": "ok"}\n{"text": "ok"}\n{"text": "caf\xe9"}\n'),
    (".csv", b"text\nok\ncaf\xe9\n"),
    (".json", b'[{"text": "ok"},\n {"text": "ok"},\n {"text": "caf\xe9"}]\n')])
def test_latin1_byte_names_file_line_and_byte(tmp_path, name, data):
    # line 3 holds "cafe" with an e-acute written by a Latin-1 / Windows-1252 tool: one byte 0xe9
    path = tmp_path / f"latin1{name}"
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        load_rows(str(path), "text")
    msg = str(info.value)
    assert msg.startswith(f"{path}:3: not UTF-8: byte 0xe9 at column ") and "Latin-1" in msg


# --- the other readers of users' files ----------------------------------------------------------


PROMPTS_TXT = "Café?\n\nSay hi.\n"
PROMPTS_JSONL = '{"prompt": "Café?"}\n\n{"messages": [{"role": "user", "content": "Say hi."}]}\n'


@pytest.mark.parametrize("name,text", [(".txt", PROMPTS_TXT), (".jsonl", PROMPTS_JSONL)])
def test_generate_prompt_files(tmp_path, name, text):
    from lmlab.stages.generate import load_prompts

    plain, win = both(tmp_path, name, text)
    def cfg(path):
        return types.SimpleNamespace(prompt="", data=path, limit=None)

    rows = load_prompts(cfg(plain))
    assert len(rows) == 2 and rows == load_prompts(cfg(win))
    assert rows[0]["prompt"] == "Café?"


def test_generate_prompt_file_bad_byte_and_empty(tmp_path):
    from lmlab.stages.generate import load_prompts

    bad = tmp_path / "p.txt"
    bad.write_bytes(b"one\ntwo\nna\xefve\n")
    with pytest.raises(DataError, match=rf"^{bad}:3: not UTF-8: byte 0xef"):
        load_prompts(types.SimpleNamespace(prompt="", data=str(bad), limit=None))
    empty = tmp_path / "e.txt"
    empty.write_bytes(windows("\n\n"))
    with pytest.raises(DataError, match="no prompts"):
        load_prompts(types.SimpleNamespace(prompt="", data=str(empty), limit=None))


@pytest.mark.parametrize("name,text", [(".txt", PROMPTS_TXT), (".jsonl", PROMPTS_JSONL)])
def test_preference_prompt_files(tmp_path, name, text):
    from lmlab.data.preferences import load_prompt_rows

    plain, win = both(tmp_path, name, text)
    assert load_prompt_rows(plain) == load_prompt_rows(win)
    assert len(load_prompt_rows(win)) == 2


def test_principles_rubric_and_reference_rows(tmp_path):
    from lmlab.data.constitution import read_principles
    from lmlab.eval.rubric_judge import read_rubric
    from lmlab.eval.sets import read_reference_rows

    plain, win = both(tmp_path, ".txt", "# mine\nBe kind.\n\nBe brief.\n")
    assert read_principles(win) == read_principles(plain) == ["Be kind.", "Be brief."]
    assert read_rubric(win) == read_rubric(plain) == "# mine\nBe kind.\n\nBe brief."
    plain, win = both(tmp_path, ".jsonl", '{"prompt": "Café?", "reference": "Oui."}\n')
    s = types.SimpleNamespace(limit=None, seed=0)
    assert read_reference_rows(win, s) == read_reference_rows(plain, s)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"Be kind.\n\x93quoted\x94\n")
    for read in (read_principles, read_rubric):
        with pytest.raises(UserError, match=rf"^{bad}:2: not UTF-8: byte 0x93"):
            read(str(bad))


def test_distill_peeks_through_a_bom(tmp_path):
    from lmlab.stages.distill import _kind

    _, win = both(tmp_path, ".jsonl", TEXT_JSONL)
    assert _kind(types.SimpleNamespace(data_kind="auto", data=win, mapping="")) == "text"


def test_quantize_perplexity_text(tmp_path):
    from lmlab.quant.measure import heldout_text

    plain, win = both(tmp_path, ".txt", "line one\nline two\n")
    assert heldout_text(win) == heldout_text(plain) == "line one\nline two\n"
