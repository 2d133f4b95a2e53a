"""sft's eval_cache: runs that start from the same weights measure the before-training task eval
once (the recipe pipelines' phase-B and LoRA arms); anything that changes the step-0 model or the
eval misses."""

import json

import pytest

import lmlab.eval.tasks as tasks_mod
from lmlab.cli import main

QUICK = ["model=tiny:llama", "max_steps=1", "batch_size=4", "lr=1e-2", "warmup_steps=0",
         "progress=false", "data_limit=8", "data=task:add", "eval_n=2", "eval_splits=[test]",
         "eval_max_new_tokens=2"]


@pytest.fixture
def measured(monkeypatch):
    """How many task evals actually ran (before + after per run without a cache hit)."""
    calls = []
    real = tasks_mod.measure

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(tasks_mod, "measure", counting)
    return calls


def _sft(tmp_path, name, *extra):
    out = tmp_path / name
    assert main(["sft", *QUICK, f"output_dir={out}", *extra]) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_runs_from_the_same_weights_share_the_before_eval(tmp_path, measured):
    cache = tmp_path / "eval-cache"  # eval_cache=auto: a sibling of the run folders
    a, first = _sft(tmp_path, "a", "method=full", "eval_cache=auto")
    assert len(measured) == 2 and len(list(cache.glob("*.json"))) == 1
    _, second = _sft(tmp_path, "b", "method=full", "eval_cache=auto", "lr=5e-3")
    assert len(measured) == 3  # only the after-eval ran
    assert second["eval_before"] == first["eval_before"]
    assert second["task_eval_before"] == first["task_eval_before"]
    # another method is another key (its step-0 model computes the same, but that is not
    # assumed); other weights (phase A's final) are another fingerprint
    _sft(tmp_path, "c", "method=lora", "eval_cache=auto")
    _sft(tmp_path, "d", "method=full", f"model={a}/final", f"eval_cache={cache}")
    assert len(measured) == 7 and len(list(cache.glob("*.json"))) == 3


def test_random_start_methods_and_the_default_are_not_cached(tmp_path, measured):
    _sft(tmp_path, "p", "method=prompt", "num_virtual_tokens=2", "eval_cache=auto")
    _sft(tmp_path, "f", "method=full")
    assert len(measured) == 4
    assert not (tmp_path / "eval-cache").exists()
