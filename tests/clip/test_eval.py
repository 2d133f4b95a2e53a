"""Zero-shot argmax, prompt ensembling, the retrieval pool and recall, the held-out split and
the character tokenizer, on tiny made-up cases."""

import torch

from lmlab.clip import evaluate as E
from lmlab.clip.data import covered_holdout
from lmlab.clip.text import BOS, EOS, PAD, UNK, decode, encode_batch


def test_zero_shot_argmax_on_a_made_up_case():
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # "dog", "cat"
    images = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.0, 1.0]])
    assert E.zero_shot_predict(images, classes).tolist() == [0, 1, 0, 1]
    assert E.zero_shot_accuracy(images, classes, torch.tensor([0, 1, 1, 1])) == 0.75


def test_prompt_ensemble_averages_templates_then_normalises():
    per = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # 2 templates x 1 class
    got = E.prompt_ensemble(per)
    assert torch.allclose(got, torch.tensor([[2 ** -0.5, 2 ** -0.5]]))


def test_retrieval_pool_keeps_one_image_per_caption():
    caps = ["a", "b", "a", "c", "b", "d"]
    assert E.retrieval_pool(caps, 10) == [0, 1, 3, 5]
    assert E.retrieval_pool(caps, 2) == [0, 1]


def test_retrieval_recall_both_ways():
    img = torch.eye(3)
    txt = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])  # texts 1 and 2 swapped
    s = E.retrieval_scores(img, txt)
    assert s["image_to_text"]["recall@1"] == 1 / 3
    assert s["text_to_image"]["recall@1"] == 1 / 3
    assert s["image_to_text"]["recall@5"] == 1.0


def test_held_out_classes_keep_every_word_in_training():
    names = [f"{c} {s}" for c in ("red", "blue", "green") for s in ("circle", "star", "cross")]
    held = covered_holdout(names, 0.4, seed=1)
    assert len(held) == 4  # round(0.4 * 9)
    kept = [n for n in names if n not in held]
    words = {w for n in kept for w in n.split()}
    assert all(set(h.split()) <= words for h in held)
    # a word no other class has is never held out
    assert "unique thing" not in covered_holdout(names + ["unique thing"], 0.9, seed=0)


def test_character_tokenizer():
    ids, eos = encode_batch(["Ab", "a b c", "é"], max_len=5)
    assert ids.shape == (3, 5)
    assert ids[0, 0] == BOS and ids[0, 3] == EOS and ids[0, 4] == PAD and eos[0] == 3
    assert eos[1] == 4 and ids[1, 4] == EOS  # cut to max_len: BOS + 3 chars + EOS
    assert decode(ids[1].tolist()) == "a b" and decode(ids[0].tolist()) == "ab"
    assert ids[2, 1] == UNK


def test_alternate_split_puts_every_class_in_both_halves():
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])  # rows cycle through the classes
    a, b = E.alternate_split(labels)
    assert a.tolist() == [0, 1, 2, 6, 7, 8] and b.tolist() == [3, 4, 5, 9]
    assert set(labels[a].tolist()) == set(labels[b].tolist()) == {0, 1, 2}
