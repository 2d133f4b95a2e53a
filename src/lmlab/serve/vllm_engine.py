"""``engine=vllm``: vLLM's engine behind our HTTP layer, for GPU machines.

Same duck interface as ``engine.Engine`` (start, shutdown, check, submit -> Request with async
``events()``, abort, metrics, max_model_len), so ``app.py`` does not know which one runs. vLLM
does the scheduling and paged attention; we keep tokenization, validation, the bounded queue
(429), /metrics and the chat page. Each of the n choices is one vLLM request with its own seed.

Not exercised by the test suite (vLLM from PyPI needs CUDA); importing this module without vLLM
installed raises a ``UserError`` that says how to install it.
"""

from __future__ import annotations

import asyncio
import itertools
import time

from lmlab.errors import UserError
from lmlab.serve.engine import Delta, Request
from lmlab.serve.metrics import ServeMetrics
from lmlab.serve.scheduler import QueueFull, RequestTooLarge

try:
    import vllm
    from vllm.engine.arg_utils import AsyncEngineArgs
except ImportError:  # pragma: no cover - depends on the machine
    raise UserError("engine=vllm needs the vllm package (CUDA machines): pip install vllm; "
                    "or use engine=lmlab (ours, runs everywhere)") from None

_ids = itertools.count()


class VllmEngine:
    def __init__(self, cfg):
        model = _model_path(cfg.model)
        args = AsyncEngineArgs(model=str(model), max_num_seqs=cfg.max_batch_size,
                               max_model_len=cfg.max_model_len or None,
                               seed=0, dtype="auto" if cfg.dtype == "auto" else cfg.dtype)
        self.llm = vllm.AsyncLLMEngine.from_engine_args(args)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model))
        self.max_model_len = cfg.max_model_len or getattr(self.tokenizer, "model_max_length",
                                                          4096)
        self.capacity = cfg.max_batch_size + cfg.max_waiting
        self.in_flight = 0
        self.steps = None
        self.metrics = ServeMetrics()
        self.metrics.gauge("lmlab_running_sequences", "Sequences in vLLM (running + waiting)",
                           lambda: self.in_flight)

    def start(self) -> None:  # vLLM runs its own loop
        pass

    def shutdown(self) -> None:
        pass

    def check(self, prompt_len: int, max_tokens: int) -> None:
        if prompt_len + max_tokens > self.max_model_len:
            raise RequestTooLarge(f"the prompt has {prompt_len} tokens; with max_tokens="
                                  f"{max_tokens} that is over this server's limit of "
                                  f"{self.max_model_len} tokens")

    def submit(self, prompt_ids, params, top_logprobs: int = 0) -> Request:
        if self.in_flight + len(params) > self.capacity:
            raise QueueFull(f"{self.in_flight} sequences in flight (limit {self.capacity})")
        req = Request(f"req-{next(_ids)}", len(prompt_ids), len(params),
                      asyncio.get_running_loop())
        req.open_choices = len(params)
        self.in_flight += len(params)
        for i, p in enumerate(params):
            sid = f"{req.request_id}-{i}"
            req.seq_ids.append(sid)
            sp = vllm.SamplingParams(
                max_tokens=p.max_new_tokens, temperature=p.temperature, top_p=p.top_p,
                presence_penalty=p.presence_penalty, frequency_penalty=p.frequency_penalty,
                stop=p.stop or None, seed=p.seed, ignore_eos=p.ignore_eos,
                logprobs=top_logprobs if p.logprobs else None)
            asyncio.create_task(self._run(req, i, sid, list(prompt_ids), sp))
        return req

    async def _run(self, req: Request, index: int, sid: str, ids, sp) -> None:
        sent_text, sent_tok, why = 0, 0, None
        try:
            async for out in self.llm.generate({"prompt_token_ids": ids}, sp, sid):
                o = out.outputs[0]
                if req.first_token_at is None and o.token_ids:
                    req.first_token_at = time.monotonic()
                new = list(o.token_ids[sent_tok:])
                req.completion_tokens += len(new)
                self.metrics.tokens(len(new))
                why = ("stop" if o.finish_reason == "stop" else o.finish_reason) \
                    if out.finished else None
                req.queue.put_nowait(Delta(index, o.text[sent_text:], new, None, why))
                sent_text, sent_tok = len(o.text), len(o.token_ids)
        except asyncio.CancelledError:
            why = "abort"
            raise
        finally:
            self.in_flight -= 1
            req.open_choices -= 1
            if req.open_choices == 0:
                ttft = req.first_token_at - req.arrival if req.first_token_at else None
                self.metrics.request_done("ok" if why not in ("abort", None) else "abort", ttft,
                                          time.monotonic() - req.arrival)
                req.queue.put_nowait(None)

    def abort(self, req: Request) -> None:
        for sid in req.seq_ids:
            asyncio.get_event_loop().create_task(self.llm.abort(sid))


def _model_path(ref_str: str) -> str:
    """A folder or hub id vLLM can open: aliases use their cached safetensors folder."""
    from lmlab.models.load import model_folder, resolve
    from lmlab.models.registry import ALIASES

    ref = resolve(ref_str)
    if ref.kind == "alias":
        return str(model_folder(ALIASES[ref.ref]))
    if ref.kind in ("tiny", "adapter"):
        raise UserError(f"engine=vllm cannot serve '{ref_str}' ({ref.kind}); merge adapters "
                        "into a folder first, or use engine=lmlab")
    return ref.path
