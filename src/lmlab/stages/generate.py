"""`lmlab generate`: complete prompts with any decoding strategy; write samples and speed.

Setup (model, prompts), then, chunk by chunk (``chunk`` prompts): one call into
``lmlab.infer`` for the chosen strategy, and the chunk's generations appended to
``samples.jsonl`` (one per prompt, with task correctness when the prompts come from built-in
tasks). A stopped run keeps its finished chunks and ``resume=auto`` continues after them, with
the same output as a run that was never stopped (each chunk is seeded by its position). Last,
``summary.json`` (tokens/s, finish reasons, accuracy, speculative stats).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lmlab.config import RunConfig, opt

HELP = "generate from prompts: greedy, sampling, beam, contrastive, best-of-N, speculative"

STRATEGIES = ("sample", "greedy", "beam", "contrastive", "best_of_n", "speculative")
STREAMING = ("sample", "greedy", "speculative")


@dataclass
class Config(RunConfig):
    UNUSED = ("max_steps",)  # no optimizer steps here
    data: str = opt("task:add", "prompts: task:<name>[,<name>] (test split), a .jsonl file "
                                "({prompt} or {messages}), or a .txt file (one prompt a line)")
    prompt: str = opt("", "a single prompt instead of data")
    limit: int | None = opt(8, "use at most this many prompts (null = all)", min=1)
    chat: bool = opt(True, "wrap plain-text prompts as a user message (chat template)")
    strategy: str = opt("sample", "decoding strategy", choices=STRATEGIES)
    max_new_tokens: int = opt(64, "tokens to generate per prompt", min=0)
    temperature: float = opt(0.7, "sampling temperature (0 = greedy)", min=0.0)
    top_k: int = opt(0, "keep the k most likely tokens (0 = off)", min=0)
    top_p: float = opt(1.0, "nucleus: smallest set with this much probability (1 = off)",
                       min=0.0, max=1.0, min_exclusive=True)
    min_p: float = opt(0.0, "drop tokens below min_p x the top probability (0 = off)",
                       min=0.0, max=1.0)
    typical_p: float = opt(1.0, "locally typical sampling mass (1 = off)", min=0.0, max=1.0,
                           min_exclusive=True)
    repetition_penalty: float = opt(1.0, "CTRL repetition penalty (1 = off)", min=0.0,
                                    min_exclusive=True)
    presence_penalty: float = opt(0.0, "OpenAI presence penalty")
    frequency_penalty: float = opt(0.0, "OpenAI frequency penalty")
    no_repeat_ngram_size: int = opt(0, "never repeat an n-gram of this size (0 = off)", min=0)
    stop: list[str] = opt([], "stop strings (not included in the text)")
    num_beams: int = opt(4, "beam: beams per prompt", min=1)
    length_penalty: float = opt(1.0, "beam: score = logprob / length ** length_penalty")
    early_stopping: str = opt("false", "beam: stop rule", choices=("false", "true", "never"))
    penalty_alpha: float = opt(0.6, "contrastive: degeneration penalty weight", min=0.0, max=1.0)
    contrastive_k: int = opt(4, "contrastive: candidates per step", min=1)
    n: int = opt(4, "best_of_n: samples per prompt", min=1)
    reranker: str = opt("auto", "best_of_n: task (the task checker; task data only), length "
                                "(longest), auto (task when possible, else length)",
                        choices=("auto", "task", "length"))
    draft: str = opt("", "speculative: draft model reference (empty = prompt lookup)")
    num_draft_tokens: int = opt(5, "speculative: tokens drafted per step", min=1)
    draft_vocab: int = opt(0, "speculative: the draft scores only the first N token ids plus "
                              "the prompt's (a cheaper LM head; exact either way; 0 = all)",
                           min=0)
    draft_bf16: bool = opt(True, "speculative, with pack_weights: the draft's native steps read "
                                 "bfloat16 copies of its weights (half the bytes; exact either "
                                 "way: only the acceptance rate can move)")
    prompt_lookup_max_ngram: int = opt(3, "speculative: longest n-gram matched by prompt lookup",
                                       min=1)
    prompt_lookup_prefer: str = opt("first", "speculative: which earlier match prompt lookup "
                                             "copies from when there are several",
                                    choices=("first", "last"))
    retrieve: str = opt("", "RAG: an `lmlab index` run folder; each prompt is answered from its "
                            "retrieve_k best chunks, cited as [n]")
    retrieve_k: int = opt(3, "RAG: chunks put in each prompt", min=1)
    engine: str = opt("lmlab", "lmlab (ours) | llama.cpp (a GGUF file or the model exported to "
                               "one: fixed-weight CPU decoding; sample / greedy; needs the "
                               "llamacpp extra)", choices=("lmlab", "llama.cpp"))
    gguf: str = opt("q8_0", "engine=llama.cpp: the GGUF type a model that is not a .gguf file "
                            "is exported to, once (cached)",
                    choices=("f16", "q8_0", "q4_0", "q4_1"))
    batch_size: int = opt(8, "prompts decoded together", min=1)
    chunk: int = opt(32, "prompts per chunk: decoded (in batches of batch_size), then appended "
                         "to samples.jsonl; resume=auto continues a stopped run after its last "
                         "finished chunk", min=1)
    pack_weights: bool = opt(True, "fp32 on a CPU: decode through packed weight copies and "
                                   "the native step (faster; equal to the plain step up to "
                                   "fp32 rounding; every strategy); false: bit for bit HF's "
                                   "forward (parity tests, lessons)")
    decode_weights: str = opt("fp32", "with pack_weights: the precision of the weights decoding "
                                      "reads (bf16 / int8 per channel: 1/2 / 1/4 of the bytes; "
                                      "fp32 arithmetic; docs/generate.md)",
                              choices=("fp32", "bf16", "int8"))
    stream: bool = opt(False, "print text as it arrives (sample / greedy: one prompt; "
                              "speculative: prompt after prompt)")
    device: str = opt("auto", "cpu | cuda | mps | auto")
    dtype: str = opt("auto", "auto (fp32 on CPU) | fp32 | bf16 | fp16")

    def validate(self) -> list[str]:
        problems = []
        if self.reranker == "task" and not self.data.startswith("task:") and self.strategy == \
                "best_of_n":
            problems.append("reranker: 'task' needs data=task:<name>")
        if self.draft and self.strategy != "speculative":
            problems.append("draft: only used with strategy=speculative")
        if self.decode_weights != "fp32" and not self.pack_weights:
            problems.append("decode_weights: rounded weights need pack_weights=true")
        if self.draft_vocab and not self.draft:
            problems.append("draft_vocab: only used with a draft model (draft=...)")
        if self.engine == "llama.cpp" and self.strategy not in ("sample", "greedy"):
            problems.append(f"strategy: engine=llama.cpp decodes sample / greedy, not "
                            f"{self.strategy} (use engine=lmlab)")
        if self.engine == "llama.cpp" and self.stream:
            problems.append("stream: not with engine=llama.cpp (its text comes per chunk)")
        if self.stream and self.strategy not in STREAMING:
            problems.append(f"stream: strategy={self.strategy} has its text only when it is "
                            f"done; streaming works with {', '.join(STREAMING)}")
        return problems

    def pack(self) -> bool | str:
        """The ``pack`` argument of ``lmlab.infer``: False, or the weights' precision."""
        return self.decode_weights if self.pack_weights else False

    def sampling(self):
        from lmlab.infer.sampling import SamplingParams

        return SamplingParams(
            max_new_tokens=self.max_new_tokens,
            temperature=0.0 if self.strategy == "greedy" else self.temperature,
            top_k=self.top_k, top_p=self.top_p, min_p=self.min_p, typical_p=self.typical_p,
            repetition_penalty=self.repetition_penalty, presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            no_repeat_ngram_size=self.no_repeat_ngram_size, stop=list(self.stop), seed=self.seed)


def load_prompts(cfg: Config) -> list[dict]:
    """Rows with ``prompt`` (text or messages), and ``answer`` / ``task`` for task data."""
    from lmlab.errors import DataError
    from lmlab.textfile import read_lines

    if cfg.prompt:
        return [{"prompt": cfg.prompt}]
    if cfg.data.startswith("task:"):
        from lmlab.data import load_rows

        return list(load_rows(cfg.data, "task", split="test", limit=cfg.limit))
    path = Path(cfg.data)
    if not path.is_file():
        raise DataError("not found (expected task:<name>, a .jsonl or a .txt file)", file=cfg.data)
    if path.suffix not in (".txt", ".jsonl"):
        raise DataError("prompts must be a .jsonl or .txt file", file=cfg.data)
    lines = [(n, line) for n, line in read_lines(path) if line.strip()]  # BOM, CRLF: as plain
    if path.suffix == ".txt":
        rows = [{"prompt": line} for _, line in lines]
    else:
        rows = [_jsonl_prompt(line, cfg.data, n) for n, line in lines]
    if not rows:
        raise DataError("no prompts (the file holds no non-blank line)", file=cfg.data)
    where = [f"{cfg.data}:{n}" for n, _ in lines]
    if cfg.limit and len(rows) > cfg.limit:
        from lmlab.common import print0

        print0(f"[lmlab] using the first {cfg.limit} of {len(rows)} prompts in {cfg.data} "
               f"(limit={cfg.limit}; limit=null for all)")
        rows, where = rows[:cfg.limit], where[:cfg.limit]
    return PromptRows(rows, where)


class PromptRows(list):
    """Prompt rows that remember where each came from (``file:line``), for messages."""

    def __init__(self, rows: list[dict], where: list[str]):
        super().__init__(rows)
        self.where = where


def _jsonl_prompt(line: str, file: str, n: int) -> dict:
    from lmlab.errors import DataError

    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON ({e.msg})", file=file, line=n) from None
    if isinstance(row, dict) and isinstance(row.get("prompt"), (str, list)) and row["prompt"]:
        return row
    msgs = row.get("messages") if isinstance(row, dict) else None
    if isinstance(msgs, list) and msgs and all(isinstance(m, dict) and "role" in m and
                                               "content" in m for m in msgs):
        if msgs[-1]["role"] == "assistant":  # a finished chat: prompt = everything before it
            msgs = msgs[:-1]
        return {**row, "prompt": msgs}
    raise DataError("expected a non-empty 'prompt' (text or messages) or 'messages'", file=file,
                    line=n, field="prompt")


def _as_input(prompt, chat: bool):
    return [{"role": "user", "content": prompt}] if chat and isinstance(prompt, str) else prompt


def load_draft(cfg: Config, model) -> tuple | None:
    """(draft model, its tokenizer) for ``cfg.draft``, on the target's device; None without."""
    from lmlab.models import load_model, load_tokenizer

    if not cfg.draft:
        return None
    return load_model(cfg.draft, device=model.device), load_tokenizer(cfg.draft)


def _decode(cfg: Config, model, tokenizer, prompts: list, rows: list[dict], params,
            on_text=None, draft: tuple | None = None):
    """(completions, extra summary) for the configured strategy; ``on_text``: speculative
    decoding's text as it is accepted (``generate_speculative``); ``draft``: ``load_draft``'s
    (callers load it once, outside their loops and timings)."""
    from lmlab.infer import search, speculative
    from lmlab.infer.decode import generate

    s = cfg.strategy
    if cfg.engine == "llama.cpp":
        from lmlab.infer import llamacpp

        return llamacpp.generate(model, tokenizer, prompts, params,
                                 batch_size=cfg.batch_size), {}
    if s in ("sample", "greedy"):
        return generate(model, tokenizer, prompts, params, batch_size=cfg.batch_size,
                        pack=cfg.pack()), {}
    if s == "beam":
        es = {"true": True, "false": False, "never": "never"}[cfg.early_stopping]
        return search.generate_beam(model, tokenizer, prompts, num_beams=cfg.num_beams,
                                    length_penalty=cfg.length_penalty, early_stopping=es,
                                    params=params, batch_size=cfg.batch_size,
                                    pack=cfg.pack()), {}
    if s == "contrastive":
        return search.generate_contrastive(model, tokenizer, prompts,
                                           penalty_alpha=cfg.penalty_alpha,
                                           top_k=cfg.contrastive_k, params=params,
                                           batch_size=cfg.batch_size,
                                           pack=cfg.pack()), {}
    if s == "best_of_n":
        rerank = _reranker(cfg, rows, prompts)
        res = search.best_of_n(model, tokenizer, prompts, cfg.n, rerank, params,
                               batch_size=cfg.batch_size, pack=cfg.pack())
        return [r.best for r in res], {"best_of_n_scores": [r.scores for r in res]}
    draft_model, draft_tokenizer = draft or (None, None)
    res = speculative.generate_speculative(
        model, tokenizer, prompts, params, draft=draft_model, draft_tokenizer=draft_tokenizer,
        num_draft_tokens=cfg.num_draft_tokens, draft_vocab=cfg.draft_vocab or None,
        prompt_lookup_max_ngram=cfg.prompt_lookup_max_ngram,
        prompt_lookup_prefer=cfg.prompt_lookup_prefer, pack=cfg.pack(),
        draft_bf16=cfg.draft_bf16, on_text=on_text)
    return res.completions, {"speculative": res.stats}


def _reranker(cfg: Config, rows: list[dict], prompts: list):
    use_task = cfg.reranker == "task" or (cfg.reranker == "auto" and
                                          all("task" in r for r in rows))
    if not use_task:
        return lambda prompt, text: float(len(text))
    from lmlab.data.tasks import get_task

    by_prompt = {id(p): r for p, r in zip(prompts, rows)}
    return lambda prompt, text: float(get_task(by_prompt[id(prompt)]["task"]).check(
        text, by_prompt[id(prompt)]["answer"]))


def _stream(model, tokenizer, prompts, params, pack: bool = False, show: bool = True) -> list:
    """Sample / greedy through ``infer.decode.stream`` (one batch); prints the text as it
    comes when ``show`` (a run of one prompt: a batch's rows arrive interleaved)."""
    from lmlab.infer.decode import Completion, stream

    texts, reasons = [""] * len(prompts), [None] * len(prompts)
    for d in stream(model, tokenizer, prompts, params, pack=pack):
        if show:
            print(d.text, end="", flush=True)
        texts[d.index] += d.text
        reasons[d.index] = d.finish_reason
    if show:
        print()
    # the stream carries text; token counts for the summary are re-tokenized (approximate)
    return [Completion(p, t, tokenizer(t, add_special_tokens=False)["input_ids"], r or "length",
                       0) for p, t, r in zip(prompts, texts, reasons)]


def _header(prompt) -> str:
    """The line shown above a completion: the prompt, or a chat's last message, cut to 70."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        prompt = f"{prompt[-1].get('role', '?')}: {prompt[-1].get('content', '')}"
    return f"--- {str(prompt)[:70]!r}"


def _show_text(rows: list[dict]):
    """``on_text`` for speculative decoding: each prompt's header, then its text as it comes."""
    at = None  # the prompt being shown

    def show(i: int, text: str, finish_reason: str | None) -> None:
        nonlocal at
        if at != i:
            at = i
            print(_header(rows[i]["prompt"]), flush=True)
        print(text, end="\n" if finish_reason else "", flush=True)

    return show


def _packs(model) -> bool:
    """Whether ``pack_weights`` would take this model: the lean step's architecture, with
    weights packed products take (plain fp32 on a CPU)."""
    from lmlab.infer.fastpath import LlamaStep
    from lmlab.infer.packed import can_pack

    return LlamaStep.supports(model) and can_pack(model.get_output_embeddings().weight)


def _check_ref(ref: str, resolve) -> None:
    from lmlab.errors import ModelRefError
    from lmlab.models.tiny import PRESETS

    r = resolve(ref)
    if r.kind == "tiny" and r.path not in PRESETS:
        raise ModelRefError(f"unknown tiny preset '{r.path}'; known: {', '.join(sorted(PRESETS))}")


def run(cfg: Config) -> dict:
    import time

    from lmlab.common import pick_device, pick_dtype, print0, seed_everything
    from lmlab.infer.decode import check_context, encode_prompts
    from lmlab.infer.speculative import SpecStats
    from lmlab.models import load_model, load_tokenizer, resolve
    from lmlab.runs import prepare_run, read_done_jsonl

    gguf_ref = cfg.engine == "llama.cpp" and cfg.model.lower().endswith(".gguf")
    for ref in filter(None, (None if gguf_ref else cfg.model, cfg.draft)):  # unknown models
        _check_ref(ref, resolve)  # fail before any work
    params = cfg.sampling()  # bad sampling values fail before anything is written
    rows = load_prompts(cfg)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    if cfg.retrieve:  # RAG: the sources go into the prompts (lmlab.embed.rag)
        from lmlab.embed.rag import Retriever, augment

        rows = augment(rows, Retriever.from_run(cfg.retrieve, device), cfg.retrieve_k)
    prompts = [_as_input(r["prompt"], cfg.chat) for r in rows]
    if cfg.engine == "llama.cpp":
        from lmlab.infer.llamacpp import open_model

        model, tokenizer = open_model(cfg.model, cfg.gguf, prompts=prompts,
                                      max_new_tokens=cfg.max_new_tokens,
                                      n_seq=min(cfg.batch_size, cfg.chunk))
    else:
        tokenizer = load_tokenizer(cfg.model)
        model = load_model(cfg.model, dtype=pick_dtype(cfg.dtype, device), device=device).eval()
    # every prompt, before the first chunk and before the run folder is touched: a long one late
    # in the file fails now, naming its line, and leaves an earlier run as it was
    check_context(model, [len(e) for e in encode_prompts(tokenizer, prompts)], cfg.max_new_tokens,
                  where=getattr(rows, "where", None))
    run_ = prepare_run(cfg, "generate")
    done = read_done_jsonl(run_.path / "samples.jsonl") if cfg.resume != "no" else []
    _check_done(done, rows, run_.path / "samples.jsonl")
    print0(f"[lmlab] generate: {len(prompts)} prompt{'s' * (len(prompts) != 1)}, "
           f"strategy={cfg.strategy}, model={cfg.model}"
           + (f"; {len(done)} already done" if done else ""))
    if cfg.engine == "lmlab" and cfg.pack_weights and _packs(model):
        print0(f"[lmlab] decoding: packed {cfg.decode_weights} weights"
               + (" (equal to HF's forward up to fp32 rounding; pack_weights=false: bit for bit)"
                  if cfg.decode_weights == "fp32" else
                  f" (rounded to {cfg.decode_weights}: tokens may differ from fp32)"))

    draft = load_draft(cfg, model)  # once, not per chunk
    streamed = cfg.stream and (cfg.strategy == "speculative" or len(rows) == 1)
    samples, extra, seconds, n_new = list(done), {}, 0.0, 0
    for start in range(len(done), len(rows), cfg.chunk):
        idx = range(start, min(len(rows), start + cfg.chunk))
        part, part_prompts = rows[idx.start:idx.stop], prompts[idx.start:idx.stop]
        chunk_params = _chunk_params(params, cfg.seed, start)
        t0 = time.perf_counter()
        if cfg.stream and cfg.strategy in ("sample", "greedy"):
            comps, more = _stream(model, tokenizer, part_prompts, chunk_params,
                                  cfg.pack(), show=len(rows) == 1), {}
        else:
            comps, more = _decode(cfg, model, tokenizer, part_prompts, part, chunk_params,
                                  on_text=_show_text(part) if cfg.stream else None,
                                  draft=draft)
        seconds += time.perf_counter() - t0
        new = [_sample_row(r, c, more, k) for k, (r, c) in enumerate(zip(part, comps))]
        run_.append_jsonl("samples.jsonl", new)
        samples += new
        n_new += sum(s["new_tokens"] for s in new)
        if "speculative" in more:
            extra.setdefault("speculative", SpecStats()).add(more["speculative"])
        if not streamed and len(rows) <= cfg.chunk:  # longer runs: progress lines instead
            for r, s in zip(part, new):
                print0(f"{_header(r['prompt'])}\n{s['completion']}")
        if len(rows) > cfg.chunk:
            print0(_progress(idx[-1] + 1 - len(done), len(rows) - len(done), len(rows),
                             idx, seconds, n_new))
    summary = _summary(cfg, samples, extra, seconds, n_new, len(done),
                       cfg.decode_weights if cfg.engine == "lmlab" and cfg.pack_weights
                       and _packs(model) else None)
    if cfg.engine != "lmlab":
        summary.update(engine=cfg.engine, gguf_file=str(model.path))
    run_.write_json("summary.json", summary)
    if len(done) == len(rows):
        print0(f"[lmlab] all {len(rows)} prompts were done before; wrote {run_.path}/summary.json")
    else:
        print0(f"[lmlab] {n_new} tokens in {seconds:.1f} s ({summary['tokens_per_s']} tok/s); "
               f"wrote {run_.path}/ (samples.jsonl, summary.json)")
    return summary


def _progress(did: int, todo: int, total: int, idx: range, seconds: float, n_new: int) -> str:
    """One line per chunk of a long run: where it is, its speed, and the time left."""
    left = seconds / did * (todo - did)
    eta = f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"
    return (f"[lmlab] prompts {idx[0] + 1}-{idx[-1] + 1} of {total} written to samples.jsonl "
            f"({seconds:.0f} s, {n_new / max(seconds, 1e-9):.1f} tok/s"
            + (f", about {eta} left)" if did < todo else ")"))


def _chunk_params(params, seed: int, start: int):
    """The sampling settings of the chunk that begins at prompt ``start``: its own seed (the
    first chunk keeps ``seed`` itself), so a resumed run samples what the whole run would."""
    import dataclasses

    from lmlab.runs import chunk_seed

    return params if start == 0 else dataclasses.replace(params, seed=chunk_seed(seed, start))


def _sample_row(row: dict, c, more: dict, k: int) -> dict:
    """A prompt's line in samples.jsonl: the input row's own fields (an ``id`` to join on, say;
    not its ``messages``, which ``prompt`` holds), then the generation."""
    s = {key: v for key, v in row.items() if key not in ("prompt", "messages")}
    s.update(prompt=row["prompt"], completion=c.text, finish_reason=c.finish_reason,
             new_tokens=len(c.token_ids))
    if "task" in row:
        from lmlab.data.tasks import get_task

        s.update(task=row["task"], answer=row["answer"],
                 correct=bool(get_task(row["task"]).check(c.text, row["answer"])))
    if "best_of_n_scores" in more:
        s["scores"] = more["best_of_n_scores"][k]
    if "sources" in s or ("answer" in s and "task" not in s):
        from lmlab.embed.rag import mark

        mark(s)  # citations; answer found in the reply, the retrieved and the cited chunks
    return s


def _check_done(done: list[dict], rows: list[dict], path: Path) -> None:
    """The samples a stopped run wrote must be of this run's first prompts, in order."""
    from lmlab.errors import UserError

    if len(done) > len(rows):
        raise UserError(f"{path}: holds {len(done)} samples but the data gives {len(rows)} "
                        "prompts; the data changed since the run began (overwrite=true starts "
                        "again)")
    for n, (s, r) in enumerate(zip(done, rows), 1):
        if not isinstance(s, dict) or s.get("prompt") != r["prompt"]:
            raise UserError(f"{path}: line {n}: its prompt is not prompt {n} of the data; the "
                            "data changed since the run began (overwrite=true starts again)")


def _summary(cfg: Config, samples: list[dict], extra: dict, seconds: float, n_new: int,
             resumed: int, weights: str | None = None) -> dict:
    """``weights``: the precision of the packed weights decoding read (None: unpacked)."""
    n_tok = sum(s["new_tokens"] for s in samples)
    summary = {"stage": "generate", "model": cfg.model, "strategy": cfg.strategy,
               "prompts": len(samples), "new_tokens": n_tok, "seconds": round(seconds, 3),
               "tokens_per_s": round(n_new / seconds, 2) if seconds > 0 else None,
               "decode_weights": weights,
               "finish_reasons": {k: sum(s["finish_reason"] == k for s in samples)
                                  for k in ("eos", "stop", "length")}}
    if resumed:
        summary["resumed_prompts"] = resumed  # seconds and tokens/s: this invocation's only
    if cfg.strategy == "best_of_n":
        summary["best_of_n_scores"] = [s.get("scores") for s in samples]
    if "speculative" in extra:
        summary["speculative"] = extra["speculative"].as_dict()
    if any("correct" in s for s in samples):
        summary["accuracy"] = sum(s.get("correct", False) for s in samples) / len(samples)
    if cfg.retrieve or any("answer_correct" in s for s in samples):
        from lmlab.embed.rag import summarize

        summary["rag"] = {"retrieve": cfg.retrieve or None, **summarize(samples)}
    return summary
