"""Constitutional-mode helpers: principles files, seeded principle choice, revision cleanup."""

import pytest

from lmlab.data.constitution import (PRINCIPLES, clean_revision, critique_request,
                                     pick_principle, read_principles, revision_request)
from lmlab.errors import UserError


def test_principles_file_and_defaults(tmp_path):
    assert read_principles("") == list(PRINCIPLES)
    f = tmp_path / "p.txt"
    f.write_text("# comment\n\nBe brief.\n  Be kind.  \n")
    assert read_principles(str(f)) == ["Be brief.", "Be kind."]
    f.write_text("# only a comment\n")
    with pytest.raises(UserError, match="holds no principles"):
        read_principles(str(f))
    with pytest.raises(UserError, match="does not exist"):
        read_principles(str(tmp_path / "missing.txt"))


def test_principle_choice_is_seeded_per_prompt_and_sample():
    ps = [f"p{i}" for i in range(20)]
    assert pick_principle(ps, 0, 3, 1) == pick_principle(ps, 0, 3, 1)
    assert len({pick_principle(ps, 0, i, 0) for i in range(40)}) > 5


def test_requests_quote_prompt_response_and_principle():
    (msg,) = critique_request([{"role": "user", "content": "hi"}], "hello!", "Be brief.")
    assert msg["role"] == "user" and "user: hi" in msg["content"]
    assert "hello!" in msg["content"] and "Be brief." in msg["content"]
    (msg,) = revision_request("Q?", "A long answer", " too long ", "Be brief.")
    assert "[Critique]\ntoo long" in msg["content"]


@pytest.mark.parametrize("text,want", [
    ("Revised response: Paris.", "Paris."), ("Here is the rewritten answer - Paris.", "Paris."),
    ("  Paris.  ", "Paris."), ("The revised plan is good.", "The revised plan is good.")])
def test_clean_revision(text, want):
    assert clean_revision(text) == want
