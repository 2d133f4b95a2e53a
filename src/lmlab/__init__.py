"""lmlab: the whole LLM lifecycle on the hardware a learner has."""

__version__ = "0.1.0"
