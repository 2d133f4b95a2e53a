#!/usr/bin/env bash
# GPU checks on a machine with CUDA and no internet (the dev "device" machine): the gpu-marked
# tests, then SFT and decode throughput on a random-weight model of SmolLM2-135M's shape (speed
# does not depend on the weights; the real GGUF is too large to carry there).
# Expects: .whl/ (trl, datasets, dill, multiprocess, gguf wheels), .devcache/ (the SmolLM2
# tokenizer under models/smollm2-135m-instruct/tokenizer and smol-config.json). Writes to $OUT.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src LMLAB_CACHE=$PWD/.devcache HF_HUB_OFFLINE=1 \
       TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, transformers, peft, trl, datasets; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__)"
python3 - <<'PY'
import json, os
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
cfg = LlamaConfig(**{k: v for k, v in json.load(open(".devcache/smol-config.json")).items()
                     if k not in ("architectures", "transformers_version", "dtype", "torch_dtype")})
LlamaForCausalLM(cfg).save_pretrained("/tmp/smol-random")
AutoTokenizer.from_pretrained(".devcache/models/smollm2-135m-instruct/tokenizer").save_pretrained("/tmp/smol-random")
print("random SmolLM2-shaped model in /tmp/smol-random")
PY
python3 -m pytest -q -p no:cacheprovider -m gpu tests/gpu 2>&1 | tee "$OUT/gpu_tests.log" | tail -15
python3 benchmarks/bench_sft.py --model /tmp/smol-random --device cuda --dtype bf16 \
    --steps 40 --warmup 5 --batch 16 --modes lora full --out "$OUT/sft_gpu.json" 2>&1 | grep -v Warning | tail -6
python3 benchmarks/bench_generate.py --model /tmp/smol-random --device cuda --dtype bf16 \
    --only greedy1 greedy8 --new-tokens 128 --repeats 5 --out "$OUT/generate_gpu.json" 2>&1 | tail -40
