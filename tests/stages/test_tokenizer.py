"""`lmlab tokenizer` on a small text file: the saved folder loads with AutoTokenizer, round-trips
any text (bytes, emoji) exactly for BPE, carries its chat template, and the summary holds the
measures; WordPiece and Unigram train too."""

import json
import random

import pytest

from lmlab.cli import main

TEXT = ("The quick brown fox jumps over the lazy dog. " * 3 + "\n"
        "To be, or not to be, that is the question:\n"
        "Whether 'tis nobler in the mind to suffer 12345 slings and arrows.\n") * 40


def _train(tmp_path, *extra, name="tok"):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out = tmp_path / name
    rc = main(["tokenizer", f"data={corpus}", f"output_dir={out}", "vocab_size=300",
               "compare=[]", *extra])
    assert rc == 0
    return out


def _random_text(rng: random.Random, n: int) -> str:
    """Random code points from every plane that encodes (no lone surrogates), emoji, controls,
    combining marks and whitespace runs."""
    pool = ["😀", "👩‍👩‍👧", "🇫🇷", "\u0301", "\x00", "\x7f", "\t", "\n\n", "   ", "é", "你好", "'s"]
    out = []
    for _ in range(n):
        if rng.random() < 0.3:
            out.append(rng.choice(pool))
        else:
            cp = rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0xD800),
                             rng.randrange(0xE000, 0x110000)])
            out.append(chr(cp))
    return "".join(out)


def test_bpe_folder_loads_round_trips_any_text_and_measures(tmp_path):
    from transformers import AutoTokenizer

    out = _train(tmp_path)
    tok = AutoTokenizer.from_pretrained(out / "final")
    assert len(tok) == 300 and tok.eos_token == "<|endoftext|>" and tok.pad_token_id == 0
    rng = random.Random(0)
    texts = [_random_text(rng, 40) for _ in range(50)] + [
        "emoji 😀🎉 and ZWJ 👩‍💻", "bytes \x00\x01\x1b[0m", "  two  spaces\r\n", ""]
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == t
    # the special tokens are single tokens, the chat template renders with them
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(chat, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>") == 1
    s = json.loads((out / "summary.json").read_text())
    m = s["measures"]["trained"]
    assert s["vocab_size"] == 300 and s["heldout_bytes"] > 0
    assert 1.0 < m["bytes_per_token"] < 10 and m["unk_rate"] == 0 and 0 < m["vocab_used"] <= 1
    assert (out / "samples.jsonl").exists()


def test_bpe_merges_are_learned_from_the_corpus(tmp_path):
    out = _train(tmp_path)
    model = json.loads((out / "final" / "tokenizer.json").read_text())["model"]
    assert len(model["merges"]) == 300 - 256 - 3
    assert "Ġthe" in model["vocab"]  # the commonest word of TEXT is one token


@pytest.mark.parametrize("kind,unk", [("wordpiece", "[UNK]"), ("unigram", "<unk>")])
def test_encoder_kinds_train_and_load(tmp_path, kind, unk):
    from transformers import AutoTokenizer

    out = _train(tmp_path, f"kind={kind}", "vocab_size=120", name=kind)
    tok = AutoTokenizer.from_pretrained(out / "final")
    assert tok.unk_token == unk and tok.mask_token is not None
    ids = tok("the question of the fox", add_special_tokens=False)["input_ids"]
    assert unk not in tok.convert_ids_to_tokens(ids)
    assert tok.decode(ids).replace(" ", "") == "thequestionofthefox"
    s = json.loads((out / "summary.json").read_text())
    assert s["measures"]["trained"]["bytes_per_token"] > 1


def test_twin_flag_trains_the_scratch_bpe_and_reports_equal_merges(tmp_path):
    out = _train(tmp_path, "twin=true", "heldout_chars=0")
    s = json.loads((out / "summary.json").read_text())
    assert s["twin"]["merges_equal"] is True and s["twin"]["merges"] == 300 - 259
    assert s["measures"] == {}


def test_report_has_a_tokenizers_section(tmp_path):
    from lmlab.report import build_report

    run = _train(tmp_path, "twin=true")
    build_report([run], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Tokenizers" in md and "tok / trained" in md and "| yes |" in md


def test_load_takes_the_run_folder_its_final_or_a_model_reference(tmp_path):
    from lmlab.data.tokenizers import load

    out = _train(tmp_path, "heldout_chars=0")
    for ref in (out, out / "final"):
        tok = load(str(ref))
        assert len(tok) == 300 and tok.pad_token == "<|endoftext|>"
    assert len(load("tiny:llama")) == 49152  # a model reference: the model's own tokenizer
