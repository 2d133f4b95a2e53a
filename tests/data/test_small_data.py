"""Small data: fewer examples than one batch train with the batch clamped (one line says so);
no examples is an error; a clamped run resumes exactly as it would have run uninterrupted."""

import json

import pytest

from lmlab.cli import main
from lmlab.errors import UserError
from lmlab.train.data import BatchStream, clamp_batch_size

THREE_ROWS = [
    {"messages": [{"role": "user", "content": "What colour is grass?"},
                  {"role": "assistant", "content": "Green."}]},
    {"prompt": "How many legs does a cat have?", "completion": "Four."},
    {"prompt": "What is 3 + 4?", "completion": "7"},
]


def test_clamp_by_hand():
    assert clamp_batch_size(10, 8) == (8, None)
    assert clamp_batch_size(8, 8) == (8, None)
    line = "[lmlab] 3 training examples, fewer than batch_size=8: using batch_size=3"
    assert clamp_batch_size(3, 8) == (3, line)
    # two processes: each takes the same number, the odd example waits for the next epoch
    line = "[lmlab] 7 training examples, fewer than batch_size=4 x 2 processes: using batch_size=3"
    assert clamp_batch_size(7, 4, world=2) == (3, line)
    assert clamp_batch_size(2, 8, name="prompts_per_update", noun="prompts")[1] == (
        "[lmlab] 2 prompts, fewer than prompts_per_update=8: using prompts_per_update=2")


@pytest.mark.parametrize("n,world,match", [(0, 1, "no training examples"),
                                           (1, 2, "fewer than the 2 processes")])
def test_nothing_to_fill_a_batch_is_an_error(n, world, match):
    with pytest.raises(UserError, match=match):
        clamp_batch_size(n, 4, world=world)


def test_clamped_stream_visits_every_example_each_epoch(capsys):
    stream = BatchStream([{"i": i} for i in range(3)], 8, lambda b: [e["i"] for e in b], seed=1)
    assert capsys.readouterr().out.count("using batch_size=3") == 1
    for _ in range(4):  # four epochs of one batch each
        assert sorted(stream.next()) == [0, 1, 2]


def _sft(tmp_path, name, *extra):
    data = tmp_path / "three.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in THREE_ROWS))
    out = tmp_path / name
    rc = main(["sft", "model=tiny:llama", f"data={data}", f"output_dir={out}", "max_steps=2",
               "batch_size=8", "progress=false", "eval_n=0", "warmup_steps=0",
               "schedule=constant", *extra])
    return rc, out


def test_three_row_file_trains_with_one_line_saying_so(tmp_path, capsys):
    rc, out = _sft(tmp_path, "run")
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    lines = [x for x in printed.out.splitlines() if "fewer than batch_size" in x]
    assert lines == ["[lmlab] 3 training examples, fewer than batch_size=8: using batch_size=3"]
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2] and (out / "final").is_dir()


def test_clamped_run_resumes_exactly(tmp_path):
    rc, full = _sft(tmp_path, "full", "max_steps=4", "save_every=1")
    assert rc == 0
    rc, part = _sft(tmp_path, "part", "max_steps=2", "save_every=1")
    assert rc == 0
    rc, part = _sft(tmp_path, "part", "max_steps=4", "save_every=1", "resume=auto")
    assert rc == 0
    a = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    # the same computation on both sides: the losses are equal, not close (a clamped batch
    # holds every example, so this checks weights, optimizer and schedule state)
    assert [r["train/loss"] for r in a] == [r["train/loss"] for r in b]
