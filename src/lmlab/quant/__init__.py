"""Quantization: ``ptq`` (post-training recipes), ``qat`` (fake-quant prepare / convert),
``qlora`` (a frozen bitsandbytes base for LoRA), ``prune`` (magnitude pruning), ``export``
(quantized folders that reload, GGUF), ``measure`` (size, perplexity, speed). See
docs/quantize.md."""
