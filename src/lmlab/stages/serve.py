"""`lmlab serve`: an OpenAI-compatible HTTP server with continuous batching and a chat page.

Setup (model, tokenizer), then the three serving parts of ``lmlab.serve``: the runner (one
model step), the engine (scheduler + runner in a background thread) and the FastAPI app over
it, served by uvicorn until Ctrl-C. ``engine=vllm`` swaps our engine for vLLM's (GPU machines;
same HTTP surface); ``engine=llama.cpp`` keeps our engine and runs its forward passes in
llama.cpp (a GGUF file; ``serve.llamacpp_engine``). Nothing is written to disk: the numbers are
at ``GET /metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmlab.config import opt

HELP = "serve a model: OpenAI-compatible API, continuous batching, streaming, web chat page"


@dataclass
class Config:
    model: str = opt("smollm2-135m-instruct",
                     "model reference: alias, tiny:<preset>, folder, run folder, or org/name")
    served_model_name: str = opt("", "the name clients send as 'model' (default: model)")
    embed_model: str = opt("", "a sentence encoder served at /v1/embeddings under its own "
                               "name: minilm, an `lmlab embed` run folder, ... (empty = none)")
    engine: str = opt("lmlab", "lmlab (ours: CPU/GPU) | vllm (GPU, needs the vllm package) | "
                               "llama.cpp (CPU, a GGUF file; needs the llamacpp extra)",
                      choices=("lmlab", "vllm", "llama.cpp"))
    gguf: str = opt("q8_0", "engine=llama.cpp: the GGUF type a model that is not a .gguf file "
                            "is exported to, once (cached)", choices=("f16", "q8_0", "q4_0",
                                                                      "q4_1"))
    host: str = opt("127.0.0.1", "address to listen on (0.0.0.0 = every interface)")
    port: int = opt(8000, "TCP port", min=0, max=65535)
    api_key: str = opt("", "require 'Authorization: Bearer <api_key>' on /v1/* (empty = open)")
    max_batch_size: int = opt(16, "sequences decoded together", min=1)
    max_waiting: int = opt(64, "queued sequences before requests get 429", min=0)
    kv_budget_tokens: int = opt(16384, "KV cache positions shared by running sequences", min=16)
    max_prefill_tokens: int = opt(2048, "prompt tokens prefilled per step", min=1)
    prefix_cache_tokens: int = opt(4096, "KV of shared prompt prefixes kept for reuse (0 = "
                                         "off; extra memory beside kv_budget_tokens)", min=0)
    pack_weights: bool = opt(True, "fp32 on a CPU: decode through oneDNN-packed copies of the "
                                   "projections (faster small batches, one more copy of the "
                                   "weights in memory)")
    decode_weights: str = opt("fp32", "with pack_weights: the precision of the weights decoding "
                                      "reads (bf16 / int8 per channel: 1/2 / 1/4 of the bytes; "
                                      "fp32 arithmetic; docs/generate.md)",
                              choices=("fp32", "bf16", "int8"))
    max_model_len: int = opt(0, "prompt + completion limit per sequence (0 = model context)",
                             min=0)
    max_tokens: int = opt(1024, "the largest max_tokens a request may ask for", min=1)
    default_max_tokens: int = opt(256, "max_tokens of chat requests that do not set it", min=1)
    max_n: int = opt(8, "the largest n (choices per request)", min=1)
    max_request_bytes: int = opt(1 << 20, "larger request bodies get 413", min=1024)
    retry_after_s: int = opt(1, "Retry-After seconds sent with 429", min=0)
    threads: int = opt(0, "torch CPU threads (0 = torch's default)", min=0)
    device: str = opt("auto", "cpu | cuda | mps | auto")
    dtype: str = opt("auto", "auto (fp32 on CPU) | fp32 | bf16 | fp16")
    log_level: str = opt("info", "uvicorn log level",
                         choices=("critical", "error", "warning", "info", "debug"))

    def validate(self) -> list[str]:
        p = []
        if self.default_max_tokens > self.max_tokens:
            p.append(f"default_max_tokens: {self.default_max_tokens} is over max_tokens "
                     f"({self.max_tokens})")
        if self.max_model_len and self.max_model_len > self.kv_budget_tokens:
            p.append("max_model_len: over kv_budget_tokens; one sequence could never fit")
        return p

    def limits(self):
        from lmlab.serve.app import Limits

        return Limits(api_key=self.api_key, max_request_bytes=self.max_request_bytes,
                      max_tokens=self.max_tokens, default_max_tokens=self.default_max_tokens,
                      max_n=self.max_n, retry_after_s=self.retry_after_s)


def build(cfg: Config, model=None, tokenizer=None):
    """(FastAPI app, engine) for ``cfg``; serving the app starts the engine."""
    name = cfg.served_model_name or cfg.model
    if cfg.engine == "vllm":
        from lmlab.serve.vllm_engine import VllmEngine

        engine = VllmEngine(cfg)
        tokenizer = engine.tokenizer
    elif cfg.engine == "llama.cpp":
        from lmlab.serve.llamacpp_engine import build_engine

        engine, tokenizer = build_engine(cfg, tokenizer)
    else:
        engine, tokenizer = _our_engine(cfg, model, tokenizer)
    from lmlab.serve.app import build_app

    embedder = None
    if cfg.embed_model:
        from lmlab.common import pick_device
        from lmlab.embed.serving import Embedder

        embedder = Embedder(cfg.embed_model, device=pick_device(cfg.device), threads=cfg.threads)
    return build_app(engine, tokenizer, name, cfg.limits(), embedder=embedder), engine


def _our_engine(cfg: Config, model, tokenizer):
    import torch

    from lmlab.common import pick_device, pick_dtype
    from lmlab.infer.decode import context_length
    from lmlab.models import load_model, load_tokenizer
    from lmlab.serve.engine import Engine
    from lmlab.serve.runner import Runner
    from lmlab.serve.scheduler import SchedulerConfig

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if model is None:
        device = pick_device(cfg.device)
        model = load_model(cfg.model, dtype=pick_dtype(cfg.dtype, device), device=device)
    tokenizer = tokenizer or load_tokenizer(cfg.model)
    if hasattr(model, "merge_and_unload"):  # LoRA: fold it in, so the batched fast path runs
        model = model.merge_and_unload()
    ctx = context_length(model) or 2048
    max_len = min(cfg.max_model_len or ctx, ctx, cfg.kv_budget_tokens)
    sched = SchedulerConfig(max_batch_size=cfg.max_batch_size, max_waiting=cfg.max_waiting,
                            kv_budget_tokens=cfg.kv_budget_tokens,
                            max_prefill_tokens=cfg.max_prefill_tokens, max_model_len=max_len)
    runner = Runner(model, tokenizer, prefix_cache_tokens=cfg.prefix_cache_tokens,
                    pack_weights=cfg.pack_weights, decode_weights=cfg.decode_weights)
    return Engine(runner, tokenizer, sched), tokenizer


def run(cfg: Config) -> dict:
    import uvicorn

    from lmlab.common import print0

    import dataclasses

    import torch

    # torch work happens on the engine thread: the main thread (loading, HTTP) keeps one
    # OpenMP thread so that its idle team does not slow the engine's (see Engine.threads)
    threads = cfg.threads or torch.get_num_threads()
    torch.set_num_threads(1)
    # (llama.cpp's own threads are set when its context is made)
    app, engine = build(dataclasses.replace(cfg, threads=threads if cfg.engine == "llama.cpp"
                                            else 0))
    engine.threads = threads
    if app.state.embedder is not None:
        app.state.embedder.threads = threads
    print0(f"[lmlab] serving {cfg.served_model_name or cfg.model} on http://{cfg.host}:"
           f"{cfg.port}/ (chat page at /, API at /v1, metrics at /metrics)")
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)
    return {"stage": "serve", "model": cfg.model, "steps": getattr(engine, "steps", None)}
