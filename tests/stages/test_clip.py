"""`lmlab clip` on tiny rendered shapes: the 3-step smoke test through the shared loop, exact
resume, the saved model, the report section."""

import json
from pathlib import Path

import torch

from lmlab.cli import main

TINY = ("train_images=64", "test_per_class=1", "max_classes=12", "image_size=16",
        "widths=[4,8]", "text_dim=8", "text_depth=1", "heads=2", "embed_dim=8", "max_len=40",
        "batch_size=16", "probe_images=32", "retrieval_size=16", "progress=false",
        "log_every=1", "warmup_steps=0")


def _clip(out: Path, *extra) -> int:
    return main(["clip", f"output_dir={out}", *TINY, *extra])


def test_three_step_smoke_through_the_shared_loop(tmp_path, loop_spy):
    from lmlab.clip.data import CaptionStream
    from lmlab.stages.clip import ClipObjective

    seen = loop_spy
    run = tmp_path / "r"
    assert _clip(run, "max_steps=3", "eval_every=2", "log_every=1", "figures=true") == 0
    assert isinstance(seen["objective"], ClipObjective)
    assert isinstance(seen["stream"], CaptionStream) and seen["kw"]["save_buffers"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert "train/scale" in rows[0] and "eval/zero_shot_heldout" in rows[1]
    s = json.loads((run / "summary.json").read_text())
    assert s["steps"] == 3 and s["classes"] == 12 and len(s["heldout_classes"]) == 2
    z = s["clip"]["zero_shot"]
    assert z["heldout"]["chance"] == 0.5 and 0 <= z["heldout"]["accuracy"] <= 1
    assert z["heldout_among_all"]["chance"] == 1 / 12
    assert set(z["per_template"]) == set(z["templates"])
    assert {"image_to_text", "text_to_image", "pool"} <= set(s["clip"]["retrieval"])
    assert "seen" in s["clip"]["probe"] and s["clip"]["examples"]
    for f in ("similarity.png", "retrieved.png"):
        assert (run / "clip" / f).read_bytes()[:4] == b"\x89PNG"

    from lmlab.clip.model import load_clip

    model, meta = load_clip(run)
    assert not model.training
    assert meta["shape"]["widths"] == [4, 8] and len(meta["mean"]) == 3

    from lmlab.report import build_report

    md = Path(build_report([run], tmp_path / "report")["md"]).read_text()
    for part in ("## CLIP", "Zero-shot", "chance", "recall@1", "Linear probe",
                 "similarity", "retrieved"):
        assert part in md, part


def test_resume_auto_continues_exactly(tmp_path):
    common = ("schedule=constant", "save_every=2", "figures=false")
    assert _clip(tmp_path / "full", *common, "max_steps=4") == 0
    assert _clip(tmp_path / "part", *common, "max_steps=2") == 0
    assert _clip(tmp_path / "part", *common, "max_steps=4", "resume=auto") == 0
    a, b = (torch.load(tmp_path / p / "final/model.pt", weights_only=True)
            for p in ("full", "part"))
    assert any("running_mean" in k for k in a) and "logit_scale" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    last = [json.loads((tmp_path / p / "metrics.jsonl").read_text().splitlines()[-1])
            for p in ("full", "part")]
    assert last[0]["train/loss"] == last[1]["train/loss"]


def test_vit_image_tower_trains(tmp_path):
    run = tmp_path / "v"
    assert _clip(run, "model=vit", "patch=4", "vit_dim=8", "vit_depth=1", "max_steps=2",
                 "figures=false") == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 2
