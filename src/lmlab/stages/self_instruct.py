"""`lmlab self-instruct`: a model writes new instructions and answers from a few seed tasks.

Setup (seeds, model), then rounds of generate -> answer -> filter (``lmlab.data.selfinstruct``:
format and length rules, ROUGE-L novelty against the pool, the built-in task checker where an
instruction is one of lmlab's tasks, an optional rubric judge), then an optional
constitutional critique-and-revise pass over the kept answers (``lmlab.data.constitution``, the
same requests ``lmlab preferences labeller=constitution`` uses). Writes ``kept.jsonl`` (SFT
rows: ``lmlab sft data=<run>/kept.jsonl``), ``generated.jsonl`` (every candidate and why it
was rejected) and ``summary.json`` (generated / kept / rejected by reason).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lmlab.config import RunConfig, opt

STOP = ("\n\n", "\nAnswer", "\nOutput")  # a generated task ends before a blank line or an answer
HELP = "the model writes new tasks from a few seeds; novelty, format and checker filters; " \
       "SFT rows out"


@dataclass
class Config(RunConfig):
    UNUSED = ("max_steps",)  # no optimizer steps here
    data: str = opt("", "seed tasks: a .jsonl of {instruction, input?, output} (empty = the 8 "
                        "built-in seeds)")
    target: int = opt(64, "stop when this many new tasks are kept", min=1)
    max_generated: int = opt(256, "stop after generating this many candidates", min=1)
    batch_size: int = opt(8, "candidates generated (and answered) together", min=1)
    shown: int = opt(3, "pool tasks shown in each generation prompt", min=1)
    novelty: float = opt(0.7, "reject an instruction whose ROUGE-L with one in the pool is at "
                              "least this", min=0.0, max=1.0)
    min_words: int = opt(3, "fewest words in an instruction", min=1)
    max_words: int = opt(60, "most words in an instruction", min=1)
    max_output_words: int = opt(100, "most words in an answer", min=1)
    max_new_tokens: int = opt(48, "tokens per generated task", min=1)
    answer_max_new_tokens: int = opt(96, "tokens per answer (an answer cut off is rejected)",
                                     min=1)
    temperature: float = opt(0.7, "sampling temperature for new tasks (answers are greedy)",
                             min=0.0, min_exclusive=True)
    top_p: float = opt(0.9, "nucleus sampling mass for new tasks", min=0.0, max=1.0,
                       min_exclusive=True)
    judge_min_score: float = opt(0.0, "keep an answer only when the rubric judge scores it at "
                                      "least this (1-5; 0 = no judge)", min=0.0, max=5.0)
    judge: str = opt("", "judge model reference (empty = the model itself)")
    revise: bool = opt(False, "critique and revise each kept answer against a principle "
                              "(constitutional, as lmlab preferences labeller=constitution)")
    principles: str = opt("", "revise: a text file of principles, one a line (empty = the "
                              "built-in ones)")
    include_seeds: bool = opt(True, "kept.jsonl starts with the seed tasks")
    device: str = opt("auto", "cpu | cuda | mps | auto")
    dtype: str = opt("auto", "auto (fp32 on CPU) | fp32 | bf16 | fp16")

    def validate(self) -> list[str]:
        problems = []
        if self.min_words > self.max_words:
            problems.append(f"min_words ({self.min_words}) is above max_words "
                            f"({self.max_words})")
        if self.judge and not self.judge_min_score:
            problems.append("judge: only used with judge_min_score > 0")
        if self.principles and not self.revise:
            problems.append("principles: only used with revise=true")
        if self.target > self.max_generated:
            problems.append(f"target ({self.target}) is above max_generated "
                            f"({self.max_generated}): it could never be reached")
        return problems


def _model_fns(cfg: Config, model, tokenizer):
    """(propose, answer): the model as the two functions ``grow`` calls."""
    from lmlab.infer.decode import generate
    from lmlab.infer.sampling import SamplingParams
    from lmlab.runs import chunk_seed

    def propose(prompts, round_):
        params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                top_p=cfg.top_p, seed=chunk_seed(cfg.seed, round_),
                                stop=list(STOP))
        return [(c.text, c.finish_reason == "length")
                for c in generate(model, tokenizer, prompts, params, batch_size=cfg.batch_size)]

    def answer(prompts):
        params = SamplingParams(temperature=0.0, max_new_tokens=cfg.answer_max_new_tokens)
        chats = [[{"role": "user", "content": p}] for p in prompts]
        return [(c.text, c.finish_reason == "length")
                for c in generate(model, tokenizer, chats, params, batch_size=cfg.batch_size)]

    return propose, answer


def _judge_fn(cfg: Config, model, tokenizer, device, dtype):
    if not cfg.judge_min_score:
        return None
    from lmlab.eval.rubric_judge import RubricJudge, load_rubric_judge

    judge = load_rubric_judge(cfg.judge, device=device, dtype=dtype) if cfg.judge else \
        RubricJudge(model, tokenizer)
    return judge.score


def revise_kept(cfg: Config, kept, model, tokenizer) -> int:
    """Critique and revise each kept answer (lmlab.data.constitution); a revision replaces the
    answer unless it is empty or fails the built-in checker. Returns how many were replaced."""
    from lmlab.data import constitution as C
    from lmlab.data.selfinstruct import Limits, output_reason
    from lmlab.infer.decode import generate
    from lmlab.infer.sampling import SamplingParams

    if not kept:
        return 0
    principles = C.read_principles(cfg.principles)
    chosen = [C.pick_principle(principles, cfg.seed, i, 0) for i in range(len(kept))]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=cfg.answer_max_new_tokens)
    asks = [C.critique_request(c.prompt(), c.output, p) for c, p in zip(kept, chosen)]
    critiques = [x.text for x in generate(model, tokenizer, asks, greedy,
                                          batch_size=cfg.batch_size)]
    revs = [C.revision_request(c.prompt(), c.output, k, p)
            for c, k, p in zip(kept, critiques, chosen)]
    revised = [C.clean_revision(x.text) for x in generate(model, tokenizer, revs, greedy,
                                                          batch_size=cfg.batch_size)]
    limits, replaced = Limits(max_output_words=cfg.max_output_words), 0
    for c, text, crit, p in zip(kept, revised, critiques, chosen):
        c.extra.update(principle=p, critique=crit, revision=text)
        original = c.output
        c.output = text
        if not text or text == original or output_reason(c, limits) is not None:
            c.output = original
        else:
            c.extra["original_output"] = original
            replaced += 1
    return replaced


def run(cfg: Config) -> dict:
    from lmlab.common import pick_device, pick_dtype, print0, seed_everything
    from lmlab.data.selfinstruct import Limits, grow, read_seeds, seed_candidate
    from lmlab.models import load_model, load_tokenizer, resolve
    from lmlab.runs import prepare_run

    for ref in filter(None, (cfg.model, cfg.judge)):
        resolve(ref)  # an unknown model fails before any work
    seeds = [seed_candidate(r) for r in read_seeds(cfg.data)]
    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.dtype, device)
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, dtype=dtype, device=device, merge_adapter=True).eval()
    run_ = prepare_run(cfg, "self-instruct")
    seed_everything(cfg.seed)
    propose, answer = _model_fns(cfg, model, tokenizer)
    limits = Limits(novelty=cfg.novelty, min_words=cfg.min_words, max_words=cfg.max_words,
                    max_output_words=cfg.max_output_words)
    print0(f"[lmlab] self-instruct: {len(seeds)} seed tasks, {cfg.model}; until {cfg.target} "
           f"kept or {cfg.max_generated} generated")
    t0 = time.perf_counter()

    def on_round(g):
        print0(f"[lmlab] round {g.rounds}: {len(g.records)} generated, {len(g.kept)} kept "
               f"({time.perf_counter() - t0:.0f} s)")

    grown = grow(seeds, propose, answer, target=cfg.target, max_generated=cfg.max_generated,
                 batch_size=cfg.batch_size, shown=cfg.shown, limits=limits, seed=cfg.seed,
                 judge=_judge_fn(cfg, model, tokenizer, device, dtype),
                 judge_min=cfg.judge_min_score, on_round=on_round)
    revised = revise_kept(cfg, grown.kept, model, tokenizer) if cfg.revise else 0
    rows = ([c.row("seed") for c in seeds] if cfg.include_seeds else []) + \
        [c.row("self-instruct") for c in grown.kept]
    run_.write_jsonl("kept.jsonl", rows)
    run_.write_jsonl("generated.jsonl", [_record(c) for c in grown.records])
    summary = {"stage": "self-instruct", "model": cfg.model, "seeds": len(seeds),
               **grown.counts(), "rows": len(rows), "seconds": round(time.perf_counter() - t0, 2),
               "kept_file": str(run_.path / "kept.jsonl")}
    if cfg.revise:
        summary["revised"] = revised
    run_.write_json("summary.json", summary)
    why = ", ".join(f"{k} {v}" for k, v in summary["rejected"].items() if v) or "none"
    print0(f"[lmlab] {summary['generated']} generated, {summary['kept']} kept; rejected: {why}; "
           f"wrote {run_.path}/ (kept.jsonl: {len(rows)} SFT rows, generated.jsonl, "
           f"summary.json)")
    return summary


def _record(c) -> dict:
    out = {"instruction": c.instruction, "input": c.input, "output": c.output,
           "kept": c.reason is None, "reason": c.reason, "rouge_l": round(c.rouge, 4)}
    if c.task:
        out.update(task=c.task, answer=c.answer)
    return out | c.extra
