"""Built-in verifiable tasks: a seeded generator, a checker and a reward per task.

One definition of "correct" (``Task.check``) serves evaluation, preference pairs and RL
rewards. Each task also draws held-out phrasings and out-of-range numbers for evaluation only
(splits ``heldout`` and ``range``; ``phrasing.py``). Tasks: add, sub, compare, convert, sort (integer answers, ``arith.py``), reverse and
json (``text.py``). How a completion is read: ``extract.py``. See docs/tasks.md.

    >>> from lmlab.data.tasks import examples, get_task
    >>> ex = examples("add", "test", 1)[0]
    >>> get_task("add").check(" " + ex["answer"] + "<|im_end|>", ex["answer"])
    True
"""

from lmlab.data.tasks.core import (
    DEFAULT_N,
    EVAL_SPLITS,
    ROW_KINDS,
    SPLIT_LABELS,
    SPLITS,
    TASKS,
    Task,
    examples,
    get_task,
    has_split,
    score,
    split_of,
    task_names,
    task_rows,
)

__all__ = ["DEFAULT_N", "EVAL_SPLITS", "ROW_KINDS", "SPLITS", "SPLIT_LABELS", "TASKS", "Task",
           "examples", "get_task", "has_split", "score", "split_of", "task_names", "task_rows"]
