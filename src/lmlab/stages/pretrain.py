"""`lmlab pretrain`: train a language model from scratch (or continue pretraining one).

Setup: documents (a corpus, text files) split into train / val, a tokenizer (``char`` built
from the corpus, or any AutoTokenizer folder), a model from a size preset and position scheme
(stock transformers classes) or an existing model, the packed token stream. Then the shared
loop with one of the pretraining objectives (clm | mlm | span | prefix | electra), validation
loss / bits per byte and samples along the way, and final/ that every later stage loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from lmlab.config import opt
from lmlab.train.config import CompileOptions, TrainConfig

HELP = "pretrain a small model from scratch (clm, mlm, span, prefix, electra) or continue one"

POSITION_CHOICES = ("auto", "rope", "learned", "none", "alibi")


@dataclass
class Config(CompileOptions, TrainConfig):
    model: str = opt("scratch", "scratch (a new model from preset) or a model reference to "
                                "continue pretraining (alias, folder, run folder)")
    data: str = opt("corpus:shakespeare", "corpus:<name>, a text file, a glob or a comma "
                                          "list of them, or rows with a text field")
    tokenizer: str = opt("char", "model=scratch: char (built from the corpus) or a tokenizer "
                                 "folder / model reference (e.g. an `lmlab tokenizer` run)")
    objective: str = opt("clm", "what to train", choices=("clm", "mlm", "span", "prefix",
                                                          "electra"))
    preset: str = opt("nano", "size preset: tiny | nano | micro | mini | small")
    layers: int = opt(0, "override the preset's layers (0 = preset)", min=0)
    heads: int = opt(0, "override the preset's attention heads (0 = preset)", min=0)
    width: int = opt(0, "override the preset's hidden width (0 = preset)", min=0)
    context: int = opt(0, "override the preset's context length (0 = preset)", min=0)
    position: str = opt("auto", "position scheme: rope (Llama), learned (GPT-2), none (NoPE, "
                                "SmolLM3 body), alibi (Falcon); auto = rope, learned for "
                                "encoders", choices=POSITION_CHOICES)
    dropout: float = opt(0.0, "dropout in the new model", min=0.0, max=1.0)
    max_len: int = opt(0, "tokens per training sequence (0 = the model's context)", min=0)
    isolate_docs: bool = opt(False, "no attention across document boundaries in a window "
                                    "(positions restart per document)")
    data_chars: int = opt(0, "use the first N characters of the corpus (0 = all)", min=0)
    val_fraction: float = opt(0.1, "last fraction of the text held out for validation",
                              min=0.0, max=0.5)
    val_data: str = opt("", "validation text instead of the held-out fraction")
    general_data: str = opt("", "continued pretraining: general text measured before/after "
                                "too (what the model forgets)")
    eval_chars: int = opt(100_000, "characters of val text evaluated (0 = all)", min=0)
    eval_batch: int = opt(0, "windows per eval forward (0 = batch_size)", min=0)
    sample_prompts: list[str] = opt(["\n"], "prompts sampled at each eval (after a document "
                                           "separator)")
    sample_tokens: int = opt(120, "tokens per sample (0 = no samples)", min=0)
    sample_temperature: float = opt(0.8, "sampling temperature", min=0.0, min_exclusive=True)
    mlm_probability: float = opt(0.15, "mlm / electra: fraction of tokens chosen", min=0.01,
                                 max=0.9)
    span_density: float = opt(0.15, "span: fraction of tokens in corrupted spans", min=0.01,
                              max=0.9)
    span_mean: float = opt(3.0, "span: mean span length", min=1.0)
    electra_weight: float = opt(50.0, "electra: discriminator loss weight (lambda)", min=0.0)
    # pretraining defaults (nanoGPT's char recipe), not the fine-tuning ones of TrainConfig
    lr: float = opt(1e-3, "peak learning rate", min=0.0, min_exclusive=True)
    warmup_steps: int = opt(100, "linear warmup steps", min=0)
    beta2: float = opt(0.99, "AdamW beta2", min=0, max=1)
    batch_size: int = opt(12, "micro-batch size (windows per forward pass)", min=1)
    max_steps: int = opt(2000, "optimizer steps to run", min=0)
    eval_every: int = opt(250, "steps between validation + samples (0 = only at the end)",
                          min=0)
    log_every: int = opt(10, "steps between log lines / metrics.jsonl rows", min=1)
    save_every: int = opt(500, "steps between checkpoints (0 = only at the end)", min=0)

    def validate(self) -> list[str]:
        from lmlab.models.scratch_presets import PRESETS

        problems = []
        if self.model == "scratch" and self.preset not in PRESETS:
            import difflib

            close = difflib.get_close_matches(self.preset, list(PRESETS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"preset: unknown size preset '{self.preset}'{hint}; known: "
                            f"{', '.join(PRESETS)}")
        encoder = self.objective in ("mlm", "electra")
        if encoder and self.position not in ("auto", "learned"):
            problems.append(f"position: objective={self.objective} trains a BERT/ELECTRA "
                            f"encoder, which has learned positions only (use position=auto)")
        if self.model != "scratch" and self.objective not in ("clm", "prefix"):
            problems.append(f"objective: continued pretraining (model={self.model}) supports "
                            f"clm and prefix, not {self.objective}")
        if self.objective == "prefix" and self.position == "alibi":
            problems.append("position: alibi (Falcon) takes no custom attention mask, which "
                            "objective=prefix needs; use rope, learned or none")
        if self.isolate_docs and self.objective == "span":
            problems.append("isolate_docs: not supported with objective=span")
        return problems


def run(cfg: Config) -> dict:
    from lmlab.common import is_main, print0, rank, world_size
    from lmlab.data.stream import TokenStream
    from lmlab.models.amp_attention import fp32_attention
    from lmlab.models.compiling import compiled_for_training
    from lmlab.stages.setup import start_stage
    from lmlab.train.distributed import barrier
    from lmlab.train.logging import build_loggers
    from lmlab.train.loop import build_optimizer, train

    # --- everything that can fail on the user's input, before the run folder is touched
    data = _read_data(cfg)
    tokenizer, model = _tokenizer_and_model(cfg, data)
    window = _check_length(cfg, model)
    if not cfg.output_dir and cfg.model == "scratch":
        cfg.output_dir = f"runs/pretrain-{cfg.preset}-{_position(cfg)}-{cfg.objective}"
    ctx = start_stage(cfg, "pretrain", check_model=cfg.model != "scratch")
    run_, device = ctx.run, ctx.device
    amp = _amp(ctx)
    model = model.to(device)
    if amp is None:
        model = model.to(ctx.weights_dtype)
    paradigm = _paradigm(cfg, tokenizer, window, amp)
    tokens = _token_streams(tokenizer, data)
    print0(f"[lmlab] data: {tokens['train'].numel():,} train / {tokens['val'].numel():,} val "
           f"tokens ({len(data['train'])} documents), vocab {len(tokenizer)}")
    stream = TokenStream(tokens["train"], paradigm.source_len, cfg.batch_size,
                         paradigm.make_batch, seed=cfg.seed, rank=rank(), world=world_size())
    n_params = sum(p.numel() for p in model.parameters())
    print0(f"[lmlab] model {_describe(cfg, model)}: {n_params / 1e6:.2f}M parameters, "
           f"objective {cfg.objective}, window {window}, {ctx.dtype}"
           f"{' (bf16 autocast)' if amp else ''}, {device}")

    measure = _Measure(cfg, model, tokenizer, paradigm, tokens, window, run_)
    # bf16 autocast on CPU: attention in fp32 (its bf16 kernel is the slow one at these sizes)
    with fp32_attention(model, enabled=amp is not None):
        before = measure.domains(model) if cfg.model != "scratch" and cfg.resume == "no" \
            else None
        if before:
            print0(f"[lmlab] before: {_fmt(before)}")
        loggers = build_loggers(cfg.loggers, str(run_.path), vars(cfg)) if is_main() else []
        with compiled_for_training(model, cfg):
            result = train(model, paradigm.objective, stream, cfg, run_, dtype=ctx.dtype,
                           loggers=loggers,
                           eval_fn=lambda m: measure(m, stream.pos // cfg.grad_accum),
                           make_optimizer=partial(build_optimizer, fused=True))
        for lg in loggers:
            lg.close()
        final = measure(model, result.step) if is_main() else {}
        after = measure.domains(model) if is_main() and before else None

    summary: dict = {"stage": "pretrain", "model": cfg.model, "objective": cfg.objective,
                     "position": _position(cfg), "preset": cfg.preset, "params": n_params,
                     "window": window, "steps": result.step,
                     "train_seconds": round(result.seconds, 1),
                     "train_tokens": tokens["train"].numel(), "vocab": len(tokenizer)}
    if result.metrics:
        timed = result.metrics[min(5, len(result.metrics) - 1):]
        summary["final_loss"] = result.metrics[-1]["train/loss"]
        summary["tokens_per_s"] = sum(m["train/tokens"] for m in timed) / max(
            1e-9, sum(m["train/step_s"] for m in timed))
    if is_main():
        summary["val"] = {k.removeprefix("eval/"): v for k, v in final.items()}
        if before:
            summary["before"], summary["after"] = before, after
            print0(f"[lmlab] after:  {_fmt(summary['after'])}")
        _save_final(model, tokenizer, cfg, run_)
        _tidy_samples(run_)
        run_.write_json("summary.json", summary)
        print0(f"[lmlab] val: {_fmt({'val': summary['val']})}")
        print0(f"[lmlab] wrote {run_.path}/ (final/, metrics.jsonl, samples.jsonl, "
               f"summary.json)")
    barrier()
    return summary


# --- setup helpers --------------------------------------------------------------------------------


def _read_data(cfg: Config) -> dict:
    from lmlab.data.corpora import limit_chars
    from lmlab.data.documents import load_documents, split_documents

    docs = limit_chars(load_documents(cfg.data), cfg.data_chars or None)
    if cfg.val_data:
        train, val = docs, load_documents(cfg.val_data)
    else:
        train, val = split_documents(docs, cfg.val_fraction)
    general = load_documents(cfg.general_data) if cfg.general_data else []
    return {"train": train, "val": limit_chars(val, cfg.eval_chars or None),
            "general": limit_chars(general, cfg.eval_chars or None)}


def _position(cfg: Config) -> str:
    if cfg.model != "scratch":
        return "model"
    if cfg.position == "auto":
        return "learned" if cfg.objective in ("mlm", "electra") else "rope"
    return cfg.position


def _tokenizer_and_model(cfg: Config, data: dict):
    from lmlab.losses.paradigms import needed_tokens
    from lmlab.models import scratch_presets as P

    if cfg.model != "scratch":
        from lmlab.models import load_model, load_tokenizer

        return load_tokenizer(cfg.model), load_model(cfg.model)
    s = P.size(cfg.preset, layers=cfg.layers, heads=cfg.heads, width=cfg.width,
               context=cfg.context)
    extra = needed_tokens(cfg.objective, cfg.max_len or s.context, cfg.span_density,
                          cfg.span_mean)
    tokenizer = _load_tokenizer(cfg.tokenizer, data, extra)
    if cfg.objective == "mlm":
        return tokenizer, P.build_bert(s, tokenizer, dropout=cfg.dropout, seed=cfg.seed)
    if cfg.objective == "electra":
        return tokenizer, P.build_electra(s, tokenizer, dropout=cfg.dropout, seed=cfg.seed)
    return tokenizer, P.build_decoder(s, _position(cfg), tokenizer, dropout=cfg.dropout,
                                      seed=cfg.seed)


def _load_tokenizer(ref: str, data: dict, extra: tuple[str, ...]):
    from pathlib import Path

    if ref == "char":
        from lmlab.data.char_tokenizer import build_char_tokenizer

        return build_char_tokenizer(data["train"] + data["val"] + data["general"], extra)
    p = Path(ref).expanduser()
    if p.is_dir():
        from transformers import AutoTokenizer

        from lmlab.models.load import _from_user_files

        folder = p / "final" if (p / "final").is_dir() else p
        tok = _from_user_files(AutoTokenizer.from_pretrained, str(folder), "tokenizer")
    else:
        from lmlab.models import load_tokenizer

        tok = load_tokenizer(ref)
    if tok.eos_token_id is None:
        tok.add_special_tokens({"eos_token": "<|endoftext|>"})
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if "<mask>" in extra and tok.mask_token is None:
        tok.add_special_tokens({"mask_token": "<mask>"})
    missing = [t for t in extra if t != "<mask>" and t not in tok.get_vocab()]
    if missing:
        tok.add_special_tokens({"additional_special_tokens": missing},
                               replace_extra_special_tokens=False)
    return tok


def _check_length(cfg: Config, model) -> int:
    """The training window; longer than the model's positions allow is a ConfigError."""
    from lmlab.errors import ConfigError
    from lmlab.models.scratch_presets import context_limit

    limit = context_limit(model)
    window = cfg.max_len or limit or 256
    if limit is not None and window > limit:
        raise ConfigError(f"max_len: {window} tokens is longer than the model allows (its "
                          f"context is {limit} positions); lower max_len or, from scratch, "
                          f"raise context")
    return window


def _amp(ctx):
    """bf16 on CPU trains fp32 weights under bf16 autocast (mixed precision, as on GPUs)."""
    import torch

    return torch.bfloat16 if ctx.device.type == "cpu" and ctx.dtype == torch.bfloat16 \
        else None


def _paradigm(cfg: Config, tokenizer, window: int, amp):
    from lmlab.losses.paradigms import build_paradigm

    return build_paradigm(cfg.objective, tokenizer, window, isolate_docs=cfg.isolate_docs,
                          amp=amp, positions_only=_position(cfg) == "alibi", mlm_probability=cfg.mlm_probability,
                          span_density=cfg.span_density, span_mean=cfg.span_mean,
                          electra_weight=cfg.electra_weight)


def _token_streams(tokenizer, data: dict) -> dict:
    from lmlab.data.documents import encode_documents
    from lmlab.data.stream import join_documents

    eos = tokenizer.eos_token_id
    return {k: join_documents(encode_documents(tokenizer, v), eos) for k, v in data.items()}


def _describe(cfg: Config, model) -> str:
    if cfg.model != "scratch":
        return cfg.model
    return f"{cfg.preset} {type(model).__name__} ({_position(cfg)} positions)"


class _Measure:
    """Val loss / bits per byte at each eval (and at the end), samples into samples.jsonl."""

    def __init__(self, cfg, model, tokenizer, paradigm, tokens, window, run):
        from lmlab.eval.pretrain_eval import scored_bytes
        from lmlab.losses.paradigms import build_paradigm

        self.cfg, self.tokenizer, self.paradigm, self.run = cfg, tokenizer, paradigm, run
        self.tokens, self.window = tokens, window
        self.causal = cfg.objective in ("clm", "prefix")
        # prefix models are scored as plain LMs (prefix 0) so that bits per byte compare
        self.scorer = build_paradigm("clm", tokenizer, window, isolate_docs=cfg.isolate_docs,
                                     amp=paradigm.objective.amp,
                                     positions_only=_position(cfg) == "alibi") \
            if self.causal else paradigm
        self.bytes = {k: scored_bytes(tokenizer, t) for k, t in tokens.items()
                      if k != "train" and t.numel() > 1}
        self.batch = cfg.eval_batch or cfg.batch_size

    def metrics(self, model, split: str) -> dict:
        from lmlab.eval.pretrain_eval import val_metrics
        from lmlab.models.compiling import eager

        with eager(model):  # eval shapes differ from training's: no recompiling for them
            return val_metrics(model, self.scorer.make_batch, self.scorer.objective,
                               self.tokens[split], self.scorer.source_len,
                               batch_size=self.batch, n_bytes=self.bytes.get(split),
                               causal=self.causal)

    def domains(self, model) -> dict:
        return {k: self.metrics(model, k) for k in ("val", "general") if k in self.bytes}

    def __call__(self, model, step: int) -> dict:
        from lmlab.common import is_main

        was = model.training
        model.eval()
        m = self.metrics(model, "val")
        model.train(was)
        out = {f"eval/{k}": v for k, v in m.items()}
        if is_main() and self.paradigm.generates and self.cfg.sample_tokens:
            from lmlab.eval.pretrain_eval import samples

            rows = samples(model, self.tokenizer, self.cfg.sample_prompts,
                           max_new_tokens=self.cfg.sample_tokens, context=self.window,
                           temperature=self.cfg.sample_temperature, seed=self.cfg.seed)
            self.run.append_jsonl("samples.jsonl", [{"step": step, **r} for r in rows])
        return out


def _save_final(model, tokenizer, cfg: Config, run_) -> None:
    from lmlab.models import write_meta
    from lmlab.runs import commit_folder, temp_folder

    tmp = temp_folder(run_.path)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    # an encoder is no causal LM: `head` makes load_model refuse it as a policy, by name
    head = {"mlm": "masked-LM encoder", "electra": "ELECTRA discriminator"}.get(cfg.objective)
    write_meta(tmp, stage="pretrain", objective=cfg.objective, position=_position(cfg),
               preset=cfg.preset if cfg.model == "scratch" else None, init=cfg.model,
               **({"head": head} if head else {}))
    commit_folder(tmp, run_.final)


def _tidy_samples(run_) -> None:
    """One row per (step, prompt), in step order: a resumed run redoes the evals after its
    checkpoint (the same samples: they are seeded) and appends them again."""
    from lmlab.runs import read_done_jsonl

    f = run_.path / "samples.jsonl"
    if f.is_file():
        rows = {(r["step"], r["prompt"]): r for r in read_done_jsonl(f)}
        run_.write_jsonl("samples.jsonl", sorted(rows.values(), key=lambda r: r["step"]))


def _fmt(groups: dict) -> str:
    parts = []
    for name, m in groups.items():
        bits = f", {m['bits_per_byte']:.3f} bits/byte" if m.get("bits_per_byte") else ""
        ppl = f", ppl {m['perplexity']:.2f}" if m.get("perplexity") else ""
        parts.append(f"{name} loss {m['loss']:.4f}{ppl}{bits}")
    return "; ".join(parts)
