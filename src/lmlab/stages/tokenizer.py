"""`lmlab tokenizer`: train a tokenizer on a corpus and measure it against reference ones.

Setup (the corpus: ``corpus:<name>`` for the offline corpora, files or globs; each document's
last 10% held out), then one HF ``tokenizers`` training run (byte-level BPE, WordPiece or
Unigram, ``lmlab.data.tokenizers``), then measurements on the held-out text: bytes per token
(compression), tokens per word, vocabulary used, unknown-token rate and encode speed, for the
new tokenizer and for the references (SmolLM2's and GPT-2's own). ``final/`` is a
``save_pretrained`` folder (``tokenizer.json`` with the special tokens' roles and the chat
template) that ``AutoTokenizer.from_pretrained`` loads. ``twin=true`` also trains the
from-scratch BPE (``lmlab.scratch.bpe``) on the same text and records whether its merges equal
the library's, and how long it took.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmlab.config import RunConfig, opt
from lmlab.data.tokenizers import KINDS

HELP = "train a BPE / WordPiece / Unigram tokenizer on a corpus; compression vs SmolLM2, GPT-2"

REFERENCES = ("smollm2", "gpt2")


@dataclass
class Config(RunConfig):
    # no model, no optimizer steps, no randomness (the trainers are deterministic)
    UNUSED = ("model", "max_steps", "resume", "seed")
    data: str = opt("corpus:shakespeare", "corpus: corpus:<name> (shakespeare, bible, "
                                          "python-docs, jargon, sotu, moby-dick), text files "
                                          "or globs, comma-separated")
    kind: str = opt("bpe", "byte-level BPE (decoders), WordPiece (BERT-style encoders) or "
                           "Unigram (T5-style)", choices=KINDS)
    vocab_size: int = opt(4096, "tokens in the vocabulary, special tokens and (BPE) the 256 "
                                "byte symbols included", min=2)
    special_tokens: list[str] = opt([], "special tokens, in id order from 0 (empty = the "
                                        "kind's defaults: <|endoftext|> <|im_start|> "
                                        "<|im_end|> for bpe; BERT's / T5's for the others)")
    chat_template: str = opt("auto", "auto (chatml when <|im_start|> and <|im_end|> are among "
                                     "the specials, else none) | chatml | none | a Jinja file")
    min_frequency: int = opt(0, "a merge needs a pair seen at least this often", min=0)
    model_max_length: int = opt(2048, "the context length the tokenizer announces", min=1)
    max_chars: int | None = opt(None, "train on at most this many characters (null = all)",
                                min=1)
    heldout_chars: int = opt(1_000_000, "held-out characters measured (0 = skip measuring)",
                             min=0)
    compare: list[str] = opt(list(REFERENCES), "reference tokenizers measured on the same "
                                               "held-out text: smollm2, gpt2")
    twin: bool = opt(False, "also train lmlab.scratch.bpe (plain Python) and check its merges "
                            "equal the library's (bpe only)")

    def validate(self) -> list[str]:
        from lmlab.data.tokenizers import check_vocab, specials_for

        problems = check_vocab(self.kind, self.vocab_size,
                               specials_for(self.kind, self.special_tokens))
        bad = [c for c in self.compare if c not in REFERENCES]
        if bad:
            problems.append(f"compare: unknown reference(s) {', '.join(bad)}; known: "
                            f"{', '.join(REFERENCES)}")
        if self.twin and self.kind != "bpe":
            problems.append("twin: the from-scratch twin is byte-level BPE (kind=bpe)")
        specials = specials_for(self.kind, self.special_tokens)
        if self.chat_template == "chatml" and not {"<|im_start|>", "<|im_end|>"} <= set(
                specials):
            problems.append("chat_template: chatml needs <|im_start|> and <|im_end|> in "
                            "special_tokens (or set chat_template=none)")
        return problems


def run(cfg: Config) -> dict:
    import time

    from lmlab.common import print0
    from lmlab.data import tokenizers as T
    from lmlab.data.corpora import train_heldout
    from lmlab.runs import commit_folder, default_output_dir, prepare_run, temp_folder

    specials = T.specials_for(cfg.kind, cfg.special_tokens)
    template = T.chat_template(cfg.chat_template, specials)  # a missing file fails first
    train_texts, heldout = train_heldout(cfg.data, cfg.max_chars, cfg.heldout_chars)
    if not cfg.output_dir:
        cfg.output_dir = default_output_dir("tokenizer", f"{cfg.kind}-{cfg.vocab_size}")
    run_ = prepare_run(cfg, "tokenizer")
    n_bytes = sum(len(t.encode("utf-8")) for t in train_texts)
    print0(f"[lmlab] training a {cfg.kind} tokenizer, vocab {cfg.vocab_size}, on "
           f"{n_bytes / 1e6:.2f} MB ...")
    t0 = time.perf_counter()
    tok = T.train(cfg.kind, train_texts, cfg.vocab_size, specials, cfg.min_frequency)
    secs = time.perf_counter() - t0
    vocab = tok.get_vocab_size()
    print0(f"[lmlab] trained in {secs:.1f} s ({n_bytes / 1e6 / secs:.2f} MB/s); vocab {vocab}")
    fast = T.wrap(tok, specials, template, cfg.model_max_length)
    tmp = temp_folder(run_.path)
    fast.save_pretrained(tmp)
    commit_folder(tmp, run_.final)

    summary: dict = {"stage": "tokenizer", "kind": cfg.kind, "data": cfg.data,
                     "vocab_size": vocab, "vocab_size_asked": cfg.vocab_size,
                     "special_tokens": specials, "chat_template": cfg.chat_template,
                     "has_chat_template": template is not None,
                     "train_bytes": n_bytes, "train_s": secs,
                     "train_mb_s": n_bytes / 1e6 / secs, "heldout_bytes": 0,
                     "measures": {}, "skipped": {}}
    if heldout:
        summary["heldout_bytes"] = sum(len(t.encode("utf-8")) for t in heldout)
        _measure_all(cfg, tok, heldout, summary)
        run_.write_jsonl("samples.jsonl", _samples(fast, heldout))
    if cfg.twin:
        summary["twin"] = _twin(tok, train_texts, cfg, specials)
    run_.log_metrics({"step": 0, **{f"eval/{name}/{k}": v
                                    for name, m in summary["measures"].items()
                                    for k, v in m.items()}})
    run_.write_json("summary.json", summary)
    print0(f"[lmlab] tokenizer saved to {run_.final}")
    return summary


def _measure_all(cfg: Config, tok, heldout: list[str], summary: dict) -> None:
    from lmlab.common import print0
    from lmlab.data import tokenizers as T

    unk = T.UNK.get(cfg.kind)
    summary["measures"]["trained"] = T.measure(
        T.hf_encoder(tok), heldout, tok.get_vocab_size(),
        tok.token_to_id(unk) if unk else None)
    for name in cfg.compare:
        try:
            ref = _reference(name)
        except Exception as e:  # noqa: BLE001 - a missing reference is reported, not fatal
            summary["skipped"][name] = f"{type(e).__name__}: {e}"
            print0(f"[lmlab] reference {name} not available: {e}")
            continue
        summary["measures"][name] = T.measure(T.hf_encoder(ref), heldout, ref.get_vocab_size())
    for name, m in summary["measures"].items():
        print0(f"[lmlab] {name:>8}: {m['bytes_per_token']:.2f} bytes/token, "
               f"{m['tokens_per_word']:.2f} tokens/word, {100 * m['vocab_used']:.1f}% of "
               f"vocab used, encode {m['encode_mb_s']:.1f} MB/s")


def _reference(name: str):
    """The reference tokenizer ``name`` as a ``tokenizers.Tokenizer`` (tokenizer files only,
    no model weights)."""
    from lmlab.data import tokenizers as T

    if name == "gpt2":
        return T.gpt2_tokenizer()
    from lmlab.models import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct").backend_tokenizer


def _samples(fast, heldout: list[str], n: int = 3) -> list[dict]:
    """A few held-out lines with the pieces they split into."""
    lines = [ln for t in heldout for ln in t.split("\n") if len(ln.strip()) > 20][:n]
    return [{"prompt": ln, "completion": " | ".join(fast.convert_ids_to_tokens(
        fast(ln, add_special_tokens=False)["input_ids"]))} for ln in lines]


def _twin(tok, texts: list[str], cfg: Config, specials: list[str]) -> dict:
    import json
    import time

    from lmlab.common import print0
    from lmlab.scratch import bpe

    print0("[lmlab] training the from-scratch BPE twin on the same text ...")
    t0 = time.perf_counter()
    twin = bpe.train(texts, cfg.vocab_size, specials, cfg.min_frequency)
    secs = time.perf_counter() - t0
    merges = [tuple(m) for m in json.loads(tok.to_str())["model"]["merges"]]
    same = merges == twin.merges
    print0(f"[lmlab] twin: {secs:.1f} s, merges {'equal' if same else 'DIFFER'}")
    return {"train_s": secs, "merges_equal": same, "merges": len(twin.merges)}
