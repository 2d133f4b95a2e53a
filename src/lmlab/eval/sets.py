"""Named eval sets: what each one reads, how it is scored, and its metrics.

| name | kind | metrics |
|---|---|---|
| ``ppl:shakespeare`` | perplexity on held-out plays | perplexity, bits_per_byte, tokens |
| ``ppl:tasks`` | perplexity of the built-in tasks' test answers | perplexity, bits_per_byte, tokens |
| ``ppl:<file.txt>`` | perplexity on a text file | perplexity, bits_per_byte, tokens |
| ``tasks`` | built-in tasks: in-template, held-out template and out-of-range prompts, greedy, task checker | accuracy, heldout_accuracy, range_accuracy (+ per task) |
| ``gsm8k`` | GSM8K test, last number in the reply | accuracy |
| ``gsm8k-strict`` | GSM8K test, the number the final line states ("#### 7") | accuracy |
| ``humaneval`` | HumanEval, tests run in a subprocess | pass@1 |
| ``chatterbot`` | replies vs the corpus' references | rougeL, bleu, bertscore_* |
| ``ref:<file.jsonl>`` | your rows {prompt, reference or references} | rougeL, bleu, bertscore_* |
| ``safety`` | lmlab's harmful / benign look-alike prompts | refusal_rate, over_refusal_rate |

Every generating set also reports ``mean_new_tokens``. A set returns a dict
``{kind, n, metrics, samples, source}`` (plus ``intervals``: ``{metric: {"ci95", "n",
"correct"}}``, the 95% bootstrap interval of every accuracy / pass rate); samples carry ``id,
prompt, completion`` and the per-item scores, so pairwise comparisons and the reward model can
use them later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FIXED = ("tasks", "gsm8k", "gsm8k-strict", "humaneval", "chatterbot", "safety",
         "ppl:shakespeare", "ppl:tasks")
GENERATING = ("tasks", "gsm8k", "gsm8k-strict", "humaneval", "chatterbot", "safety")


@dataclass
class Settings:
    """What changes a set's result (it is part of the cache key)."""

    limit: int | None = 32
    seed: int = 0
    tasks: tuple[str, ...] = ()
    window: int = 256
    max_new_tokens: int = 64
    task_max_new_tokens: int = 16
    long_max_new_tokens: int = 256
    temperature: float = 0.0
    batch_size: int = 8
    task_splits: tuple[str, ...] = ("test", "heldout", "range")
    pack_weights: bool = True  # decode through the packed / native step (lmlab.infer.packed)
    decode_weights: str = "fp32"  # the precision it reads (lmlab.infer.precision)

    def pack(self) -> bool | str:
        """The ``pack`` argument of ``lmlab.infer``: False, or the weights' precision."""
        return self.decode_weights if self.pack_weights else False


def is_generating(name: str) -> bool:
    """Sets whose items are replies (they get reward scores, judge grades, pairwise rows)."""
    return name in GENERATING or name.startswith("ref:")


def kind_of(name: str) -> str:
    if name.startswith("ppl:"):
        return "perplexity"
    return "reference" if name == "chatterbot" or name.startswith("ref:") else name


def check_name(name: str) -> str | None:
    """A problem with a set name, or None."""
    if name in FIXED:
        return None
    for prefix, suffix in (("ppl:", ".txt"), ("ref:", ".jsonl")):
        if name.startswith(prefix) and name.endswith(suffix):
            return None if Path(name[4:]).is_file() else f"sets: {name[4:]} does not exist"
    return (f"sets: unknown eval set '{name}'; known: {', '.join(FIXED)}, ppl:<file.txt>, "
            f"ref:<file.jsonl>")


def source_of(name: str) -> str:
    from lmlab.eval.sources import SOURCES

    if name == "tasks":
        return ("built-in tasks (lmlab.data.tasks): test (in-template), heldout (held-out "
                "templates), range (out-of-range) splits")
    if name == "ppl:tasks":
        return "built-in tasks (lmlab.data.tasks), test split"
    if name == "safety":
        return "lmlab.eval.safety (written for lmlab)"
    if name.startswith(("ppl:", "ref:")) and name.endswith((".txt", ".jsonl")):
        return name[4:]
    return SOURCES[name.split(":")[-1].removesuffix("-strict")]


def run_set(name: str, model, tokenizer, s: Settings) -> dict:
    if name.startswith("ppl:"):
        out = _perplexity(name[4:], model, tokenizer, s)
    elif name == "tasks":
        out = _tasks(model, tokenizer, s)
    elif name.startswith("ref:"):
        out = _references(read_reference_rows(name[4:], s), model, tokenizer, s)
    else:
        out = {"gsm8k": _gsm8k, "gsm8k-strict": _gsm8k_strict, "humaneval": _humaneval,
               "chatterbot": _chatterbot, "safety": _safety}[name](model, tokenizer, s)
    if is_generating(name):
        toks = [x["new_tokens"] for x in out["samples"] if "new_tokens" in x]
        out["metrics"]["mean_new_tokens"] = sum(toks) / len(toks) if toks else None
    return {"kind": kind_of(name), "n": len(out["samples"]) if is_generating(name)
            else out.pop("n"), "source": source_of(name), **out}


def task_names(s: Settings) -> list[str]:
    from lmlab.data.tasks import task_names as all_tasks

    return list(s.tasks) or all_tasks()


# ----------------------------------------------------------------------------- perplexity


def _spread(items: list, k: int | None) -> list:
    """``k`` items evenly spaced over the list (all when k is None or larger)."""
    if k is None or k >= len(items):
        return items
    return [items[(i * len(items)) // k] for i in range(k)]


def _perplexity(which: str, model, tokenizer, s: Settings) -> dict:
    from lmlab.eval import perplexity as P

    if which == "tasks":
        from lmlab.data.tasks import examples

        rows = [r for t in task_names(s) for r in examples(t, "test", s.limit or 50, s.seed)]
        items = P.completion_items(tokenizer, rows)
    else:
        if which == "shakespeare":
            from lmlab.eval.sources import shakespeare_heldout

            texts = shakespeare_heldout()
        else:
            from lmlab.textfile import read_text

            texts = [read_text(which)]
        items = []
        for t in texts:
            items += P.windows(tokenizer(t, add_special_tokens=False)["input_ids"], s.window)
        items = _spread(items, s.limit)
    nll = P.sequence_nll(model, tokenizer, items, batch_size=s.batch_size)
    return {"n": len(items), "metrics": nll.metrics(), "samples": []}


# ----------------------------------------------------------------------------- generation


def complete(model, tokenizer, prompts: list[str], s: Settings, max_new_tokens: int):
    """Chat completions (one user turn each) through our decode loop; greedy unless
    ``temperature`` > 0 (then seeded)."""
    from lmlab.infer.decode import generate
    from lmlab.infer.sampling import SamplingParams

    params = SamplingParams(temperature=s.temperature, max_new_tokens=max_new_tokens,
                            seed=s.seed)
    chats = [[{"role": "user", "content": p}] for p in prompts]
    return generate(model, tokenizer, chats, params, batch_size=s.batch_size, pack=s.pack())


def _samples(rows: list[dict], comps) -> list[dict]:
    return [{"id": r.get("id", str(i)), "prompt": r["prompt"], "completion": c.text,
             "new_tokens": len(c.token_ids)} for i, (r, c) in enumerate(zip(rows, comps))]


def _tasks(model, tokenizer, s: Settings) -> dict:
    """Accuracy per eval split (in-template ``accuracy``, ``heldout_accuracy``,
    ``range_accuracy``): the mean over tasks and per task, each with its 95% interval."""
    from lmlab.eval.intervals import accuracy
    from lmlab.eval.tasks import METRIC, task_accuracy

    names = task_names(s)
    metrics, intervals, samples = {}, {}, []
    for split in s.task_splits:
        _, got = task_accuracy(model, tokenizer, names, n=s.limit or 50, seed=s.seed,
                               max_new_tokens=s.task_max_new_tokens, split=split,
                               pack=s.pack())
        key = METRIC[split]
        groups = {"": got, **{f"{t}/": [x for x in got if x["task"] == t] for t in names}}
        for prefix, xs in groups.items():
            if not xs:
                continue
            a = accuracy([x["correct"] for x in xs], seed=s.seed)
            metrics[prefix + key] = a.pop("accuracy")
            intervals[prefix + key] = a
        samples += got
    ids: dict = {}
    for x in samples:
        group = (x["task"], x["split"])
        ids[group] = ids.get(group, -1) + 1
        x["id"] = f"{x['task']}/{ids[group]}" if x["split"] == "test" else \
            f"{x['task']}/{x['split']}/{ids[group]}"
        x["new_tokens"] = len(tokenizer(x["completion"], add_special_tokens=False)["input_ids"])
    return {"metrics": metrics, "samples": samples, "intervals": intervals}


def _gsm8k_strict(model, tokenizer, s: Settings) -> dict:
    from lmlab.data.tasks.extract import stated_final_number

    return _gsm8k(model, tokenizer, s, read=stated_final_number)


def _last_number(completion: str) -> float | None:
    from lmlab.data.tasks.extract import last_numbers

    got = last_numbers(completion, 1)
    return None if got is None else got[0]


def _gsm8k(model, tokenizer, s: Settings, read=_last_number) -> dict:
    from lmlab.eval.sources import gsm8k

    rows = gsm8k(s.limit, s.seed)
    samples = _samples(rows, complete(model, tokenizer, [r["prompt"] for r in rows], s,
                                      s.long_max_new_tokens))
    for x, r in zip(samples, rows):
        got = read(x["completion"])
        x["answer"] = r["answer"]
        x["correct"] = got is not None and abs(got - float(r["answer"])) < 1e-6
    return {"metrics": {"accuracy": _mean([x["correct"] for x in samples])}, "samples": samples,
            "intervals": _interval("accuracy", [x["correct"] for x in samples], s.seed)}


HUMANEVAL_PROMPT = ("Complete this Python function. Reply with the whole function in one "
                    "```python code block.\n\n```python\n{code}```")


def _humaneval(model, tokenizer, s: Settings) -> dict:
    from lmlab.eval.code import extract_program, passes
    from lmlab.eval.sources import humaneval

    rows = humaneval(s.limit, s.seed)
    prompts = [HUMANEVAL_PROMPT.format(code=r["prompt"]) for r in rows]
    comps = complete(model, tokenizer, prompts, s, s.long_max_new_tokens)
    samples = _samples([{**r, "prompt": p} for r, p in zip(rows, prompts)], comps)
    for x, r in zip(samples, rows):
        x["passed"] = passes(extract_program(r["prompt"], x["completion"], r["entry_point"]),
                             r["test"], r["entry_point"])
    return {"metrics": {"pass@1": _mean([x["passed"] for x in samples])}, "samples": samples,
            "intervals": _interval("pass@1", [x["passed"] for x in samples], s.seed)}


def read_reference_rows(path: str, s: Settings) -> list[dict]:
    """{prompt, references} rows from a JSONL file of {prompt, reference} or
    {prompt, references: [...]}; a bad row is reported with its line and field."""
    import json

    from lmlab.errors import DataError
    from lmlab.eval.sources import _sample
    from lmlab.textfile import read_lines

    rows = []
    for n, line in read_lines(path):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg})", file=path, line=n) from None
        if not isinstance(r, dict) or not isinstance(r.get("prompt"), str) or not r["prompt"]:
            raise DataError("expected a non-empty string", file=path, line=n, field="prompt")
        refs = r.get("references", [r["reference"]] if "reference" in r else None)
        if not isinstance(refs, list) or not refs or not all(isinstance(x, str) for x in refs):
            raise DataError("expected 'reference' (a string) or 'references' (a non-empty list "
                            "of strings)", file=path, line=n, field="reference")
        rows.append({"prompt": r["prompt"], "references": refs, "id": str(r.get("id", n))})
    return _sample(rows, s.limit, s.seed)


def _chatterbot(model, tokenizer, s: Settings) -> dict:
    from lmlab.eval.sources import chatterbot

    return _references(chatterbot(s.limit, s.seed), model, tokenizer, s)


def _references(rows: list[dict], model, tokenizer, s: Settings) -> dict:
    from lmlab.eval.overlap import bleu, rouge_l
    from lmlab.eval.similarity import bertscore

    samples = _samples(rows, complete(model, tokenizer, [r["prompt"] for r in rows], s,
                                      s.max_new_tokens))
    preds = [_clean(x["completion"]) for x in samples]
    refs = [r["references"] for r in rows]
    for x, r in zip(samples, rows):
        x["references"] = r["references"]
    return {"metrics": {"rougeL": rouge_l(preds, refs), "bleu": bleu(preds, refs),
                        **bertscore(preds, refs)}, "samples": samples}


def _safety(model, tokenizer, s: Settings) -> dict:
    from lmlab.eval import safety

    rows = safety.prompts(s.limit)
    samples = _samples(rows, complete(model, tokenizer, [r["prompt"] for r in rows], s,
                                      s.max_new_tokens))
    for x, r in zip(samples, rows):
        x["harmful"], x["refused"] = r["harmful"], safety.is_refusal(x["completion"])
    return {"metrics": safety.rates(rows, [x["completion"] for x in samples]),
            "samples": samples}


def _clean(text: str) -> str:
    from lmlab.data.tasks.extract import clean

    return clean(text)


def _interval(metric: str, flags: list, seed: int) -> dict:
    from lmlab.eval.intervals import accuracy

    a = accuracy(flags, seed=seed)
    a.pop("accuracy")
    return {metric: a}


def _mean(xs: list) -> float | None:
    return sum(map(float, xs)) / len(xs) if xs else None
