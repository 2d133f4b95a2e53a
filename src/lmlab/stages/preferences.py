"""`lmlab preferences`: build preference pairs from prompts (RLAIF and friends).

Setup (prompts, policy, labeller), then, chunk by chunk: sample ``n`` replies per prompt with
our decode loop (seeded per chunk), score them with the labeller - a built-in task checker, a
trained reward model, a judge model on a rubric (pointwise, or pairwise in both orders), or a
style rule - and keep the best reply over the worst (or every ordered pair); ties are dropped
and counted. ``labeller=constitution`` instead asks a model to critique each reply against a
written principle and revise it, and keeps (revision > original).

Each finished chunk is appended to ``scored.jsonl`` (every reply and its score), so
``resume=auto`` continues a stopped run where it stopped; ``pairs.jsonl`` ({prompt, chosen,
rejected} plus the scores that decided each pair) is rewritten from it at the end and feeds
``lmlab dpo data=<run>/pairs.jsonl`` or ``lmlab reward``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lmlab.config import RunConfig, opt

HELP = "preference pairs from sampled replies: task checker, reward model, judge, rule, or " \
       "constitutional critique-and-revise"

LABELLERS = ("task", "reward", "judge", "rule", "constitution")


@dataclass
class Config(RunConfig):
    UNUSED = ("max_steps",)  # no optimizer steps here
    data: str = opt("task:add", "prompts: task:<name>[,...] (built-in tasks), a .jsonl file "
                                "({prompt} or {messages}; extra keys kept) or a .txt file (one "
                                "prompt a line)")
    split: str = opt("train", "split of built-in task prompts", choices=("train", "test"))
    limit: int | None = opt(64, "use at most this many prompts (null = all)", min=1)
    chat: bool = opt(True, "wrap plain-text prompts as a user message (chat template)")
    labeller: str = opt("task", "how replies are scored", choices=LABELLERS)
    n: int = opt(4, "replies sampled per prompt (constitution: replies revised per prompt)",
                 min=1)
    pairing: str = opt("best_worst", "best_worst: one pair per prompt (best over worst); all: "
                                     "every two replies whose scores differ",
                       choices=("best_worst", "all"))
    min_margin: float = opt(0.0, "a score gap of this much or less is a tie (dropped, counted)",
                            min=0.0)
    reward_model: str = opt("", "labeller=reward: a reward model folder or `lmlab reward` run")
    judge: str = opt("", "labeller=judge/constitution: the judge or critic model reference "
                         "(empty = the policy itself)")
    judge_mode: str = opt("pointwise", "judge: score each reply, or compare replies two by two "
                                       "(both orders)", choices=("pointwise", "pairwise"))
    judge_method: str = opt("logprobs", "judge: read the answer from label probabilities, or "
                                        "generate it and parse", choices=("logprobs", "generate"))
    judge_scale: int = opt(5, "judge: pointwise scores run from 1 to this", min=2, max=9)
    rubric: str = opt("", "judge: rubric text or a .txt/.md file (empty = the default rubric)")
    judge_max_new_tokens: int = opt(24, "judge_method=generate: tokens per judge answer", min=1)
    rule: str = opt("concise", "labeller=rule: the style rule", choices=("concise", "positive"))
    principles: str = opt("", "constitution: a text file of principles, one a line (empty = "
                              "the built-in ones)")
    critique_max_new_tokens: int = opt(64, "constitution: tokens per critique", min=1)
    max_new_tokens: int = opt(64, "tokens per sampled reply (and per revision)", min=1)
    temperature: float = opt(1.0, "sampling temperature (> 0: the replies must differ)",
                             min=0.0, min_exclusive=True)
    top_p: float = opt(0.95, "nucleus sampling mass (1 = off)", min=0.0, max=1.0,
                       min_exclusive=True)
    top_k: int = opt(0, "keep the k most likely tokens (0 = off)", min=0)
    batch_size: int = opt(8, "prompts per chunk: their replies are decoded together and "
                             "written when the chunk is done", min=1)
    score_batch_size: int = opt(16, "replies per forward of the reward model or judge", min=1)
    device: str = opt("auto", "cpu | cuda | mps | auto")
    dtype: str = opt("auto", "auto (fp32 on CPU) | fp32 | bf16 | fp16")

    def validate(self) -> list[str]:
        problems = []
        if self.labeller == "reward" and not self.reward_model:
            problems.append("reward_model: required with labeller=reward")
        if self.reward_model and self.labeller != "reward":
            problems.append("reward_model: only used with labeller=reward")
        if self.judge and self.labeller not in ("judge", "constitution"):
            problems.append("judge: only used with labeller=judge or constitution")
        if self.n < 2 and self.labeller != "constitution":
            problems.append(f"n: labeller={self.labeller} compares replies, so it needs n >= 2")
        return problems


# --- setup ----------------------------------------------------------------------------------------


def _labeller(cfg: Config, rows, model, tokenizer, device, dtype):
    """The labeller for ``cfg`` (None for constitution) and the critic/judge model it uses."""
    from lmlab.data import preferences as P

    if cfg.labeller == "task":
        return P.TaskLabeller(rows), None
    if cfg.labeller == "rule":
        return P.RuleLabeller(cfg.rule), None
    if cfg.labeller == "reward":
        from lmlab.models.heads import load_reward_model

        rm = load_reward_model(cfg.reward_model, dtype=dtype, device=device)
        return P.RewardLabeller(rm, cfg.score_batch_size), None
    from lmlab.eval.rubric_judge import RubricJudge, load_rubric_judge, read_rubric

    kw = dict(rubric=read_rubric(cfg.rubric), scale=cfg.judge_scale, method=cfg.judge_method,
              max_new_tokens=cfg.judge_max_new_tokens, batch_size=cfg.score_batch_size)
    judge = load_rubric_judge(cfg.judge, device=device, dtype=dtype, **kw) if cfg.judge else \
        RubricJudge(model, tokenizer, **kw)
    if cfg.labeller == "constitution":
        return None, judge
    return P.JudgeLabeller(judge, cfg.judge_mode, cfg.n), judge


# --- one chunk ------------------------------------------------------------------------------------


def _params(cfg: Config, offset: int, max_new_tokens: int | None = None):
    from lmlab.infer.sampling import SamplingParams
    from lmlab.runs import chunk_seed

    return SamplingParams(max_new_tokens=max_new_tokens or cfg.max_new_tokens,
                          temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                          seed=chunk_seed(cfg.seed, offset))


def _sample(cfg, model, tokenizer, prompts: list, start: int) -> list:
    from lmlab.infer.decode import generate

    flat = [p for p in prompts for _ in range(cfg.n)]
    return generate(model, tokenizer, flat, _params(cfg, start), batch_size=len(flat))


def _scored_chunk(cfg, labeller, model, tokenizer, rows, prompts, idx) -> list[dict]:
    """Sample, score and pair the replies of prompts ``idx``: one record per prompt."""
    from lmlab.data.preferences import make_pairs

    comps = _sample(cfg, model, tokenizer, [prompts[i] for i in idx], idx[0])
    texts = [c.text for c in comps]
    flat_rows = [rows[i] for i in idx for _ in range(cfg.n)]
    scores = labeller([r["prompt"] for r in flat_rows], flat_rows, texts)
    out = []
    for k, i in enumerate(idx):
        sl = slice(k * cfg.n, (k + 1) * cfg.n)
        t, s = texts[sl], scores[sl]
        pairs, stats = make_pairs(t, s, pairing=cfg.pairing, min_margin=cfg.min_margin)
        out.append({**_row_keys(rows[i], i), **stats,
                    "samples": [{"text": x, "score": y, "finish_reason": c.finish_reason,
                                 "new_tokens": len(c.token_ids)}
                                for x, y, c in zip(t, s, comps[sl])],
                    "pairs": [{"chosen": t[a], "rejected": t[b], "chosen_score": s[a],
                               "rejected_score": s[b]} for a, b in pairs]})
    return out


def _constitution_chunk(cfg, critic, principles, model, tokenizer, rows, prompts, idx):
    """Sample, critique against a principle, revise; one record per prompt."""
    from lmlab.data import constitution as C
    from lmlab.eval.rubric_judge import eval_mode
    from lmlab.infer.decode import generate

    comps = _sample(cfg, model, tokenizer, [prompts[i] for i in idx], idx[0])
    originals = [c.text for c in comps]
    jobs = [(i, k) for i in idx for k in range(cfg.n)]
    chosen = [C.pick_principle(principles, cfg.seed, i, k) for i, k in jobs]
    asks = [C.critique_request(rows[i]["prompt"], o, p)
            for (i, _), o, p in zip(jobs, originals, chosen)]
    bs = len(asks)
    with eval_mode(critic.model):
        critiques = [c.text for c in generate(critic.model, critic.tokenizer, asks,
                                              _params(cfg, (1 << 20) + idx[0],
                                                      cfg.critique_max_new_tokens),
                                              batch_size=bs)]
        revs = [C.revision_request(rows[i]["prompt"], o, c, p)
                for (i, _), o, c, p in zip(jobs, originals, critiques, chosen)]
        revised = [C.clean_revision(c.text) for c in generate(
            critic.model, critic.tokenizer, revs, _params(cfg, (2 << 20) + idx[0]), batch_size=bs)]
    out = []
    for k, i in enumerate(idx):
        sl = slice(k * cfg.n, (k + 1) * cfg.n)
        samples = [{"text": o, "critique": c, "revision": r, "principle": p}
                   for o, c, r, p in zip(originals[sl], critiques[sl], revised[sl], chosen[sl])]
        keep = [s for s in samples if s["revision"] and s["revision"] != s["text"].strip()]
        out.append({**_row_keys(rows[i], i), "samples": samples,
                    "unchanged": len(samples) - len(keep), "ties": 0,
                    "pairs": [{"chosen": s["revision"], "rejected": s["text"],
                               "principle": s["principle"], "critique": s["critique"]}
                              for s in keep]})
    return out


def _row_keys(row: dict, index: int) -> dict:
    keep = {k: row[k] for k in ("task", "answer") if k in row}
    return {"index": index, "prompt": row["prompt"], **keep}


def _pair_rows(records: list[dict], labeller: str) -> list[dict]:
    out = []
    for rec in sorted(records, key=lambda r: r["index"]):
        extra = {k: rec[k] for k in ("task", "answer") if k in rec}
        out += [{"prompt": rec["prompt"], **p, "labeller": labeller, "index": rec["index"],
                 **extra} for p in rec["pairs"]]
    return out


# --- the stage ------------------------------------------------------------------------------------


def run(cfg: Config) -> dict:
    from lmlab.common import pick_device, pick_dtype, print0, seed_everything
    from lmlab.data.preferences import load_prompt_rows
    from lmlab.infer.decode import check_context, encode_prompts
    from lmlab.models import load_model, load_tokenizer, resolve
    from lmlab.runs import prepare_run, read_done_jsonl

    for ref in filter(None, (cfg.model, cfg.judge)):
        resolve(ref)  # an unknown model fails before any work
    _params(cfg, 0)  # bad sampling values fail now
    rows = load_prompt_rows(cfg.data, split=cfg.split, limit=cfg.limit)
    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.dtype, device)
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, dtype=dtype, device=device, merge_adapter=True).eval()
    prompts = [[{"role": "user", "content": r["prompt"]}] if cfg.chat and
               isinstance(r["prompt"], str) else r["prompt"] for r in rows]
    check_context(model, [len(e) for e in encode_prompts(tokenizer, prompts)],
                  cfg.max_new_tokens)
    labeller, critic = _labeller(cfg, rows, model, tokenizer, device, dtype)
    principles = None
    if cfg.labeller == "constitution":
        from lmlab.data.constitution import read_principles

        principles = read_principles(cfg.principles)
    run_ = prepare_run(cfg, "preferences")
    seed_everything(cfg.seed)

    scored = run_.path / "scored.jsonl"
    records = read_done_jsonl(scored) if cfg.resume != "no" else []
    done = {r["index"] for r in records}
    print0(f"[lmlab] preferences: {len(rows)} prompts x {cfg.n} replies from {cfg.model}, "
           f"labeller={cfg.labeller}" + (f"; {len(done)} prompts already done" if done else ""))
    t0, new_tokens = time.perf_counter(), 0
    for start in range(0, len(rows), cfg.batch_size):
        idx = [i for i in range(start, min(len(rows), start + cfg.batch_size))]
        if all(i in done for i in idx):
            continue
        if cfg.labeller == "constitution":
            chunk = _constitution_chunk(cfg, critic, principles, model, tokenizer, rows,
                                        prompts, idx)
        else:
            chunk = _scored_chunk(cfg, labeller, model, tokenizer, rows, prompts, idx)
        run_.append_jsonl("scored.jsonl", chunk)
        records += chunk
        new_tokens += sum(s.get("new_tokens", 0) for r in chunk for s in r["samples"])
        print0(f"[lmlab] prompts {idx[0]}-{idx[-1]}: {sum(len(r['pairs']) for r in chunk)} "
               f"pairs ({time.perf_counter() - t0:.0f} s)")
    seconds = time.perf_counter() - t0

    pairs = _pair_rows(records, cfg.labeller)
    run_.write_jsonl("pairs.jsonl", pairs)
    summary = _summary(cfg, records, pairs, seconds, new_tokens, labeller, critic, len(done))
    summary["pairs_file"] = str(run_.path / "pairs.jsonl")
    run_.write_json("summary.json", summary)
    print0(f"[lmlab] {summary['pairs']} pairs from {summary['prompts']} prompts; dropped "
           f"{summary['ties']} ties" + (f", {summary['unscored']} unscored replies"
                                         if summary["unscored"] else "")
           + f"; wrote {run_.path}/ (pairs.jsonl, scored.jsonl, summary.json)")
    return summary


def _summary(cfg, records, pairs, seconds, new_tokens, labeller, critic, resumed) -> dict:
    def total(key):
        return sum(r.get(key, 0) for r in records)

    s = {"stage": "preferences", "model": cfg.model, "labeller": cfg.labeller,
         "prompts": len(records), "replies": sum(len(r["samples"]) for r in records),
         "pairs": len(pairs), "prompts_with_pairs": sum(bool(r["pairs"]) for r in records),
         "ties": total("ties"), "unscored": total("unscored"), "identical": total("identical"),
         "resumed_prompts": resumed, "seconds": round(seconds, 2),
         "tokens_per_s": round(new_tokens / seconds, 2) if seconds > 0 and new_tokens else None}
    if cfg.labeller == "constitution":
        s["unchanged"] = total("unchanged")
    if pairs and "chosen_score" in pairs[0]:
        s["mean_chosen_score"] = sum(p["chosen_score"] for p in pairs) / len(pairs)
        s["mean_rejected_score"] = sum(p["rejected_score"] for p in pairs) / len(pairs)
    scores = [x["score"] for r in records for x in r["samples"] if x.get("score") is not None]
    if scores:
        s["mean_reply_score"] = sum(scores) / len(scores)
    if getattr(labeller, "compared", 0):
        s["judge_position_consistency"] = labeller.consistent / labeller.compared
    if critic is not None and critic.label_mass:
        s["judge_label_mass"] = sum(critic.label_mass) / len(critic.label_mass)
    return s
