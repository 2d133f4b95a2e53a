"""`lmlab generate` on the tiny model: every strategy writes samples and a summary."""

import json
import pathlib

import pytest

from lmlab.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _generate(tmp_path, *extra, name="run"):
    out = tmp_path / name
    args = ["generate", "model=tiny:llama", "data=task:add", "limit=2", "max_new_tokens=4",
            f"output_dir={out}", *extra]
    return main(args), out


def _read(out):
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return samples, json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("strategy,extra", [
    ("sample", ["top_p=0.9", "seed=1"]), ("greedy", []), ("beam", ["num_beams=2"]),
    ("contrastive", ["contrastive_k=2"]), ("best_of_n", ["n=2"]),
    ("speculative", ["temperature=0"]), ("speculative", ["draft=tiny:llama4", "temperature=0"]),
    ("speculative", ["draft=tiny:llama4", "draft_vocab=64", "pack_weights=true"])])
def test_every_strategy_writes_samples_and_summary(tmp_path, strategy, extra):
    rc, out = _generate(tmp_path, f"strategy={strategy}", *extra)
    assert rc == 0
    samples, summary = _read(out)
    assert len(samples) == 2 and all(s["new_tokens"] <= 4 for s in samples)
    assert all({"prompt", "completion", "finish_reason", "task", "correct"} <= set(s)
               for s in samples)
    assert summary["strategy"] == strategy and summary["prompts"] == 2
    assert "accuracy" in summary and summary["new_tokens"] == sum(s["new_tokens"]
                                                                  for s in samples)
    if strategy == "speculative":
        assert summary["speculative"]["target_forwards"] > 0
    assert (out / "config.yaml").exists()


@pytest.mark.parametrize("strategy,fn", [("beam", "generate_beam"),
                                         ("contrastive", "generate_contrastive"),
                                         ("best_of_n", "best_of_n")])
def test_search_strategies_take_pack_weights(tmp_path, monkeypatch, strategy, fn):
    from lmlab.infer import search

    seen, real = [], getattr(search, fn)

    def spy(*a, **kw):
        seen.append(kw.get("pack"))
        return real(*a, **kw)

    monkeypatch.setattr(search, fn, spy)
    rc, out = _generate(tmp_path, f"strategy={strategy}", "pack_weights=true", "num_beams=2",
                        "contrastive_k=2", "n=2")
    assert rc == 0 and len(_read(out)[0]) == 2 and seen == ["fp32"]


def test_streaming_with_pack_weights_prints_the_unpacked_greedy_text(tmp_path):
    rc, out = _generate(tmp_path, "stream=true", "pack_weights=true", "strategy=greedy",
                        "prompt=Tell me a joke")
    rc2, ref = _generate(tmp_path, "strategy=greedy", "prompt=Tell me a joke", name="ref")
    assert rc == rc2 == 0
    assert _read(out)[0][0]["completion"] == _read(ref)[0][0]["completion"] != ""


def test_prompt_files_and_single_prompt(tmp_path, capsys):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"prompt": "Hi", "id": 7, "completion": "old"}) + "\n" + json.dumps(
        {"messages": [{"role": "user", "content": "Yo"}, {"role": "assistant", "content": "x"}]})
        + "\n")
    rc, out = _generate(tmp_path, f"data={f}", "strategy=greedy")
    samples, _ = _read(out)
    assert rc == 0 and [s["prompt"] for s in samples] == ["Hi", [{"role": "user",
                                                                 "content": "Yo"}]]
    assert samples[0]["id"] == 7 and samples[0]["completion"] != "old"  # input fields kept
    assert "id" not in samples[1] and "messages" not in samples[1]
    t = tmp_path / "p.txt"
    t.write_text("one\n\ntwo\nthree\n")
    rc, out = _generate(tmp_path, f"data={t}", "limit=null", "strategy=greedy", name="txt")
    assert rc == 0 and len(_read(out)[0]) == 3
    capsys.readouterr()
    rc, out = _generate(tmp_path, f"data={t}", "strategy=greedy", name="txt2")  # limit=2
    assert rc == 0 and len(_read(out)[0]) == 2
    assert "using the first 2 of 3 prompts" in capsys.readouterr().out
    rc, out = _generate(tmp_path, "prompt=Tell me a joke", "stream=true", "temperature=0",
                        name="one")
    assert rc == 0 and _read(out)[0][0]["prompt"] == "Tell me a joke"


def test_bad_input_fails_before_any_work(tmp_path, capsys):
    rc, out = _generate(tmp_path, "temperature=-1")
    assert rc == 2 and "temperature" in capsys.readouterr().err and not out.exists()
    rc, out = _generate(tmp_path, "top_k=-2", name="b")
    assert rc == 2 and "top_k" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"nope": 1}\n')
    rc, out = _generate(tmp_path, f"data={bad}", name="c")
    err = capsys.readouterr().err
    assert rc == 1 and "bad.jsonl:2" in err and "prompt" in err and not out.exists()
    rc, out = _generate(tmp_path, "strategy=speculative", "draft=tiny:nope", name="d")
    assert rc == 1 and "nope" in capsys.readouterr().err and not out.exists()
    rc, out = _generate(tmp_path, "strategy=speculative", "draft_vocab=100", name="e")
    assert rc == 2 and "draft_vocab" in capsys.readouterr().err and not out.exists()


def test_shipped_generate_configs_load():
    from lmlab.config import load_config
    from lmlab.stages.generate import Config

    files = sorted((ROOT / "configs" / "generate").glob("*.yaml"))
    assert len(files) == 3
    for f in files:
        cfg = load_config(Config, f)
        cfg.sampling()  # the sampling values are valid too


@pytest.mark.parametrize("strategy", ["sample", "best_of_n"])
def test_stopped_run_keeps_finished_chunks_and_resume_equals_uninterrupted(tmp_path, monkeypatch,
                                                                           strategy):
    from lmlab.stages import generate

    args = [f"strategy={strategy}", "limit=5", "chunk=2", "n=2", "seed=3"]
    rc, whole = _generate(tmp_path, *args, name="whole")
    assert rc == 0
    real, calls = generate._decode, []

    def stop_on_the_second_chunk(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(generate, "_decode", stop_on_the_second_chunk)
    rc, cut = _generate(tmp_path, *args, name="cut")
    assert rc == 130 and not (cut / "summary.json").exists()
    kept = (cut / "samples.jsonl").read_text().splitlines(keepends=True)
    assert len(kept) == 2  # the first chunk
    (cut / "samples.jsonl").write_text("".join(kept) + kept[1][:30])  # died mid-write too
    monkeypatch.setattr(generate, "_decode", real)
    assert _generate(tmp_path, *args, name="cut")[0] == 1  # no resume=auto: refused
    rc, cut = _generate(tmp_path, *args, "resume=auto", name="cut")
    assert rc == 0
    (a, sa), (b, sb) = _read(whole), _read(cut)
    assert a == b and len(a) == 5 and sb["resumed_prompts"] == 2
    assert sa["accuracy"] == sb["accuracy"] and sa["new_tokens"] == sb["new_tokens"]
    if strategy == "best_of_n":
        assert all(len(s["scores"]) == 2 for s in b) and sb["best_of_n_scores"] == \
            [s["scores"] for s in b]
    rc, again = _generate(tmp_path, *args, "resume=auto", name="cut")  # nothing left to do
    assert rc == 0 and _read(again)[0] == a and _read(again)[1]["resumed_prompts"] == 5
    # the first chunk keeps the run's own seed: one chunk of two = the first two of five
    rc, two = _generate(tmp_path, f"strategy={strategy}", "limit=2", "n=2", "seed=3", name="two")
    assert _read(two)[0] == a[:2]


def test_resume_refuses_samples_of_other_prompts(tmp_path, capsys):
    rc, out = _generate(tmp_path, "strategy=greedy", "limit=3", "chunk=1")
    lines = (out / "samples.jsonl").read_text().splitlines(keepends=True)
    row = json.loads(lines[1])
    row["prompt"] = "something else"
    (out / "samples.jsonl").write_text(lines[0] + json.dumps(row) + "\n")
    capsys.readouterr()
    rc, out = _generate(tmp_path, "strategy=greedy", "limit=3", "chunk=1", "resume=auto")
    err = capsys.readouterr().err
    assert rc == 1 and "samples.jsonl: line 2" in err and "overwrite=true" in err
    assert len((out / "samples.jsonl").read_text().splitlines()) == 2  # nothing lost


def test_a_prompt_too_long_late_in_the_file_fails_before_the_first_chunk(tmp_path, capsys):
    from lmlab.models import load_model

    ctx = load_model("tiny:llama").config.max_position_embeddings
    f = tmp_path / "p.txt"
    f.write_text("Hi\nHello\n" + "word " * ctx + "\n")
    rc, out = _generate(tmp_path, f"data={f}", "limit=null", "chunk=1", "strategy=greedy")
    err = capsys.readouterr().err
    assert rc == 1 and f"{f}:3: the prompt has" in err and "context" in err
    assert not (out / "samples.jsonl").exists()


def test_speculative_streams_prompt_after_prompt(tmp_path, capsys):
    rc, out = _generate(tmp_path, "strategy=speculative", "temperature=0", "stream=true",
                        "max_new_tokens=8")
    shown = capsys.readouterr().out
    samples, _ = _read(out)
    assert rc == 0 and len(samples) == 2
    for s in samples:  # each prompt's header, then its text as it came
        assert f"--- {str(s['prompt'])[:70]!r}\n{s['completion']}\n" in shown
    rc, _ = _generate(tmp_path, "strategy=beam", "stream=true", name="beam")
    err = capsys.readouterr().err
    assert rc == 2 and "stream: strategy=beam" in err and "speculative" in err


def test_the_draft_model_loads_once_for_every_chunk(tmp_path, monkeypatch):
    import lmlab.models

    real, loads = lmlab.models.load_model, []

    def counting(ref, *a, **kw):
        loads.append(ref)
        return real(ref, *a, **kw)

    monkeypatch.setattr(lmlab.models, "load_model", counting)
    rc, out = _generate(tmp_path, "strategy=speculative", "draft=tiny:llama4", "temperature=0",
                        "limit=3", "chunk=1")
    assert rc == 0 and len(_read(out)[0]) == 3
    assert loads.count("tiny:llama4") == 1


def test_completion_header_shows_a_chats_last_message():
    from lmlab.stages.generate import _header

    chat = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "List the colours in: red car, blue sky."}]
    assert _header(chat) == "--- 'user: List the colours in: red car, blue sky.'"
    assert _header("x" * 100) == f"--- {'x' * 70!r}"


def test_the_decoding_line_says_which_weights_decode(tmp_path, capsys):
    """Packed fp32 weights by default (equal to HF up to fp32 rounding), rounded ones with
    decode_weights; nothing where packing does not apply (pack_weights=false, a bf16 model)."""
    for args, shown in (((), "packed fp32 weights (equal to HF's forward up to fp32 rounding"),
                        (("decode_weights=int8",), "packed int8 weights (rounded to int8"),
                        (("pack_weights=false",), None), (("dtype=bf16",), None)):
        rc, _ = _generate(tmp_path, "max_new_tokens=2", "limit=1", *args,
                          name="_".join(("run", *args)).replace("=", "-"))
        out = capsys.readouterr().out
        assert rc == 0 and (shown in out if shown else "decoding: packed" not in out), args
        weights = _read(tmp_path / "_".join(("run", *args)).replace("=", "-"))[1][
            "decode_weights"]
        assert weights == {(): "fp32", ("decode_weights=int8",): "int8"}.get(args), args


def test_decode_weights_need_pack_weights(tmp_path):
    from lmlab.stages.generate import Config

    assert Config(pack_weights=False, decode_weights="bf16").validate() == [
        "decode_weights: rounded weights need pack_weights=true"]
    assert Config(decode_weights="int8").pack() == "int8"
    assert Config(pack_weights=False).pack() is False
