"""Curriculum learning: difficulty scores, pacing and the easy -> hard sampler, by hand."""

import math

import pytest
import torch

from lmlab.data.curriculum import (
    CurriculumStream,
    accuracy_by_difficulty,
    competence,
    easy_first,
    task_difficulty,
)


def test_task_difficulty_by_hand():
    # 347 + 589: 3 digits, carries from the ones (7+9) and tens (4+8+1), not hundreds (3+5+1)
    assert task_difficulty("add", "What is 347 + 589? Reply with the number only.", "936") == 5
    assert task_difficulty("add", "What is 987 + 456? Reply with the number only.", "1443") == 6
    assert task_difficulty("add", "What is 321 + 456? Reply with the number only.", "777") == 3
    # 734 - 289: 3 digits, borrows in the ones (4-9) and tens (2-8-1) columns
    assert task_difficulty("sub", "Compute 734 - 289. Give the number only.", "445") == 5
    # 482 / 428: 3 digits + same digits (1); 54 apart (0)
    assert task_difficulty("compare", "Which is bigger: 482 or 428? Give the number only.",
                           "482") == 4
    assert task_difficulty("compare", "Which is bigger: 31 or 35? Give the number only.",
                           "35") == 3  # 2 digits + within 10
    # 83, 7, 19, 42: 83 is before three smaller numbers -> 3 inversions, + 4 numbers
    assert task_difficulty("sort", "Sort from smallest to largest: 83, 7, 19, 42. Reply with "
                           "the sorted list only.", "7, 19, 42, 83") == 7
    assert task_difficulty("sort", "Sort from smallest to largest: 7, 19, 42, 83. Reply with "
                           "the sorted list only.", "7, 19, 42, 83") == 4
    assert task_difficulty("reverse", "Spell 'bamoli' backwards. Give only the reversed word.",
                           "ilomab") == 6
    # 23 + 48: 2 + 2 digits, one carry (3+8); the {"answer": 0} in the instruction is ignored
    assert task_difficulty("json", 'What is 23 + 48? Reply only with JSON like {"answer": 0}.',
                           '{"answer": 71}') == 5
    assert task_difficulty("convert", "Convert 7 hours to minutes. Give the number only.",
                           "420") == 3


def test_accuracy_by_difficulty_counts_by_hand():
    def row(prompt, correct, split="heldout", task="compare"):
        return {"task": task, "split": split, "prompt": prompt, "answer": "0", "correct": correct}

    samples = [
        row("Pick the greater number: 482 or 428.", True),    # 3 digits + same digits: 4
        row("Pick the greater number: 517 or 571.", False),   # 4
        row("Pick the greater number: 905 or 901.", False),   # 3 digits + within 10: 4
        row("Pick the greater number: 640 or 615.", True),    # 3 digits, 25 apart: 3
        row("Pick the greater number: 31 or 35.", True),      # 2 digits + within 10: 3
        row("Pick the greater number: 13 or 31.", False),     # 2 + same digits: 3
        row("Pick the greater number: 640 or 615.", False, split="test"),  # another split
        row("Sort 83, 7, 19, 42.", True, task="sort"),        # 3 inversions + 4 numbers: 7
    ]
    got = accuracy_by_difficulty(samples)
    assert got == {"compare": {3.0: (2, 3), 4.0: (1, 3)}, "sort": {7.0: (1, 1)}}
    assert list(got["compare"]) == [3.0, 4.0]  # increasing scores
    assert accuracy_by_difficulty(samples, split="test") == {"compare": {3.0: (0, 1)}}
    assert accuracy_by_difficulty([]) == {}


def test_difficulty_of_generated_rows_spans_a_range():
    from lmlab.data.tasks import examples

    scores = [task_difficulty("add", e["prompt"], e["answer"]) for e in examples("add", "train",
                                                                                  200)]
    assert min(scores) <= 3 and max(scores) >= 6  # 2-3 digits, 0-3 carries


def test_competence_by_hand():
    assert competence(0, 100, "linear", start=0.2, ramp=0.5) == pytest.approx(0.2, abs=1e-12)
    assert competence(25, 100, "linear", start=0.2, ramp=0.5) == pytest.approx(0.6, abs=1e-12)
    assert competence(50, 100, "linear", start=0.2, ramp=0.5) == 1.0
    assert competence(99, 100, "linear", start=0.2, ramp=0.5) == 1.0
    assert competence(25, 100, "root", start=0.2, ramp=1.0) == pytest.approx(
        math.sqrt(0.04 + 0.96 * 0.25), abs=1e-12)
    # step: 4 plateaus 0.2, 0.4667, 0.7333, 1.0 over the ramp of 80 steps (20 each)
    assert competence(19, 100, "step", start=0.2, ramp=0.8) == pytest.approx(0.2, abs=1e-12)
    assert competence(40, 100, "step", start=0.2, ramp=0.8) == pytest.approx(0.2 + 0.8 * 2 / 3,
                                                                              abs=1e-12)
    assert competence(80, 100, "step", start=0.2, ramp=0.8) == 1.0


def test_easy_first_sorts_by_score_ties_seeded():
    order = easy_first([5, 1, 3, 2, 4, 0])
    assert order == [5, 1, 3, 2, 4, 0]
    tied = easy_first([1, 0, 1, 0, 1, 0], seed=3)
    assert sorted(tied[:3]) == [1, 3, 5] and sorted(tied[3:]) == [0, 2, 4]


def _stream(**kw):
    examples = list(range(6))  # the example is its own index
    scores = [5, 1, 3, 2, 4, 0]  # easiest: 5, 1, 3, 2, 4, 0
    return CurriculumStream(examples, scores, 2, lambda xs: xs, total_steps=4, pacing="linear",
                            start=1 / 3, ramp=0.5, **kw)


def test_curriculum_stream_goes_easy_to_hard():
    s = _stream()
    # step 0: competence 1/3 -> the 2 easiest rows; step 1: 2/3 -> 4 rows; then all 6
    assert s.open_rows(0) == 2 and s.open_rows(1) == 4 and s.open_rows(2) == 6
    assert sorted(s.next()) == [1, 5]
    assert set(s.next()) <= {5, 1, 3, 2}
    seen = [x for _ in range(40) for x in s.next()]
    assert set(seen) == set(range(6))


def test_curriculum_stream_grad_accum_and_ranks():
    s = _stream(grad_accum=2)
    assert sorted(s.next()) == [1, 5] and sorted(s.next()) == [1, 5]  # both micro of step 0
    r0, r1 = _stream(rank=0, world=2), _stream(rank=1, world=2)
    # a global batch of 4: step 0 opens max(2 rows, one global batch) = 4 rows
    assert sorted(r0.next() + r1.next()) == [1, 2, 3, 5]


def test_curriculum_stream_resumes_exactly():
    a = _stream()
    full = [a.next() for _ in range(6)]
    b = _stream()
    first = [b.next() for _ in range(3)]
    c = _stream()
    c.load_state_dict(b.state_dict())
    assert first + [c.next() for _ in range(3)] == full


def test_curriculum_stream_rejects_mismatched_scores():
    with pytest.raises(ValueError, match="2 scores for 6 examples"):
        CurriculumStream(list(range(6)), [0, 1], 2, list, total_steps=1)


def test_loss_scores_rank_rows_by_the_models_loss():
    from lmlab.data.curriculum import loss_scores

    class Bigram(torch.nn.Module):  # logits at position t = W[x_t]
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]]))

        def forward(self, input_ids, use_cache=False, **_):
            return type("Out", (), {"logits": self.w[input_ids]})()

    def collate(xs):
        return {"input_ids": torch.tensor([x[0] for x in xs]),
                "labels": torch.tensor([x[1] for x in xs])}

    rows = [([0, 1], [-100, 1]), ([1, 0], [-100, 0]), ([1, 1], [-100, 1])]
    got = loss_scores(Bigram(), rows, collate, batch_size=2)
    # -log p: p(1|0) = 1/2, p(0|1) = 3/4, p(1|1) = 1/4
    assert got == pytest.approx([math.log(2), -math.log(0.75), math.log(4)], abs=1e-6)
