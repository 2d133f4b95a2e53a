"""`lmlab serve` on a CUDA machine: batched = alone on CUDA, runner throughput, HTTP levels.

The model has SmolLM2-135M's shape (its config.json, argv[1]) with RANDOM weights, bf16: the GPU
machine lent to sessions has no network and the default model's GGUF is too large to carry
there; speed does not depend on the weights. Needs fastapi/uvicorn there and the SmolLM2
tokenizer in $LMLAB_CACHE. Writes $OUT/gpu_serve.json.

    python3 benchmarks/bench_serve_gpu.py path/to/smollm2/config.json
"""
import asyncio, json, os, sys, time
sys.path[:0] = ["src", "."]
import torch
from transformers import LlamaConfig, LlamaForCausalLM
OUT = os.environ.get("OUT", "/tmp")
res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
from lmlab.models import load_tokenizer
from lmlab.infer.sampling import SamplingParams
from lmlab.serve.runner import Runner
from lmlab.serve.scheduler import Scheduler, SchedulerConfig, Sequence
import tests.serve.test_runner as T
from tests.infer.conftest import varied
tok = load_tokenizer("tiny:llama")

# 1. equality on CUDA (tiny varied model, fp32)
m = varied().cuda()
def check(params, arrivals, cfg=None):
    seqs, logs = T.serve(Runner(m, tok), tok, arrivals, params, cfg)
    ok = all(s.output_ids == T.alone(m, tok, T.PROMPTS[i], params(i) if callable(params) else params).token_ids for i, s in seqs.items())
    return ok, sum(x[2] for x in logs)
g = SamplingParams(temperature=0, max_new_tokens=12, ignore_eos=True)
res["cuda_greedy_join_equal"] = check(g, {0: [0, 1], 3: [2], 5: [3, 4]})
res["cuda_preempt_equal(preemptions)"] = check(SamplingParams(temperature=0, max_new_tokens=24, ignore_eos=True), {0: [0, 1, 3]}, SchedulerConfig(kv_budget_tokens=64, block_size=4))
res["cuda_seeded_equal"] = check(lambda i: SamplingParams(temperature=0.9, top_p=0.9, max_new_tokens=10, seed=100 + i, ignore_eos=True), {0: [0, 1], 2: [2, 3]})
print(json.dumps(res), flush=True)

# 2. runner throughput, SmolLM2-135M shape, random weights, bf16
cfg = LlamaConfig(**{k: v for k, v in json.load(open(sys.argv[1] if len(sys.argv) > 1 else ".gpu/smollm2-config.json")).items() if k not in ("architectures", "transformers_version", "torch_dtype", "dtype")})
torch.manual_seed(0)
big = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16).eval()
def runner_tps(B, new=128, plen=32):
    r = Runner(big, tok); s = Scheduler(SchedulerConfig(max_batch_size=B, max_waiting=B, kv_budget_tokens=B * (plen + new + 16), max_prefill_tokens=B * plen, max_model_len=2048))
    p = SamplingParams(temperature=0, max_new_tokens=new, ignore_eos=True)
    for i in range(B):
        s.add([Sequence(str(i), [int(x) for x in torch.randint(100, 40000, (plen,))], new, r.new_state(p))])
    torch.cuda.synchronize(); t0 = time.perf_counter(); steps = 0
    while s.has_work:
        b = s.schedule(); o = r.execute(b); steps += 1
        for d in s.update(b, o.tokens, o.stopped): r.release(d)
    torch.cuda.synchronize(); dt = time.perf_counter() - t0
    return {"B": B, "tokens": B * new, "s": round(dt, 3), "tok_s": round(B * new / dt, 1), "ms_per_step": round(1000 * dt / steps, 2)}
runner_tps(4, 16)  # warm-up
res["runner_bf16"] = [runner_tps(B) for B in (1, 16, 64, 256)]
print(json.dumps(res["runner_bf16"]), flush=True)
ids = torch.randint(100, 40000, (1, 32), device="cuda")
big.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)
torch.cuda.synchronize(); t0 = time.perf_counter()
for _ in range(3):
    big.generate(ids, max_new_tokens=128, min_new_tokens=128, do_sample=False)
torch.cuda.synchronize(); res["hf_generate_b1_bf16_tok_s"] = round(3 * 128 / (time.perf_counter() - t0), 1)
print(res["hf_generate_b1_bf16_tok_s"], flush=True)

# 3. HTTP on the GPU
from lmlab.stages.serve import Config, build
from tests.serve.conftest import live_server
from lmlab.serve import bench as bs
app, eng = build(Config(model="tiny:llama", served_model_name="smollm2-135m-random", max_batch_size=64, max_waiting=512, max_tokens=1024), model=big, tokenizer=tok)
rows = []
with live_server(app) as url:
    asyncio.run(bs.level(url, "smollm2-135m-random", 1, 1, 4, 60))
    for c, rounds in ((1, 4), (4, 2), (16, 1), (64, 1)):
        rows.append(asyncio.run(bs.level(url, "smollm2-135m-random", c, rounds, 128, 300)))
        print(json.dumps(rows[-1]), flush=True)
res["http_bf16_128tok"] = rows
json.dump(res, open(f"{OUT}/gpu_serve.json", "w"), indent=1)
