"""Style tasks: preferences a small model can learn and a rule can measure.

- ``concise``: a factual question; the preferred reply is one short sentence that contains the
  fact, the rejected one says the same fact wrapped in filler and repetition. ``check``: the
  key word of the answer is in the reply and ``lmlab.eval.style.concise`` scores it at least
  ``CONCISE_PASS``.
- ``positive``: "write a sentence about X"; the preferred reply is warm, the rejected one is
  gloomy. ``check``: VADER's compound sentiment of the reply is at least ``POSITIVE_PASS``.

Prompts are built from templates and word lists written for lmlab (no third-party text), so
there are thousands of distinct prompts and the hash split keeps a tenth of them for testing.
Held-out wrappers (prefixes, suffixes, the "positive" requests) are used only by the
``heldout`` split; there is no out-of-range split. They are not part of ``task:all`` (which stays the verifiable tasks); name them:
``data=task:concise`` or ``data=task:positive``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lmlab.data.tasks.extract import clean

CONCISE_PASS = 0.8
POSITIVE_PASS = 0.5

# (question, one-sentence answer whose last word is the fact)
_CAPITALS = ("France Paris", "Italy Rome", "Spain Madrid", "Germany Berlin", "Japan Tokyo",
             "Egypt Cairo", "Canada Ottawa", "Kenya Nairobi", "Peru Lima", "Norway Oslo",
             "Greece Athens", "Poland Warsaw", "Austria Vienna", "Portugal Lisbon",
             "Ireland Dublin", "Russia Moscow", "China Beijing", "Cuba Havana",
             "Sweden Stockholm", "Finland Helsinki", "Denmark Copenhagen", "Hungary Budapest",
             "Chile Santiago", "Thailand Bangkok", "Argentina Buenos Aires", "Turkey Ankara",
             "Australia Canberra", "India New Delhi", "Mexico Mexico City", "Brazil Brasilia")
_OPPOSITES = ("hot cold", "big small", "fast slow", "happy sad", "light dark", "up down",
              "early late", "full empty", "open closed", "loud quiet", "hard soft",
              "rich poor", "young old", "wet dry", "thick thin", "strong weak", "high low",
              "inside outside", "win lose", "push pull", "always never", "first last",
              "heavy light", "near far", "clean dirty", "sweet sour", "day night",
              "begin end", "buy sell", "true false")
_YOUNG = ("cat kitten", "dog puppy", "cow calf", "sheep lamb", "horse foal", "goat kid",
          "frog tadpole", "duck duckling", "goose gosling", "lion cub", "bear cub",
          "kangaroo joey", "swan cygnet", "pig piglet", "owl owlet")
_FACTS = (
    ("How many days are in a week?", "A week has seven days.", "seven"),
    ("How many legs does a spider have?", "A spider has eight legs.", "eight"),
    ("How many continents are there?", "There are seven continents.", "seven"),
    ("What colour is a ripe banana?", "A ripe banana is yellow.", "yellow"),
    ("What colour is grass?", "Grass is green.", "green"),
    ("What colour is snow?", "Snow is white.", "white"),
    ("What gas do plants take in from the air?", "Plants take in carbon dioxide.", "carbon"),
    ("What is frozen water called?", "Frozen water is called ice.", "ice"),
    ("Which planet is closest to the Sun?", "The closest planet to the Sun is Mercury.",
     "Mercury"),
    ("Which planet is known as the red planet?", "The red planet is Mars.", "Mars"),
    ("What is the largest ocean?", "The largest ocean is the Pacific.", "Pacific"),
    ("How many hours are in a day?", "A day has twenty-four hours.", "twenty-four"),
    ("How many months are in a year?", "A year has twelve months.", "twelve"),
    ("What do bees make?", "Bees make honey.", "honey"),
    ("What is the main language of Brazil?", "The main language of Brazil is Portuguese.",
     "Portuguese"),
    ("Which animal is known as the king of the jungle?", "That animal is the lion.", "lion"),
    ("What do you call a shape with three sides?", "A shape with three sides is a triangle.",
     "triangle"),
    ("What is the opposite of north?", "The opposite of north is south.", "south"),
    ("Which season comes after winter?", "Spring comes after winter.", "Spring"),
    ("What instrument has black and white keys?", "That instrument is the piano.", "piano"),
)
# Train wrappers and held-out ones (``variant="heldout"``), disjoint.
_PREFIXES = ("", "Quick question: ", "Hi! ", "I was wondering, ", "Tell me: ")
_SUFFIXES = ("", " Thanks!", " Thank you.")
_EVAL_PREFIXES = ("Please answer: ", "Hey, ", "Can you help? ", "Out of curiosity, ")
_EVAL_SUFFIXES = (" Cheers.", " Much appreciated!")

_OPENERS = ("Well, that's a great question, and to be honest I'm glad you asked it.",
            "Good question! Let me think about it for a moment, basically.",
            "Oh, that's actually a really interesting thing to ask about, you know.",
            "Well, I mean, this is sort of something a lot of people wonder about.")
_MIDDLES = ("In other words, as I said,", "Basically, if you think about it,",
            "To put it simply, and this is kind of important,",
            "As a matter of fact, and needless to say,")
_CLOSERS = ("At the end of the day, that's basically the answer, I would say.",
            "All in all, I hope this sort of helps you out a lot!",
            "Long story short, that is actually what I would say about it.",
            "So yeah, that being said, I hope that answers your question, you know.")


def _facts() -> list[tuple[str, str, str]]:
    out = []
    for pair in _CAPITALS:
        country, city = pair.split(" ", 1)
        out.append((f"What is the capital of {country}?", f"The capital of {country} is {city}.",
                    city.split()[-1]))
    for pair in _OPPOSITES:
        a, b = pair.split()
        out.append((f"What is the opposite of '{a}'?", f"The opposite of {a} is {b}.", b))
    for pair in _YOUNG:
        animal, young = pair.split()
        out.append((f"What is a baby {animal} called?", f"A baby {animal} is called a {young}.",
                    young))
    return out + list(_FACTS)


FACTS = _facts()


def _has_word(text: str, word: str) -> bool:
    return word.lower() in text.lower()


@dataclass(frozen=True)
class ConciseTask:
    """Answer a factual question in one short sentence. check(): the fact (the answer's last
    word) appears in the reply and the concise rule scores it >= CONCISE_PASS; reward(): the
    concise score when the fact is there, else 0."""

    name: str = "concise"
    description: str = "answer a factual question briefly: one sentence, no filler"
    variants: tuple[str, ...] = ("heldout",)  # no out-of-range split: facts have no size

    def example(self, rng: random.Random, variant: str = "train") -> dict:
        _check_variant(self, variant)
        q, a, _ = rng.choice(FACTS)
        held = variant == "heldout"
        prefix = rng.choice(_EVAL_PREFIXES if held else _PREFIXES)
        suffix = rng.choice(_EVAL_SUFFIXES if held else _SUFFIXES)
        return {"prompt": _join(prefix, q) + suffix, "answer": a}

    @staticmethod
    def key(answer: str) -> str:
        return answer.rstrip(".").split()[-1]

    def reward(self, completion: str, answer: str) -> float:
        from lmlab.eval.style import concise

        reply = clean(completion)
        return concise(reply) if _has_word(reply, self.key(answer)) else 0.0

    def check(self, completion: str, answer: str) -> bool:
        return self.reward(completion, answer) >= CONCISE_PASS

    def wrong_answer(self, example: dict, rng: random.Random) -> str:
        """The same fact, rambling: an opener, the answer, filler, the answer again, a closer."""
        a = example["answer"]
        return " ".join((rng.choice(_OPENERS), a, rng.choice(_MIDDLES), a[0].lower() + a[1:],
                         rng.choice(_CLOSERS)))


_THINGS = ("the ocean", "autumn", "a cup of tea", "the library", "music", "a garden",
           "the mountains", "a rainy day", "breakfast", "the city at night", "a long walk",
           "friendship", "a good book", "the weekend", "cats", "dogs", "the beach", "snow",
           "a birthday party", "cooking", "the moon", "a bicycle ride", "summer holidays",
           "a picnic", "learning to swim", "the forest", "old photographs", "a new job",
           "the first day of school", "trains", "painting", "a thunderstorm", "the market",
           "baking bread", "the stars", "a family dinner", "running", "flowers", "the park",
           "a letter from a friend")
_ASKS = ("Write one sentence about {x}.", "Say something about {x}.",
         "Describe {x} in one sentence.", "Write a short line about {x}.")
_EVAL_ASKS = ("What do you think of {x}?", "Tell me how you feel about {x}.",
              "Share a thought on {x}.")
_WARM = ("{X} is wonderful and always brings me joy.",
         "I love {x}; it makes every day brighter and happier.",
         "{X} is a delightful gift that fills me with gratitude.",
         "{X} is lovely, cheerful and full of beautiful moments.")
_GLOOM = ("{X} is awful and always makes me miserable.",
          "I hate {x}; it makes every day worse and sadder.",
          "{X} is a terrible burden that fills me with dread.",
          "{X} is dull, depressing and full of painful moments.")


@dataclass(frozen=True)
class PositiveTask:
    """Write about a topic warmly. check(): VADER compound sentiment >= POSITIVE_PASS;
    reward(): the compound sentiment mapped to [0, 1]."""

    name: str = "positive"
    description: str = "write a sentence about a topic in a warm, positive tone"
    variants: tuple[str, ...] = ("heldout",)

    def example(self, rng: random.Random, variant: str = "train") -> dict:
        _check_variant(self, variant)
        x = rng.choice(_THINGS)
        held = variant == "heldout"
        prompt = _join(rng.choice(_EVAL_PREFIXES if held else _PREFIXES[:4]),
                       rng.choice(_EVAL_ASKS if held else _ASKS).format(x=x)) + \
            rng.choice(_EVAL_SUFFIXES if held else _SUFFIXES)
        return {"prompt": prompt, "answer": _fill(rng.choice(_WARM), x)}

    def reward(self, completion: str, answer: str) -> float:
        from lmlab.eval.style import positive

        return (positive(clean(completion)) + 1) / 2

    def check(self, completion: str, answer: str) -> bool:
        from lmlab.eval.style import positive

        return positive(clean(completion)) >= POSITIVE_PASS

    def wrong_answer(self, example: dict, rng: random.Random) -> str:
        x = max((t for t in _THINGS if t in example["prompt"]), key=len)
        return _fill(rng.choice(_GLOOM), x)


def _check_variant(task, variant: str) -> None:
    if variant != "train" and variant not in task.variants:
        raise ValueError(f"{task.name}: no {variant!r} variant (it has {task.variants})")


def _join(prefix: str, question: str) -> str:
    """"I was wondering, what ..." but "Tell me: What ..."."""
    return prefix + (question[0].lower() + question[1:] if prefix.endswith(", ") else question)


def _fill(template: str, x: str) -> str:
    return template.format(x=x, X=x[0].upper() + x[1:])


CONCISE, POSITIVE = ConciseTask(), PositiveTask()
