"""`lmlab self-instruct` on the tiny model: a few candidates, the files and counts it writes,
SFT on its kept rows, and the constitutional revise pass (lmlab.data.constitution)."""

from __future__ import annotations

import json

from lmlab.cli import main


def test_smoke_then_sft_on_the_kept_rows(tmp_path):
    out = tmp_path / "si"
    rc = main(["self-instruct", "model=tiny:llama", f"output_dir={out}", "target=2",
               "max_generated=2", "batch_size=2", "max_new_tokens=6",
               "answer_max_new_tokens=6"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["stage"] == "self-instruct" and s["seeds"] == 8
    assert s["generated"] == 2 and s["rounds"] == 1
    assert s["generated"] == s["kept"] + sum(s["rejected"].values())
    records = [json.loads(x) for x in (out / "generated.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["kept"] == (r["reason"] is None) for r in records)
    rows = [json.loads(x) for x in (out / "kept.jsonl").read_text().splitlines()]
    assert len(rows) == s["rows"] == 8 + s["kept"]
    assert rows[0] == {"prompt": "What is 47 + 385?", "completion": "432", "source": "seed"}

    rc = main(["sft", "model=tiny:llama", f"data={out / 'kept.jsonl'}", "max_steps=2",
               "batch_size=4", "eval_n=0", "progress=false", f"output_dir={tmp_path / 'sft'}"])
    assert rc == 0
    assert json.loads((tmp_path / "sft" / "summary.json").read_text())["data"]["rows"] == 8


def test_revise_reuses_the_constitution_requests(monkeypatch):
    from lmlab.data import constitution
    from lmlab.data.selfinstruct import Candidate, Limits, output_reason
    from lmlab.models import load_model, load_tokenizer
    from lmlab.stages.self_instruct import Config, revise_kept

    asked = []
    real = constitution.critique_request
    monkeypatch.setattr(constitution, "critique_request",
                        lambda *a: asked.append(a) or real(*a))
    kept = [Candidate("Write a short poem about the sea.", output="Waves."),
            Candidate("What is 125 + 250 in total?", output="375")]
    cfg = Config(model="tiny:llama", answer_max_new_tokens=4, revise=True)
    replaced = revise_kept(cfg, kept, load_model("tiny:llama").eval(),
                           load_tokenizer("tiny:llama"))
    assert len(asked) == 2 and asked[0][2] in constitution.PRINCIPLES
    assert all("critique" in c.extra and "revision" in c.extra for c in kept)
    # a revision replaces an answer only when it passes the filters and the strict checker
    assert all(output_reason(c, Limits()) is None for c in kept)
    assert replaced == sum("original_output" in c.extra for c in kept)
