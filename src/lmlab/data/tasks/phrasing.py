"""Train and held-out phrasings of a task, and the variants a generator can draw.

A prompt is a question frame plus an answer-format instruction: ``frame.format(**fields) + " "
+ instruction``. Each task has several frames and instructions for training and a disjoint set
of both for evaluation only, so a model that learned the task (not the template) still answers
when asked in words it never saw.

Variants (what ``Task.example(rng, variant)`` draws):

- ``train``: a train frame and instruction, numbers in the training range. Both the ``train``
  and the in-template ``test`` split come from it (the prompt-hash split in core.py).
- ``heldout``: an eval frame and an eval instruction, numbers in the training range.
- ``range``: a train frame and instruction, numbers (or lists, words) beyond the training range.

Only ``train`` is ever sampled for training rows; the held-out phrasings are tested never to
appear there (tests/data/test_heldout_tasks.py).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

VARIANTS = ("train", "heldout", "range")


@dataclass(frozen=True)
class Phrasings:
    """Disjoint train / held-out question frames and answer-format instructions."""

    train_frames: tuple[str, ...]
    eval_frames: tuple[str, ...]
    train_instructions: tuple[str, ...]
    eval_instructions: tuple[str, ...]

    def prompt(self, rng: random.Random, variant: str, **fields) -> str:
        held = variant == "heldout"
        frame = rng.choice(self.eval_frames if held else self.train_frames)
        instruction = rng.choice(self.eval_instructions if held else self.train_instructions)
        return frame.format(**fields) + " " + instruction

    def eval_patterns(self) -> list[re.Pattern]:
        """One regex per eval frame that matches any prompt the frame can start (fields as
        wildcards): a training prompt matching one would be a held-out phrasing leaking."""
        return [frame_pattern(f) for f in self.eval_frames]


def frame_pattern(frame: str) -> re.Pattern:
    parts = re.split(r"\{[^}]*\}", frame.replace("{{", "\0").replace("}}", "\1"))
    body = ".+?".join(re.escape(p).replace("\0", r"\{").replace("\1", r"\}") for p in parts)
    return re.compile("^" + body + " ")


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")


# Answer-format instructions shared by the tasks whose answer is one number.
NUMBER_TRAIN = ("Reply with the number only.", "Give the number only.",
                "Only write the number.", "Output only the number, nothing else.")
NUMBER_EVAL = ("Answer with just the number.", "Reply with just that number.",
               "Respond with nothing but the number.", "Your reply should be a single number.")
