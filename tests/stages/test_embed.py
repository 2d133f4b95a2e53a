"""`lmlab embed` on the tiny encoder: 3-step smoke (pairs, hard negatives, SimCSE), the
retrieval table, exact resume, and the saved folder."""

import json

import pytest

from lmlab.cli import main


def _pairs(tmp_path, n=12, negatives=False):
    rows = [{"anchor": f"question number {i}?", "positive": f"the answer to {i} is {i * 7}"}
            for i in range(n)]
    if negatives:
        for i, r in enumerate(rows):
            r["negative"] = f"the answer to {i + 1} is {i * 3}"
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(f)


def _embed(tmp_path, *extra, data=None, name="run"):
    out = tmp_path / name
    args = ["embed", "model=tiny:bert", f"data={data or _pairs(tmp_path)}",
            f"output_dir={out}", "max_steps=3", "batch_size=4", "lr=1e-3", "warmup_steps=0",
            "progress=false", "max_len=32", *extra]
    return main(args), out


def _metrics(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("extra", [(), ("objective=simcse",), ("group_by_length=true",)],
                         ids=["mnrl", "simcse", "grouped"])
def test_three_step_smoke_writes_an_encoder(tmp_path, extra):
    from lmlab.embed.model import load_encoder

    rc, out = _embed(tmp_path, *extra)
    assert rc == 0
    rows = _metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert {"train/loss", "train/accuracy", "train/tokens"} <= set(rows[0])
    assert rows[0]["train/tokens"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["pooling"] == "mean"
    assert "retrieval" not in summary  # a file: no collection to evaluate on
    enc, _ = load_encoder(str(out))  # the run folder is an encoder reference
    assert enc.dim == 32
    meta = json.loads((out / "final" / "lmlab.json").read_text())
    assert meta["stage"] == "embed" and meta["kind"] == "encoder"


def test_hard_negatives_enter_the_batch(tmp_path):
    from lmlab.embed.data import collate, encode_rows, read_rows
    from lmlab.embed.model import load_encoder

    _, tok = load_encoder("tiny:bert")
    rows = read_rows(_pairs(tmp_path, 4, negatives=True), "mnrl")
    examples, _ = encode_rows(tok, rows, 32)
    batch = collate(examples, tok.pad_token_id)
    assert batch["anchors"] == 4 and batch["input_ids"].shape[0] == 12  # B + B + B
    rc, out = _embed(tmp_path, data=_pairs(tmp_path, negatives=True))
    assert rc == 0 and len(_metrics(out)) == 3


def test_trains_and_measures_on_a_collection(tmp_path):
    rc, out = _embed(tmp_path, "data=collection:chatterbot", "max_steps=2", "data_limit=64")
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert set(s["retrieval"]) == {"bm25", "before", "after"}
    for m in s["retrieval"].values():
        assert 0.0 <= m["ndcg@10"] <= 1.0 and m["recall@1"] <= m["recall@10"]
    assert s["retrieval"]["bm25"]["ndcg@10"] > 0.1  # BM25 finds real answers


def test_resume_auto_continues_exactly(tmp_path):
    common = ("schedule=constant", "save_every=1")
    rc, full = _embed(tmp_path, *common, "max_steps=4", name="full")
    assert rc == 0
    rc, part = _embed(tmp_path, *common, "max_steps=2", name="part")
    assert rc == 0
    rc, part = _embed(tmp_path, *common, "max_steps=4", "resume=auto", name="part")
    assert rc == 0
    a, b = _metrics(full), _metrics(part)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert [r["train/loss"] for r in a] == [r["train/loss"] for r in b]  # dropout RNG too


def test_learned_scale_is_trained_and_logged(tmp_path):
    rc, out = _embed(tmp_path, "learn_scale=true", "scale=10", "lr=0.05")
    assert rc == 0
    rows = _metrics(out)
    assert rows[0]["train/scale"] == pytest.approx(10.0, rel=1e-5)  # the first step's scale
    s = json.loads((out / "summary.json").read_text())
    assert s["learned_scale"] != pytest.approx(10.0, rel=1e-3)  # three steps moved it
    assert s["learned_scale"] == pytest.approx(rows[-1]["train/scale"], rel=0.2)


def test_simcse_reads_a_sentence_file(tmp_path):
    f = tmp_path / "s.txt"
    f.write_text("".join(f"sentence number {i} about something\n" for i in range(8)))
    rc, out = _embed(tmp_path, "objective=simcse", data=str(f))
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["data"]["sentences"] == 8 and s["objective"] == "simcse"
