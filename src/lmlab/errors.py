"""User-facing errors.

Anything a user can cause (a typo in a config, a bad data row, an unknown model) raises a
subclass of ``UserError``. The CLI prints its message without a traceback and exits with
``exit_code``; library callers can catch it like any exception.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by user input; the message says what to change."""

    exit_code = 1


class ConfigError(UserError):
    """A config problem (unknown key, wrong type, out of range). Exit code 2."""

    exit_code = 2

    def __init__(self, problems: list[str] | str, source: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        head = f"invalid config{f' ({source})' if source else ''}:"
        super().__init__("\n".join([head] + [f"  - {p}" for p in self.problems]))


class DataError(UserError):
    """A data problem, located by file, line (1-based) and field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.file, self.line, self.field = file, line, field
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        fld = f"field '{field}': " if field else ""
        super().__init__(f"{where}{fld}{message}")


class ModelRefError(UserError):
    """A model reference that cannot be resolved."""
