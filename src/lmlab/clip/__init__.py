"""CLIP from scratch: image-caption pairs rendered offline (``shapes``, ``emoji``, ``icons``,
a ``folder``), a character tokenizer, the two towers and their projections (``model``), and
the evaluations (zero-shot on held-out classes, retrieval recall@k, linear probe).
``lmlab clip`` (stages/clip.py) wires them to the shared loop.

Nothing here is imported at ``import lmlab.clip`` (the CLI lists stages without torch).
"""

IMAGE_ENCODERS = ("cnn", "vit")
SOURCES = ("shapes", "emoji", "icons")
