"""Reading a user's YAML file: every problem named by file and line, in plain words.

The text comes from ``lmlab.textfile`` (a byte-order mark and CRLF line ends load the same as a
plain UTF-8 file; bytes that are not UTF-8 are named by line and byte). On top of PyYAML's safe
loader: a key given twice in one mapping is an error naming both lines (PyYAML keeps the last
one silently), and a tab where YAML wants spaces is said so, not "found character '\\t' that
cannot start any token". Every problem raises ``ConfigError`` whose message starts with
``file:line:``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from lmlab.errors import ConfigError, DataError
from lmlab.textfile import read_text


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key written twice in one mapping (merge keys ``<<`` may still
    be overridden, as YAML means them to be)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or \
                        not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key '{key}' is given twice (lines {seen[key]} and {line}); "
                                    "keep one", key_node.start_mark)
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load(path: str | Path):
    """The YAML document in ``path`` (``None`` for an empty file); ConfigError on any problem."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    if p.is_dir():
        raise ConfigError(f"config file {p} is a folder, not a YAML file")
    try:
        text = read_text(p)
    except DataError as err:
        raise ConfigError(str(err)) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        raise ConfigError(problem(err, str(p), text)) from None


def problem(err: yaml.YAMLError, file: str, text: str) -> str:
    """PyYAML's error as ``file:line: what`` (column too, where it helps)."""
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return f"{file}: not valid YAML: {err}"
    line, column = mark.line + 1, mark.column + 1
    what = getattr(err, "problem", None) or str(err)
    if "is given twice" in what:
        return f"{file}:{line}: {what}"
    if "'\\t'" in what:
        return f"{file}:{line}: {_tab(text, mark.line, mark.column)}"
    context = getattr(err, "context", None)
    ctx_mark = getattr(err, "context_mark", None)
    where = ""
    if context and ctx_mark is not None and ctx_mark.line != mark.line:
        where = f" ({context} that starts on line {ctx_mark.line + 1})"
    return f"{file}:{line}:{column}: not valid YAML: {what}{where}"


def _tab(text: str, line: int, column: int) -> str:
    lines = text.split("\n")
    row = lines[line] if line < len(lines) else ""
    if not row[:column].strip():  # only whitespace before the tab: it is indentation
        return "a tab in the indentation; YAML indents with spaces"
    return f"a tab at column {column + 1}; YAML separates with spaces"
