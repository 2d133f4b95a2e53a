"""Contamination: word n-gram overlap on hand-made texts; training data found through run
folders; the evaluated items of a set."""

import json

import yaml

from lmlab.data.tasks import examples
from lmlab.eval.contamination import check, set_items, training_texts
from lmlab.eval.overlap import ngram_overlap, ngrams, words

TRAIN = [("The quick brown fox jumps over the lazy dog, and then it runs far away into the "
          "dark woods."), "An unrelated line."]


def test_ngrams_by_hand():
    assert words("Hello, World! 42 times") == ["hello", "world", "42", "times"]
    assert ngrams("a b c d", 2) == {("a", "b"), ("b", "c"), ("c", "d")}
    assert ngrams("a b", 3) == {("a", "b")}  # shorter than n: the whole item is one gram
    assert ngrams("...", 3) == set()


def test_overlap_counts_hand_made_items():
    items = [
        # 13 consecutive words of the training text (different case and punctuation): overlap
        "QUICK brown fox -- jumps over the lazy dog and then it runs far? Yes.",
        # 12 of them, then a different word: no 13-gram in common
        "quick brown fox jumps over the lazy dog and then it walks far away",
        # shorter than 13 words and contained whole: overlap
        "lazy dog and then",
        # short, not contained: none
        "lazy cat",
    ]
    got = ngram_overlap(TRAIN, items, n=13)
    assert (got["n"], got["items"], got["overlapping"]) == (13, 4, 2)
    assert got["share"] == 0.5 and got["examples"] == [items[0], items[2]]
    assert ngram_overlap(TRAIN, [], 13)["share"] == 0.0
    assert ngram_overlap([], items, 13)["overlapping"] == 0


def _run(folder, stage, data, model):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"stage": stage, "data": data,
                                                        "model": str(model)}))
    return folder


def test_training_data_is_followed_through_run_folders(tmp_path):
    leaked = examples("add", "heldout", 3)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": r["prompt"], "chosen": r["answer"],
                                         "rejected": "0"}) + "\n" for r in leaked))
    sft = _run(tmp_path / "sft-x", "sft", "task:add", "tiny:llama")
    dpo = _run(tmp_path / "dpo-x", "dpo", str(pairs), sft)
    texts, notes = training_texts(str(dpo / "final"))
    assert len(texts) == 3 + 1000 and len(notes) == 2
    assert notes[0].startswith("dpo-x (dpo)") and "sft-x (sft): task:add (1000 rows)" in notes[1]
    assert training_texts("tiny:llama") == ([], [])

    # A fake tasks result: 2 in-template and 3 held-out items (the leaked ones).
    samples = [{"task": "add", "split": "test", "prompt": r["prompt"], "answer": r["answer"]}
               for r in examples("add", "test", 2)]
    samples += [{"task": "add", "split": "heldout", "prompt": r["prompt"],
                 "answer": r["answer"]} for r in leaked]
    items = set_items("tasks", {"samples": samples}, None)
    assert set(items) == {"tasks/test", "tasks/heldout"}
    rows = {r["set"]: r for r in check(texts, items, 13)}
    assert rows["tasks/heldout"]["overlapping"] == 3 and rows["tasks/heldout"]["flagged"]
    assert rows["tasks/test"]["overlapping"] == 0 and not rows["tasks/test"]["flagged"]
    # sft's own task rows (train split) never overlap the held-out splits
    sft_only, _ = training_texts(str(sft))
    heldout = [r["prompt"] + "\n" + r["answer"] for r in examples("add", "heldout", 100)]
    test = [r["prompt"] + "\n" + r["answer"] for r in examples("add", "test", 100)]
    assert ngram_overlap(sft_only, heldout)["overlapping"] == 0
    assert ngram_overlap(sft_only, test)["overlapping"] == 0
