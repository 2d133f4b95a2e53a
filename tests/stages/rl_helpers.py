"""Shared bits for the grpo / ppo stage tests: a reward that varies on a random tiny model
(the share of response tokens with an even id), and exact-resume comparison."""

import json

import torch

from lmlab.cli import main
from lmlab.config import load_config


def even_share(rows, texts, response_ids, finish):
    return [sum(t % 2 == 0 for t in ids) / max(1, len(ids)) for ids in response_ids]


def toy_reward(monkeypatch):
    """Every configured reward name maps to ``even_share`` (rewards=[task] by default)."""
    import lmlab.rl.rewards as R

    monkeypatch.setattr(R, "build_rewards", lambda names, **kw: {n: even_share for n in names})


def args(stage, out, *extra):
    return [stage, "model=tiny:llama", "data=task:add", f"output_dir={out}", "max_steps=3",
            "prompts_per_update=2", "max_new_tokens=6", "batch_size=4", "lr=5e-3",
            "warmup_steps=0", "schedule=constant", "progress=false", "task_eval_n=2",
            "eval_max_new_tokens=4", "data_limit=20", *extra]


def metrics(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def run_stage(argv, stop_after=None):
    from lmlab.stages import load_stage

    module = load_stage(argv[0])
    cfg = load_config(module.Config, None, argv[1:], stage=argv[0])
    return module.run(cfg, stop_after=stop_after)


def check_resume(tmp_path, stage, *extra):
    """4 updates straight == 2 updates, stop, resume=auto, 2 more: same metrics, same weights."""
    from safetensors.torch import load_file

    full = tmp_path / "full"
    assert main(args(stage, full, "max_steps=4", "save_every=2", *extra)) == 0
    part = tmp_path / "part"
    run_stage(args(stage, part, "max_steps=4", "save_every=2", *extra), stop_after=2)
    assert (part / "checkpoints" / "step-2" / "state.pt").exists()
    run_stage(args(stage, part, "max_steps=4", "save_every=2", "resume=auto", *extra))
    skip = ("_s", "tokens_per_s")
    a = [{k: v for k, v in r.items() if not k.endswith(skip)} for r in metrics(full)]
    b = [{k: v for k, v in r.items() if not k.endswith(skip)} for r in metrics(part)]
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert a == b
    for name in ("update-00003.jsonl", "update-00004.jsonl"):
        assert (full / "rollouts" / name).read_text() == (part / "rollouts" / name).read_text()
    wa = load_file(str(full / "final" / "model.safetensors"))
    wb = load_file(str(part / "final" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
