"""The embedder behind ``/v1/embeddings`` in ``lmlab serve``: one encoder, one worker thread.

Requests are encoded on a single worker thread (torch work off the event loop, with the
thread count the server was given), in batches of ``batch_size``, longest first. An input
longer than the encoder's context is refused (HTTP 400, as OpenAI does), not truncated.
"""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor

import torch


class InputTooLong(ValueError):
    def __init__(self, index: int, tokens: int, limit: int):
        super().__init__(f"input[{index}] has {tokens} tokens, more than the {limit} this "
                         f"encoder reads; shorten or split it")


class Embedder:
    def __init__(self, ref: str, *, name: str = "", batch_size: int = 32,
                 device: str | torch.device = "cpu", threads: int = 0):
        from lmlab.embed.model import context_length, load_encoder

        self.encoder, self.tokenizer = load_encoder(ref, device=device)
        self.encoder.eval()
        self.name = name or ref
        self.batch_size, self.threads = batch_size, threads
        self.limit = context_length(self.encoder, self.tokenizer)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        ids = self.tokenizer(texts, add_special_tokens=True, truncation=False,
                             verbose=False)["input_ids"]
        for i, x in enumerate(ids):
            if len(x) > self.limit:
                raise InputTooLong(i, len(x), self.limit)
        return ids

    def _encode(self, ids: list[list[int]]) -> torch.Tensor:
        from lmlab.embed.model import encode_ids

        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)  # this worker thread's own setting
        return encode_ids(self.encoder, ids, self.tokenizer.pad_token_id, self.batch_size)

    async def embed(self, ids: list[list[int]]) -> torch.Tensor:
        """(N, H) embeddings, computed on the worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._encode, ids)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


def as_base64(vector: torch.Tensor) -> str:
    """OpenAI's base64 encoding: the float32 values' little-endian bytes."""
    return base64.b64encode(vector.to(torch.float32).numpy().astype("<f4").tobytes()).decode()
