"""A character-level tokenizer built from a corpus, saved in the `tokenizer.json` format.

One token per character that occurs in the corpus (sorted, as nanoGPT's char-level recipe
does), plus special tokens: ``<|endoftext|>`` (end of document; also BOS and pad), ``<unk>``
for characters the corpus never had, and whatever ``extra`` the objective needs (``<mask>``,
span sentinels). It is a ``tokenizers`` WordLevel model over a pre-tokenizer that isolates
every character, with a Fuse decoder, wrapped in ``PreTrainedTokenizerFast`` - so
``AutoTokenizer.from_pretrained(final/)`` loads it and sft / generate / serve use it unchanged.
A plain chat template (``role: content<|endoftext|>``) makes it usable by `lmlab sft`.
"""

from __future__ import annotations

EOS = "<|endoftext|>"
UNK = "<unk>"
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}" + EOS + "\n"
                 "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")


def build_char_tokenizer(texts: list[str], extra: tuple[str, ...] = ()):
    """A ``PreTrainedTokenizerFast`` with one id per character of ``texts``.

    Ids: specials first (``<|endoftext|>`` 0, ``<unk>`` 1, then ``extra``), then the sorted
    characters."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set().union(*map(set, texts))) if texts else []
    specials = [EOS, UNK, *extra]
    vocab = {t: i for i, t in enumerate(specials)}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS,
                                   pad_token=EOS, unk_token=UNK,
                                   mask_token="<mask>" if "<mask>" in extra else None,
                                   additional_special_tokens=list(extra) or None)
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 10**9  # the model's context limits length, not the tokenizer
    fast.char_level = True  # in-process only: lets encode_chars take the table path
    return fast


def encode_chars(tokenizer, text: str) -> list[int]:
    """What ``tokenizer(text, add_special_tokens=False)`` gives for a char tokenizer, by a
    table lookup over the code points (about 100x faster on a 4 MB corpus); a text holding a
    special token's spelling goes through the tokenizer (that token is matched whole)."""
    import numpy as np

    if any(t in text for t in tokenizer.all_special_tokens):
        return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    if points.size == 0:
        return []
    table = np.full(int(points.max()) + 1, tokenizer.unk_token_id, dtype=np.int64)
    for tok, i in tokenizer.get_vocab().items():
        if len(tok) == 1 and ord(tok) < table.size:
            table[ord(tok)] = i
    return table[points].tolist()
