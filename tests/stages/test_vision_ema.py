"""`lmlab vision ema=...`: the weight average resumes exactly (it is in the checkpoint), becomes
final/, and the summary holds the accuracy of each choice of weights."""

import json

import torch

from tests.stages.test_vision import _vision, _weights

COMMON = ("schedule=constant", "optimizer=sgd", "lr=0.05", "crop_pad=1", "flip=true",
          "save_every=2", "ema=0.9", "tta_flip=true", "eval_every=1")


def test_resume_with_the_weight_average_continues_exactly(tmp_path):
    assert _vision(tmp_path / "full", *COMMON, "max_steps=4")[0] == 0
    assert _vision(tmp_path / "part", *COMMON, "max_steps=2")[0] == 0
    assert _vision(tmp_path / "part", *COMMON, "max_steps=4", "resume=auto")[0] == 0
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    s = [json.loads((tmp_path / r / "summary.json").read_text()) for r in ("full", "part")]
    assert s[0]["accuracy_by_weights"] == s[1]["accuracy_by_weights"]
    assert set(s[0]["accuracy_by_weights"]) == {"last", "last+flip", "ema", "ema+flip"}
    assert s[0]["test_accuracy"] == s[1]["test_accuracy"]
    assert round(s[0]["test_accuracy"], 4) == s[0]["accuracy_by_weights"]["ema+flip"]
    # the eval after the resume (step 3) scores the resumed average: the same in both runs
    ev = [[r["eval/accuracy"] for r in map(json.loads, (tmp_path / r / "metrics.jsonl")
                                          .read_text().splitlines()) if r["step"] == 3]
          for r in ("full", "part")]
    assert ev[0] == ev[1] and len(ev[0]) == 1

def test_final_weights_are_the_average(tmp_path):
    assert _vision(tmp_path / "r", *COMMON, "max_steps=4")[0] == 0
    state = torch.load(tmp_path / "r/checkpoints/step-4/state.pt", weights_only=False)
    avg, last = state["optimizer"]["ema"]["avg"], state["model"]
    assert state["optimizer"]["ema"]["updates"] == 4
    final = _weights(tmp_path / "r")
    for k, v in avg.items():
        assert torch.equal(final[k], v), k
    assert any(not torch.equal(final[k], last[k]) for k in last)  # not the last weights

    from pathlib import Path

    from lmlab.report import build_report

    md = Path(build_report([tmp_path / "r"], tmp_path / "report")["md"]).read_text()
    assert "test accuracy by weights" in md
