"""``engine=llama.cpp``: our engine and HTTP layer with llama.cpp doing the forward passes.

vLLM brings its own scheduler (``vllm_engine.py``); llama.cpp brings only a fast forward over
a GGUF file. So this keeps everything of ours - scheduler (continuous batching, the KV budget,
429s), sampling and stop rules, /metrics, the chat page - and swaps the runner's KV store for
``infer.llamacpp.LlamaCppKV``: every running request is one llama.cpp sequence, and a step's
sequences go through one batched ``llama_decode``. ``llama_cpp.server`` serves one request at
a time; this batches them.

The model is a .gguf file, or any model reference exported once to ``gguf=<type>`` (cached;
see ``infer.llamacpp.gguf_file``). Without llama-cpp-python installed, building the engine
raises a ``UserError`` naming the ``llamacpp`` extra.
"""

from __future__ import annotations


def build_engine(cfg, tokenizer=None):
    """(Engine, tokenizer) for a serve ``Config`` with ``engine=llama.cpp`` (``tokenizer``:
    the model's, when the caller has it loaded)."""
    from lmlab.infer import llamacpp
    from lmlab.serve.engine import Engine
    from lmlab.serve.runner import Runner
    from lmlab.serve.scheduler import SchedulerConfig

    # the KV budget is llama.cpp's cache size: one cache shared by max_batch_size sequences
    llm, tokenizer = llamacpp.open_model(cfg.model, cfg.gguf, n_seq=cfg.max_batch_size,
                                         n_ctx=cfg.kv_budget_tokens, threads=cfg.threads,
                                         tokenizer=tokenizer)
    ctx = llm.config.max_position_embeddings
    max_len = min(cfg.max_model_len or ctx, ctx, cfg.kv_budget_tokens)
    sched = SchedulerConfig(max_batch_size=llm.n_seq, max_waiting=cfg.max_waiting,
                            kv_budget_tokens=cfg.kv_budget_tokens,
                            max_prefill_tokens=cfg.max_prefill_tokens, max_model_len=max_len)
    runner = Runner(llm, tokenizer, kv=llamacpp.LlamaCppKV(llm))
    return Engine(runner, tokenizer, sched), tokenizer
