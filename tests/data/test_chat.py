"""Chat rendering and loss masks, token by token on the real SmolLM2 tokenizer."""

import pytest

from lmlab.data import (SequenceTooLong, encode_chat, encode_preference, encode_prompt,
                        encode_rows, encode_text)
from lmlab.data.chat import IGNORE
from lmlab.errors import DataError

IM_END, NEWLINE = 2, 198  # "<|im_end|>" and "\n" in the SmolLM2 vocabulary
HI = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}]
TWO_TURNS = HI + [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]


def trained(ex) -> list[int]:
    return [t for t in ex["labels"] if t != IGNORE]


def reference_mask(tokenizer, ids: list[int]) -> list[bool]:
    """Independent of encode_chat: scan for "<|im_start|>assistant\\n" ... "<|im_end|>"."""
    header = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    mask, i = [False] * len(ids), 0
    while i < len(ids):
        if ids[i:i + len(header)] == header:
            i += len(header)
            while ids[i] != IM_END:
                mask[i], i = True, i + 1
            mask[i] = True  # the end-of-turn token is trained, the newline after it is not
        i += 1
    return mask


def test_single_turn_mask_is_exactly_reply_and_im_end(tokenizer):
    ex = encode_chat(tokenizer, HI, 128)
    ids, labels = ex["input_ids"], ex["labels"]
    assert ids == tokenizer.apply_chat_template(HI, tokenize=True)["input_ids"]
    # "Hello" "!" "<|im_end|>" are trained; the final "\n" and everything before are not.
    assert trained(ex) == tokenizer("Hello!", add_special_tokens=False)["input_ids"] + [IM_END]
    assert labels[-4:] == [ids[-4], ids[-3], IM_END, IGNORE] and ids[-1] == NEWLINE
    assert all(t == IGNORE for t in labels[:-4])
    assert tokenizer.decode(ids[len(ids) - 4:len(ids) - 1]) == "Hello!<|im_end|>"


def test_multi_turn_trains_every_assistant_turn(tokenizer):
    ex = encode_chat(tokenizer, TWO_TURNS, 128)
    ids = ex["input_ids"]
    expected = [t if m else IGNORE for t, m in zip(ids, reference_mask(tokenizer, ids))]
    assert ex["labels"] == expected
    assert tokenizer.decode(trained(ex)) == "Hello!<|im_end|>4<|im_end|>"


def test_system_and_user_tokens_are_masked(tokenizer):
    msgs = [{"role": "system", "content": "Be terse."}] + TWO_TURNS
    ex = encode_chat(tokenizer, msgs, 128)
    ids = ex["input_ids"]
    # The explicit system message replaces the template's default one.
    assert "Be terse." in tokenizer.decode(ids) and "SmolLM" not in tokenizer.decode(ids)
    first_reply = len(encode_prompt(tokenizer, msgs[:2]))
    assert all(t == IGNORE for t in ex["labels"][:first_reply])
    assert ex["labels"][first_reply] == ids[first_reply] != IGNORE


def test_train_on_last_and_all(tokenizer):
    last = encode_chat(tokenizer, TWO_TURNS, 128, train_on="last")
    assert tokenizer.decode(trained(last)) == "4<|im_end|>"
    everything = encode_chat(tokenizer, TWO_TURNS, 128, train_on="all")
    assert everything["labels"] == everything["input_ids"] == last["input_ids"]


def test_too_long_raises(tokenizer):
    with pytest.raises(SequenceTooLong) as info:
        encode_chat(tokenizer, TWO_TURNS, 10)
    assert isinstance(info.value, DataError) and info.value.max_len == 10
    assert info.value.length == len(encode_chat(tokenizer, TWO_TURNS, 999)["input_ids"])


def test_encode_prompt_is_the_prefix_before_the_reply(tokenizer):
    prompt = encode_prompt(tokenizer, "Hi there")
    assert tokenizer.decode(prompt).endswith("<|im_start|>user\nHi there<|im_end|>\n"
                                             "<|im_start|>assistant\n")
    full = encode_chat(tokenizer, HI, 128)
    assert full["input_ids"][:len(prompt)] == prompt
    assert full["labels"][len(prompt)] != IGNORE and full["labels"][len(prompt) - 1] == IGNORE


def test_encode_text_appends_eos_and_trains_everything(tokenizer):
    ex = encode_text(tokenizer, "The river bends.", 64)
    assert ex["input_ids"][-1] == tokenizer.eos_token_id
    assert ex["labels"] == ex["input_ids"]
    assert tokenizer.decode(ex["input_ids"][:-1]) == "The river bends."


def test_encode_preference_masks_the_prompt(tokenizer):
    row = {"prompt": "Is ice cold?", "chosen": "Yes.", "rejected": "No."}
    ex = encode_preference(tokenizer, row, 128)
    prompt = encode_prompt(tokenizer, "Is ice cold?")
    for side, reply in (("chosen", "Yes."), ("rejected", "No.")):
        ids, labels = ex[f"{side}_input_ids"], ex[f"{side}_labels"]
        assert ids[:len(prompt)] == prompt and len(ids) == len(labels)
        assert tokenizer.decode(trained({"labels": labels})) == reply + "<|im_end|>"


def test_multi_turn_preference_prompt_trains_only_the_reply(tokenizer):
    row = {"prompt": TWO_TURNS[:3], "chosen": "Four.", "rejected": "Five."}
    ex = encode_preference(tokenizer, row, 128)
    assert tokenizer.decode(trained({"labels": ex["chosen_labels"]})) == "Four.<|im_end|>"


class UnstableTemplate:
    """The real tokenizer with a template that drops the content of earlier assistant turns."""

    TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
                "{% if m['role'] == 'assistant' and not loop.last %}...{% else %}{{ m['content'] }}"
                "{% endif %}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

    def __init__(self, tokenizer):
        self._tok = tokenizer

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, *args, **kwargs):
        return self._tok(*args, **kwargs)

    def apply_chat_template(self, messages, **kwargs):
        return self._tok.apply_chat_template(messages, chat_template=self.TEMPLATE, **kwargs)


def test_template_that_is_not_prefix_stable_is_refused(tokenizer):
    with pytest.raises(DataError, match="not prefix-stable at message 1"):
        encode_chat(UnstableTemplate(tokenizer), TWO_TURNS, 128)


# --- encode_rows --------------------------------------------------------------------------------


def chat_rows() -> list[dict]:
    """Three rows; row 1 has a 200-word question and so is longer than 100 tokens."""
    long = {"messages": [{"role": "user", "content": "word " * 200},
                         {"role": "assistant", "content": "ok"}]}
    return [{"messages": HI}, long, {"messages": TWO_TURNS}]


def test_encode_rows_stats(tokenizer):
    rows = [{"messages": HI}, {"messages": TWO_TURNS}]
    examples, stats = encode_rows(tokenizer, rows, "chat", 128)
    assert stats["rows"] == 2 and stats["skipped_long"] == stats["truncated"] == 0
    assert stats["tokens"] == sum(len(e["input_ids"]) for e in examples)
    # "Hello" "!" <|im_end|> in both rows, then "4" <|im_end|> in the second
    assert stats["trained_tokens"] == 3 + 3 + 2


def test_encode_rows_on_long(tokenizer):
    rows = chat_rows()
    with pytest.raises(SequenceTooLong, match=r"row 1 \(0-based\)"):
        encode_rows(tokenizer, rows, "chat", 100)
    kept, stats = encode_rows(tokenizer, rows, "chat", 100, on_long="skip")
    assert len(kept) == 2 and stats["skipped_long"] == 1
    # Truncating the long row cuts off its reply, so it has nothing left to train: skipped too.
    kept, stats = encode_rows(tokenizer, rows, "chat", 100, on_long="truncate")
    assert len(kept) == 2 and stats["skipped_long"] == 1 and stats["truncated"] == 0


def test_encode_rows_truncate_keeps_rows_with_trained_tokens(tokenizer):
    rows = [{"messages": [{"role": "user", "content": "hi"},
                          {"role": "assistant", "content": "word " * 200}]}]
    kept, stats = encode_rows(tokenizer, rows, "chat", 100, on_long="truncate")
    assert stats["truncated"] == 1 and len(kept[0]["input_ids"]) == len(kept[0]["labels"]) == 100


def test_encode_rows_other_kinds(tokenizer):
    (task,), _ = encode_rows(tokenizer, [{"prompt": "3+4?", "answer": "7"}], "task", 128)
    assert tokenizer.decode(trained(task)) == "7<|im_end|>"
    (kto,), _ = encode_rows(tokenizer, [{"prompt": "p", "completion": "c", "label": False}],
                            "kto", 128)
    assert kto["label"] is False and tokenizer.decode(trained(kto)) == "c<|im_end|>"
    row = {"prompt": "p", "chosen": "a", "rejected": "b"}
    (pref,), stats = encode_rows(tokenizer, [row], "preference", 128)
    assert stats["trained_tokens"] == 4 and set(pref) == {
        "chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"}
    (text,), _ = encode_rows(tokenizer, [{"text": "hello"}], "text", 128)
    assert text["labels"] == text["input_ids"]
