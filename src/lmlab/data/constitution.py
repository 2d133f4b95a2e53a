"""Constitutional-style pairs (Bai et al. 2022, "Constitutional AI", the supervised phase): a
model answers, critiques its answer against one written principle, then revises it; the
revision is preferred over the original answer.

Principles come from a text file (one a line, ``#`` comments) or the defaults below. Each reply
gets one principle, drawn with a seeded RNG from the prompt's index, so a resumed run draws the
same ones.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from lmlab.errors import UserError
from lmlab.textfile import read_lines

PRINCIPLES = (
    "The answer should be correct; if it contains a mistake, the mistake should be fixed.",
    "The answer should reply to what was asked, without drifting to other topics.",
    "The answer should be concise: no filler, no repetition, no needless preamble.",
    "The answer should be clear and easy to follow for the person who asked.",
    "The answer should be honest: it should not claim things it cannot know.",
    "The answer should be polite and kind, never rude or dismissive.",
    "The answer should avoid content that could help someone cause harm.",
)

_CRITIQUE = ("Here is a request and a response to it.\n\n[Request]\n{prompt}\n\n[Response]\n"
             "{response}\n\nPrinciple: {principle}\n\nCritique the response: say briefly how it "
             "falls short of the principle.")
_REVISE = ("Here is a request, a response to it and a critique of the response.\n\n[Request]\n"
           "{prompt}\n\n[Response]\n{response}\n\n[Critique]\n{critique}\n\nRewrite the response "
           "so that it follows this principle: {principle}\nReply with the rewritten response "
           "only.")
_PREAMBLE = re.compile(r"^\s*(?:here is |here's )?(?:the )?(?:rewritten|revised|improved) "
                       r"(?:response|answer)\s*[:\-]\s*", re.I)


def read_principles(path: str) -> list[str]:
    """The principles in ``path`` (one a line; blank lines and ``#`` comments skipped), or the
    defaults when ``path`` is empty."""
    if not path:
        return list(PRINCIPLES)
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"principles file {path} does not exist")
    out = [line.strip() for _, line in read_lines(p)
           if line.strip() and not line.strip().startswith("#")]
    if not out:
        raise UserError(f"principles file {path} holds no principles (one a line)")
    return out


def pick_principle(principles: list[str], seed: int, prompt_index: int, sample: int) -> str:
    return random.Random(f"lmlab.constitution:{seed}:{prompt_index}:{sample}").choice(principles)


def _text(prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def critique_request(prompt, response: str, principle: str) -> list[dict]:
    return [{"role": "user", "content": _CRITIQUE.format(prompt=_text(prompt), response=response,
                                                        principle=principle)}]


def revision_request(prompt, response: str, critique: str, principle: str) -> list[dict]:
    return [{"role": "user", "content": _REVISE.format(prompt=_text(prompt), response=response,
                                                      critique=critique.strip(),
                                                      principle=principle)}]


def clean_revision(text: str) -> str:
    """Strip a "Revised response:" preamble small models like to add."""
    return _PREAMBLE.sub("", text).strip()
