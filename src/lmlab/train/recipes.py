"""Training recipes for `lmlab sft`: curriculum, multi-task mixtures, replay, EWC / L2 pull,
and the continual-learning bookkeeping (docs/recipes.md).

``RecipeOptions`` holds the keys (sft's Config inherits them); ``problems`` checks them all at
once. At run time: ``load_sources`` reads every source before the run folder is touched,
``build_stream`` returns the stream the loop draws from, ``objective`` wraps the LM objective
with a penalty, ``after_training`` writes fisher.safetensors and the summary's ``recipe`` and
``continual`` blocks. The samplers and penalties themselves live in data/curriculum.py,
data/mixture.py and losses/continual.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lmlab.config import opt
from lmlab.errors import ConfigError, DataError

FISHER_FILE = "fisher.safetensors"
SCORES_FILE = "curriculum.json"
CONTINUAL = ("none", "sequential", "ewc", "l2", "lora")


@dataclass
class RecipeOptions:
    curriculum: str = opt("none", "order rows easy -> hard by a difficulty score: none (random "
                                  "order), params (task parameters: digits, carries, list "
                                  "disorder), loss (the initial model's loss on the row)",
                          choices=("none", "params", "loss"))
    curriculum_pacing: str = opt("linear", "how fast harder rows open up: linear, root "
                                           "(sqrt, faster early), step (4 plateaus)",
                                 choices=("linear", "root", "step"))
    curriculum_start: float = opt(0.2, "share of the rows (easiest first) open at step 0",
                                  min=0.0, max=1.0, min_exclusive=True)
    curriculum_ramp: float = opt(0.8, "share of max_steps after which every row is open",
                                 min=0.0, max=1.0, min_exclusive=True)
    mixture_weights: list[float] = opt([], "one sampling weight per data source "
                                           "(data=task:add,sort -> 2 sources), normalized")
    mixture_temperature: float | None = opt(None, "sample sources with p_i ~ n_i^(1/T) "
                                                  "(1: by size, larger: towards uniform)",
                                            min=0.0, min_exclusive=True)
    replay_from: str = opt("", "replay rows from earlier data (a source like task:add, or a "
                               "run folder: its data) mixed into this run's")
    replay_fraction: float = opt(0.0, "share of every batch drawn from replay_from (exact: of "
                                      "the first K examples, floor(K * fraction) are replayed)",
                                 min=0.0, max=1.0)
    continual: str = opt("none", "continual learning after the run continual_from: sequential "
                                 "(no penalty), ewc (Fisher-weighted pull to its weights), l2 "
                                 "(plain pull), lora (a separate adapter per task)",
                         choices=CONTINUAL)
    continual_lambda: float = opt(1.0, "penalty strength lambda for continual=ewc|l2", min=0.0)
    continual_from: str = opt("", "the run folder of the previous task (phase A)")
    fisher_n: int = opt(0, "after training, estimate the diagonal Fisher on this many training "
                           "rows and write fisher.safetensors (for a later continual=ewc)",
                        min=0)


def problems(cfg) -> list[str]:
    """Every problem with the recipe keys, worded with the keys' names."""
    from lmlab.data.mixture import split_sources

    out: list[str] = []
    sources = split_sources(cfg.data) if cfg.data else []
    if cfg.mixture_weights:
        if len(cfg.mixture_weights) != len(sources):
            out.append(f"mixture_weights: {len(cfg.mixture_weights)} weights for "
                       f"{len(sources)} data sources ({', '.join(sources)})")
        if any(w < 0 for w in cfg.mixture_weights) or not sum(cfg.mixture_weights) > 0:
            out.append("mixture_weights: weights must be >= 0 with a positive sum, got "
                       f"{cfg.mixture_weights}")
        if cfg.mixture_temperature is not None:
            out.append("mixture_weights and mixture_temperature: set one, not both")
    if (cfg.mixture_weights or cfg.mixture_temperature is not None) and len(sources) < 2:
        out.append(f"mixture_weights/mixture_temperature: data={cfg.data!r} is one source; "
                   "name several (data=task:add,sort or data=a.jsonl,task:add)")
    mixing = bool(cfg.mixture_weights or cfg.mixture_temperature is not None or cfg.replay_from)
    if cfg.curriculum != "none" and mixing:
        out.append("curriculum cannot combine with mixture_weights, mixture_temperature or "
                   "replay_from (one sampler orders the data)")
    if bool(cfg.replay_from) != (cfg.replay_fraction > 0):
        out.append("replay_from and replay_fraction: set both (replay_fraction in (0, 1])")
    if (cfg.curriculum != "none" or mixing) and cfg.packing:
        out.append("packing: cannot combine with curriculum or mixtures (packed rows mix "
                   "examples)")
    if cfg.continual in ("ewc", "l2") and cfg.method != "full":
        out.append(f"continual={cfg.continual}: needs method=full (the penalty pulls the full "
                   f"weights), got method={cfg.method}")
    if cfg.fisher_n and cfg.method != "full":
        out.append(f"fisher_n: needs method=full, got method={cfg.method}")
    if cfg.continual == "lora" and cfg.method not in ("lora", "qlora"):
        out.append(f"continual=lora: needs method=lora, got method={cfg.method}")
    if cfg.continual != "none" and not cfg.continual_from:
        out.append(f"continual={cfg.continual}: set continual_from to the phase-A run folder")
    if cfg.continual != "none" and not cfg.eval_tasks:
        out.append(f"continual={cfg.continual}: set eval_tasks to task A's and task B's tasks, "
                   "so forgetting is measured")
    if cfg.continual_from and cfg.continual == "none":
        out.append("continual_from: only used with continual=sequential|ewc|l2|lora")
    return out


def active(cfg) -> bool:
    return bool(cfg.curriculum != "none" or cfg.mixture_weights or cfg.replay_from
                or cfg.mixture_temperature is not None)


# --- data ---------------------------------------------------------------------------------------


@dataclass
class Sources:
    names: list[str]  # one per group
    groups: list[list[dict]]  # rows per source
    replay: list[dict] | None = None  # rows of replay_from

    @property
    def rows(self) -> list[dict]:
        return [r for g in self.groups for r in g]


def load_sources(cfg) -> Sources | None:
    """Each data source's rows (and the replay rows), read before anything is written; None
    when no recipe key asks for more than sft's plain data. Checks continual_from first."""
    from lmlab.data import load_rows
    from lmlab.data.mixture import split_sources

    if cfg.continual != "none":
        check_previous_run(cfg)
    if not active(cfg):
        return None
    names = split_sources(cfg.data)
    if cfg.curriculum == "params":
        plain = [n for n in names if not n.startswith("task:")]
        if plain:
            raise ConfigError(f"curriculum=params: scores built-in task rows only, but data "
                              f"names {', '.join(plain)}; use curriculum=loss")
    read = [load_rows(n, "chat", mapping=cfg.mapping or None, split="train",
                      limit=cfg.data_limit, on_error=cfg.on_error) for n in names]
    replay = None
    if cfg.replay_from:
        replay = load_rows(replay_source(cfg.replay_from), "chat", split="train",
                           limit=cfg.data_limit, on_error=cfg.on_error)
    return Sources(names, read, replay)


def check_previous_run(cfg) -> None:
    """continual_from must be a finished run; continual=ewc needs its fisher.safetensors."""
    a_dir = Path(cfg.continual_from)
    if not a_dir.is_dir():
        raise DataError("continual_from: no such run folder", file=str(a_dir))
    for name in ("config.yaml", "summary.json"):
        if not (a_dir / name).is_file():
            raise DataError(f"continual_from: not a finished run folder (no {name})",
                            file=str(a_dir))
    if cfg.continual == "ewc" and not (a_dir / FISHER_FILE).is_file():
        raise DataError(f"no {FISHER_FILE}: continual=ewc needs the phase-A run to have "
                        "estimated it (run it with fisher_n=64 or more)",
                        file=str(a_dir / FISHER_FILE))


def replay_source(ref: str) -> str:
    """A run folder's ``data`` (from its config.yaml), or ``ref`` itself."""
    path = Path(ref)
    if path.is_dir():
        cfg_file = path / "config.yaml"
        if not cfg_file.exists():
            raise DataError("replay_from: a folder without config.yaml (not a run folder)",
                            file=ref)
        from lmlab.config import read_yaml

        data = read_yaml(cfg_file).get("data")
        if not data:
            raise DataError("replay_from: the run's config.yaml names no data", file=ref)
        return str(data)
    return ref


def _encode(tokenizer, rows: list[dict], cfg) -> tuple[list[dict], list[int]]:
    """(examples, the index of each one's row): rows skipped as too long leave no example."""
    from lmlab.data import encode_rows

    out, kept = [], []
    for i, row in enumerate(rows):
        ex, _ = encode_rows(tokenizer, [row], "chat", cfg.max_len, on_long=cfg.on_long,
                            train_on=cfg.train_on)
        if ex:
            out.append(ex[0])
            kept.append(i)
    if not out:
        raise DataError("no training rows left after skipping those longer than max_len",
                        file=cfg.data)
    return out, kept


def build_stream(src: Sources, cfg, tokenizer, model, run, collate, *, rank=0, world=1):
    """The stream the loop draws from, and the summary's ``recipe`` block."""
    if cfg.curriculum != "none":
        return _curriculum_stream(src, cfg, tokenizer, model, run, collate, rank, world)
    from lmlab.data.mixture import MixtureStream, draw_source, is_replay, mixture_probs

    groups = [_encode(tokenizer, g, cfg)[0] for g in src.groups]
    probs = (mixture_probs([len(g) for g in groups], cfg.mixture_weights or None,
                           cfg.mixture_temperature or 1.0) if len(groups) > 1 else [1.0])
    info: dict = {"mixture": {"sources": src.names, "examples": [len(g) for g in groups],
                              "probs": [round(p, 4) for p in probs]}}
    n_main, frac, seed = len(groups), cfg.replay_fraction, cfg.seed
    if src.replay is not None:
        groups.append(_encode(tokenizer, src.replay, cfg)[0])
        info["replay"] = {"from": cfg.replay_from, "fraction": frac, "examples": len(groups[-1])}

    def choose(k: int) -> int:
        if src.replay is not None and is_replay(k, frac):
            return n_main
        return draw_source(k, probs, seed) if n_main > 1 else 0

    stream = MixtureStream(groups, cfg.batch_size, collate, choose=choose, seed=seed,
                           rank=rank, world=world)
    return stream, info


def _curriculum_stream(src, cfg, tokenizer, model, run, collate, rank, world):
    from lmlab.common import print0
    from lmlab.data.curriculum import CurriculumStream, loss_scores, task_difficulty

    examples, scores = [], []
    for name, rows in zip(src.names, src.groups):
        exs, kept = _encode(tokenizer, rows, cfg)
        examples += exs
        if cfg.curriculum == "params":
            task = name.split(":", 1)[1]
            scores += [task_difficulty(task, rows[i]["messages"][0]["content"],
                                       rows[i]["messages"][-1]["content"]) for i in kept]
    if cfg.curriculum == "loss":
        scores = _cached_scores(run.path / SCORES_FILE, len(examples))
        if scores is None:
            print0(f"[lmlab] curriculum: scoring {len(examples)} rows by the initial model's loss")
            scores = loss_scores(model, examples, collate, cfg.batch_size, progress=cfg.progress)
    run.write_json(SCORES_FILE, {"scoring": cfg.curriculum, "scores": scores})
    stream = CurriculumStream(examples, scores, cfg.batch_size, collate,
                              total_steps=cfg.max_steps, grad_accum=cfg.grad_accum,
                              pacing=cfg.curriculum_pacing, start=cfg.curriculum_start,
                              ramp=cfg.curriculum_ramp, seed=cfg.seed, rank=rank, world=world)
    srt = sorted(scores)
    info = {"curriculum": {"scoring": cfg.curriculum, "pacing": cfg.curriculum_pacing,
                           "start": cfg.curriculum_start, "ramp": cfg.curriculum_ramp,
                           "examples": len(examples), "score_min": srt[0],
                           "score_median": srt[len(srt) // 2], "score_max": srt[-1]}}
    print0(f"[lmlab] curriculum: {cfg.curriculum} scores {srt[0]:.3g}..{srt[-1]:.3g}, "
           f"{cfg.curriculum_pacing} pacing from {cfg.curriculum_start:.0%} of the rows to all "
           f"by step {round(cfg.curriculum_ramp * cfg.max_steps)}")
    return stream, info


def _cached_scores(path: Path, n: int) -> list[float] | None:
    """Scores a resumed run computed before (the initial model's loss is not recomputed)."""
    try:
        scores = json.loads(path.read_text())["scores"]
    except (OSError, ValueError, KeyError):
        return None
    return scores if len(scores) == n else None


# --- objective ----------------------------------------------------------------------------------


def objective(cfg, model, base):
    """``base`` as is, or with the EWC / L2 pull toward the weights the run starts from."""
    if cfg.continual not in ("ewc", "l2"):
        return base
    from lmlab.common import print0
    from lmlab.losses.continual import (
        PenalizedObjective,
        ewc_penalty,
        l2_penalty,
        trainable,
    )

    params = trainable(model)
    anchor = {n: p.detach().clone() for n, p in params.items()}
    lam = cfg.continual_lambda
    if cfg.continual == "l2":
        print0(f"[lmlab] continual=l2: pulling {len(anchor)} tensors to their start, "
               f"lambda={lam:g}")
        return PenalizedObjective(base, lambda: l2_penalty(params, anchor, lam))
    fisher = load_fisher(cfg.continual_from, params)
    print0(f"[lmlab] continual=ewc: Fisher from {cfg.continual_from}/{FISHER_FILE}, "
           f"lambda={lam:g}")
    return PenalizedObjective(base, lambda: ewc_penalty(params, anchor, fisher, lam))


def load_fisher(run_dir: str, params: dict) -> dict:
    from safetensors.torch import load_file

    path = Path(run_dir) / FISHER_FILE
    if not path.exists():
        raise DataError(f"no {FISHER_FILE}: continual=ewc needs the phase-A run to have "
                        "estimated it (run it with fisher_n=64 or more)", file=str(path))
    fisher = load_file(str(path))
    missing = sorted(set(params) - set(fisher))
    extra = sorted(set(fisher) - set(params))
    if missing or extra:
        raise DataError(f"the Fisher's tensors do not match this model's trainable parameters "
                        f"({len(missing)} missing, e.g. {(missing or extra)[0]}); both runs "
                        "need method=full on the same model", file=str(path))
    device = next(iter(params.values())).device
    return {n: f.to(device=device, dtype=params[n].dtype) for n, f in fisher.items()}


# --- after training -----------------------------------------------------------------------------


def after_training(cfg, model, examples, collate, run, summary: dict, info: dict | None) -> None:
    """Write fisher.safetensors (fisher_n) and the summary's ``recipe``/``continual`` blocks."""
    if info:
        summary["recipe"] = info
    if cfg.fisher_n:
        from safetensors.torch import save_file

        from lmlab.common import print0
        from lmlab.losses.continual import fisher_diagonal

        rows = examples[:cfg.fisher_n]
        print0(f"[lmlab] estimating the diagonal Fisher on {len(rows)} training rows")
        fisher = fisher_diagonal(model, rows, collate, progress=cfg.progress)
        save_file({n: f.contiguous() for n, f in fisher.items()}, str(run.path / FISHER_FILE))
        total = sum(float(f.sum()) for f in fisher.values())
        count = sum(f.numel() for f in fisher.values())
        summary["fisher"] = {"file": FISHER_FILE, "rows": len(rows), "mean": total / count}
    if cfg.continual != "none":
        summary["continual"] = continual_block(cfg, summary, str(run.path))


def _accuracy(summary: dict | None, task: str) -> float | None:
    ev = (summary or {}).get("eval_after") or {}
    for key in (f"eval/heldout_accuracy/{task}", f"eval/accuracy/{task}"):
        if key in ev:
            return ev[key]
    return None


def continual_block(cfg, summary: dict, run_dir: str) -> dict:
    """Task A and B accuracy after phase A (the continual_from run's summary) and after this
    phase B; with continual=lora, task A's prompts are routed to phase A's adapter."""
    from types import SimpleNamespace

    from lmlab.config import read_yaml
    from lmlab.stages.setup import eval_task_names

    a_dir = Path(cfg.continual_from)
    try:
        a_sum = json.loads((a_dir / "summary.json").read_text())
        a_cfg = read_yaml(a_dir / "config.yaml")
    except OSError as e:
        raise DataError("continual_from: not a finished run (no summary.json / config.yaml)",
                        file=str(a_dir)) from e
    a_tasks = eval_task_names(SimpleNamespace(data=str(a_cfg.get("data", "")), eval_tasks=[]))
    b_tasks = [t for t in eval_task_names(SimpleNamespace(data=cfg.data, eval_tasks=[]))
               if t not in a_tasks]
    tasks = a_tasks + b_tasks
    after_a = {t: _accuracy(a_sum, t) for t in tasks}
    after_b = {t: _accuracy(summary, t) for t in tasks}
    routes = None
    if cfg.continual == "lora":  # one adapter per task: A's prompts go to A's adapter
        routes = {t: str(a_dir / "final") for t in a_tasks}
        routes.update({t: str(Path(run_dir) / "final") for t in b_tasks})
        after_b.update({t: after_a[t] for t in a_tasks})
    method = cfg.continual
    if cfg.replay_from:
        method = "replay" if method == "sequential" else f"{method}+replay"

    def mean(d: dict, names: list[str]) -> float | None:
        vals = [d[t] for t in names if d.get(t) is not None]
        return sum(vals) / len(vals) if vals else None

    a0, a1 = mean(after_a, a_tasks), mean(after_b, a_tasks)
    return {"method": method, "from": str(a_dir), "tasks_a": a_tasks, "tasks_b": b_tasks,
            "after_a": after_a, "after_b": after_b, "routes": routes,
            "a_kept": (a1 / a0) if a0 and a1 is not None else None}
