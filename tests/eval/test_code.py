from lmlab.eval.code import extract_program, passes

PROMPT = 'import math\n\n\ndef add(a, b):\n    """Add two numbers."""\n'
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n"


def test_extract_program_forms():
    body = "    return a + b\n"
    assert extract_program(PROMPT, body + "<|im_end|>junk", "add") == PROMPT + body + "\n"
    fenced = "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    prog = extract_program(PROMPT, fenced, "add")
    assert prog.startswith("import math\n") and "return a + b" in prog and "Done" not in prog


def test_passes_fails_and_times_out():
    assert passes(extract_program(PROMPT, "    return a + b\n", "add"), TEST, "add")
    assert not passes(extract_program(PROMPT, "    return a - b\n", "add"), TEST, "add")
    assert not passes(PROMPT + "    while True:\n        pass\n", TEST, "add", timeout=1.0)
    assert not passes("def add(a, b) return", TEST, "add")  # syntax error
