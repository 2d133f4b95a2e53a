"""normalize_row: each kind's canonical shape, and located errors for bad rows."""

import pytest

from lmlab.data import normalize_row
from lmlab.errors import DataError


def norm(row, kind):
    return normalize_row(row, kind, file="f.jsonl", line=7)


def error(row, kind) -> DataError:
    with pytest.raises(DataError) as info:
        norm(row, kind)
    assert str(info.value).startswith("f.jsonl:7: ")
    return info.value


def test_text():
    assert norm({"text": "hello", "id": 3}, "text") == {"text": "hello"}


def test_chat_messages_keep_roles_and_drop_extra_keys():
    row = {"messages": [{"role": "system", "content": ""},
                        {"role": "user", "content": "hi", "name": "ann"},
                        {"role": "assistant", "content": "hello"}], "source": "x"}
    assert norm(row, "chat") == {"messages": [{"role": "system", "content": ""},
                                              {"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "hello"}]}


def test_chat_prompt_completion_becomes_messages():
    row = {"prompt": "2+2?", "completion": "4", "system": "Be brief."}
    assert norm(row, "chat")["messages"] == [{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "2+2?"},
                                             {"role": "assistant", "content": "4"}]


def test_preference_message_lists_become_strings():
    row = {"prompt": [{"role": "user", "content": "q"}],
           "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
           "rejected": "bad"}
    assert norm(row, "preference") == {"prompt": [{"role": "user", "content": "q"}],
                                       "chosen": "good", "rejected": "bad"}


def test_preference_prompt_taken_from_chosen_conversation_when_absent():
    conv = [{"role": "user", "content": "q"}]
    row = {"chosen": conv + [{"role": "assistant", "content": "a"}],
           "rejected": conv + [{"role": "assistant", "content": "b"}]}
    assert norm(row, "preference")["prompt"] == conv


def test_task_keeps_metadata_for_the_checker():
    row = {"prompt": "3+4?", "answer": "7", "task": "arith"}
    assert norm(row, "task") == row


@pytest.mark.parametrize("label,expected", [(True, True), (0, False), ("true", True),
                                            ("False", False)])
def test_kto_labels(label, expected):
    row = norm({"prompt": "p", "completion": "c", "label": label}, "kto")
    assert row["label"] is expected


@pytest.mark.parametrize("row,kind,field", [
    ({"txt": "a"}, "text", "text"),
    ({"text": ""}, "text", "text"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": 5}]},
     "chat", "messages[1].content"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]},
     "chat", "messages[1].role"),
    ({"messages": [{"role": "user", "content": "hi"}, {"content": "x"}]},
     "chat", "messages[1].role"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "chat", "messages"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "chat", "messages[0].role"),
    ({"messages": "hi"}, "chat", "messages"),
    ({"question": "hi"}, "chat", "messages"),
    ({"prompt": "hi"}, "chat", "completion"),
    ({"prompt": "p", "chosen": "same", "rejected": "same"}, "preference", "rejected"),
    ({"prompt": "p", "chosen": "", "rejected": "b"}, "preference", "chosen"),
    ({"prompt": "p", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"},
     "preference", "chosen[0].role"),
    ({"prompt": 3, "chosen": "a", "rejected": "b"}, "preference", "prompt"),
    ({"prompt": "p", "answer": 7}, "task", "answer"),
    ({"prompt": "p", "completion": "c", "label": "maybe"}, "kto", "label"),
    ({"prompt": "p", "completion": "c"}, "kto", "label"),
])
def test_bad_rows_name_the_field(row, kind, field):
    err = error(row, kind)
    assert err.field == field
    assert f"field '{field}'" in str(err)


def test_not_an_object():
    assert "expected a JSON object, got list" in str(error([1, 2], "text"))


def test_unknown_kind():
    with pytest.raises(DataError, match="unknown row kind 'sft'"):
        norm({"text": "a"}, "sft")
