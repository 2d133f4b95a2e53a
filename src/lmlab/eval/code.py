"""HumanEval-style functional correctness: build a program from a completion and run the
problem's tests in a separate Python process with a time limit.

This EXECUTES MODEL-WRITTEN CODE. The ``humaneval`` eval set therefore runs only with
``allow_code_execution=true``; the child gets an empty temporary working folder, ``-I``
(isolated mode), no stdin, a memory cap (on Linux) and a timeout, which limits accidents but is
not a sandbox (see docs/evaluate.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile

_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.S)


def extract_program(prompt: str, completion: str, entry_point: str) -> str:
    """The program to test: a fenced code block (or the raw reply) that defines ``entry_point``
    stands alone after the prompt's imports; otherwise the reply continues the prompt (a
    function body)."""
    from lmlab.data.tasks.extract import END_MARKERS

    cut = min([completion.find(m) for m in END_MARKERS if m in completion] + [len(completion)])
    text = completion[:cut].rstrip() + "\n"  # keep the indentation of a bare function body
    m = _FENCE.search(text)
    code = m.group(1) if m else text
    if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.M):
        imports = "\n".join(line for line in prompt.splitlines()
                            if line.startswith(("import ", "from ")))
        return f"{imports}\n{code}\n"
    return prompt + code + "\n"


def _limit_memory() -> None:  # runs in the child before exec
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    except (ImportError, ValueError, OSError):
        pass


def passes(program: str, test: str, entry_point: str, *, timeout: float = 5.0) -> bool:
    """True when ``program`` + ``test`` + ``check(entry_point)`` exits 0 within ``timeout``."""
    source = f"{program}\n\n{test}\n\ncheck({entry_point})\n"
    with tempfile.TemporaryDirectory() as cwd:
        try:
            done = subprocess.run([sys.executable, "-I", "-c", source], cwd=cwd,
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=timeout,
                                  preexec_fn=_limit_memory if sys.platform != "win32" else None)
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0
