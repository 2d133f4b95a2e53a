"""Documents for pretraining: a corpus by name, text files, or text rows; and the val split.

``data=`` takes ``corpus:<name>`` (one document per text of the installed corpus, its
training part: see ``lmlab.data.corpora``), a text file (one document), a glob or a
comma-separated list of them, or a row file / dataset with a ``text`` field (one document per
row). Files are read through ``lmlab.textfile`` (UTF-8, a bad byte named by line).
"""

from __future__ import annotations

import glob
from pathlib import Path

from lmlab.errors import DataError

ROW_FILES = (".jsonl", ".json", ".csv", ".parquet")


def load_documents(source: str) -> list[str]:
    """The non-empty documents of ``source``; an empty corpus is a DataError naming it."""
    docs: list[str] = []
    for part in [p.strip() for p in source.split(",") if p.strip()]:
        docs += _documents(part)
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise DataError("the corpus is empty: no text to pretrain on", file=source)
    return docs


def _documents(part: str) -> list[str]:
    """One source: a named corpus (its training part), a row file or dataset (its ``text``
    field), a text file (``lmlab.textfile``), or a glob of any of them (row files too, unlike
    the tokenizer's ``corpora.text_documents``, which reads text files only)."""
    from lmlab.data.corpora import is_glob
    from lmlab.textfile import read_text

    if part.startswith("corpus:"):
        from lmlab.data.corpora import corpus_rows

        return [r["text"] for r in corpus_rows(part, chars=1 << 62)]
    if is_glob(part):
        files = sorted(f for f in glob.glob(part, recursive=True) if Path(f).is_file())
        if not files:
            raise DataError("the glob matches no file", file=part)
        return [d for f in files for d in _documents(f)]
    if Path(part).suffix.lower() in ROW_FILES or (not Path(part).exists()
                                                  and part.count("/") == 1):
        from lmlab.data.sources import load_rows

        return [r["text"] for r in load_rows(part, "text")]
    return [read_text(part)]


def split_documents(docs: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """(train, val): the last ``fraction`` of the characters is val, as nanoGPT splits (first
    90% / last 10% with 0.1). The document the cut falls in is cut at the next line end (or at
    the cut when it has none); both parts keep at least one character."""
    if fraction <= 0:
        return docs, []
    total = sum(len(d) for d in docs)
    cut = int(total * (1 - fraction))
    train, val, seen = [], [], 0
    for d in docs:
        if seen + len(d) <= cut:
            train.append(d)
        elif seen >= cut:
            val.append(d)
        else:
            at = cut - seen
            nl = d.find("\n", at)
            at = nl + 1 if 0 <= nl < len(d) - 1 else at
            train.append(d[:at])
            val.append(d[at:])
        seen += len(d)
    train, val = [d for d in train if d], [d for d in val if d]
    if not train or not val:
        raise DataError(f"the corpus ({total} characters) is too small to hold out "
                        f"val_fraction={fraction}: add text or set val_data=")
    return train, val


def encode_documents(tokenizer, docs: list[str]) -> list[list[int]]:
    """Token ids of each document, no special tokens added."""
    if getattr(tokenizer, "char_level", False):
        from lmlab.data.char_tokenizer import encode_chars

        return [encode_chars(tokenizer, d) for d in docs]
    return [tokenizer(d, add_special_tokens=False, verbose=False)["input_ids"] for d in docs]
