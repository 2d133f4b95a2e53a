"""Chain-of-thought SFT wiring on the tiny model: data=task:...?cot=1 trains on worked
solutions and its task eval asks for them; the answer-only vs CoT pipeline runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmlab.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_sft_with_cot_data_trains_on_and_evaluates_the_working(tmp_path):
    from lmlab.data.tasks import examples
    from lmlab.data.tasks.cot import cot_prompt

    def sft(data, name):
        rc = main(["sft", "model=tiny:llama", f"data={data}", "max_steps=1", "batch_size=2",
                   "eval_n=1", "eval_splits=test", "eval_tasks=add", "progress=false",
                   "data_limit=8", f"output_dir={tmp_path / name}"])
        assert rc == 0
        return json.loads((tmp_path / name / "summary.json").read_text())

    plain, cot = sft("task:add", "plain"), sft("task:add?cot=1", "cot")
    assert plain["data"]["rows"] == cot["data"]["rows"] == 8
    # the same questions, but the replies are the working: several times the trained tokens
    assert cot["data"]["trained_tokens"] > 4 * plain["data"]["trained_tokens"]
    sample = json.loads((tmp_path / "cot" / "samples.jsonl").read_text().splitlines()[0])
    assert sample["prompt"] == cot_prompt("add", examples("add", "test", 1)[0]["prompt"])
    assert "task_eval_after" in cot


@pytest.mark.slow
def test_cot_pipeline_tiny_profile(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "p"
    rc = main(["pipeline", "--config", "configs/pipelines/cot.yaml", "profile=tiny",
               f"output_dir={out}", "report=false"])
    assert rc == 0
    for step in ("sft-answer", "sft-cot", "gsm8k"):
        assert (out / step / "summary.json").is_file()
    ev = json.loads((out / "gsm8k" / "summary.json").read_text())
    assert "gsm8k-strict" in json.dumps(ev)
