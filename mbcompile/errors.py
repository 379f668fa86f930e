"""Errors the compiler reports to users.

`SpecError` is bad input, or a failure of the environment or of an external tool
(a full disk, a missing `dot`): the CLI prints it on one line and exits with code 2.
Anything else escaping the compiler is an internal error (exit code 1).

Every part of a message line is cut to a readable length, so a 100 KB value or a
6,000-character path never floods a terminal.
"""

from __future__ import annotations

# Exit codes of the command line: success, a bug in mbcompile, bad input.
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
# `mbcompile check`: a generated file is out of date (as `ruff format --check`).
EXIT_OUT_OF_DATE = 1

# Longest file name, field path and message text in one line of an error; a line
# stays under ~600 characters whatever the input.
SOURCE_LIMIT, FIELD_LIMIT, MESSAGE_LIMIT = 120, 80, 360
MAX_LINES = 20  # problems listed at once


class SpecError(Exception):
    """Bad input, located as precisely as we can: `file:line: field.path: message`."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.field = field
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ""
        if self.source is not None:
            source = shorten_path(self.source, SOURCE_LIMIT)
            where = source if self.line is None else f"{source}:{self.line}"
        field = self.field and shorten(self.field, FIELD_LIMIT)
        parts = [p for p in (where, field) if p]
        return ": ".join([*parts, shorten(self.message, MESSAGE_LIMIT)])


class SpecErrors(SpecError):
    """Several located errors found in one pass, reported together (one line each,
    at most MAX_LINES of them)."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        # The first error's parts stand for the whole, as in a single error.
        first = errors[0] if errors else SpecError("invalid input")
        self.message, self.source = first.message, first.source
        self.line, self.field = first.line, first.field
        Exception.__init__(self, self.one_line())

    def one_line(self) -> str:  # the CLI prints each line
        lines = [e.one_line() for e in self.errors[:MAX_LINES]]
        if len(self.errors) > MAX_LINES:
            lines.append(f"... and {len(self.errors) - MAX_LINES} more problems")
        return "\n".join(lines)


def printable(text: str) -> str:
    """`text` on one line: whitespace runs become one space, and other control or
    invisible characters (which could fake or hide lines on a terminal) are escaped."""
    text = " ".join(str(text).split())
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def shorten(text: str, limit: int = 60) -> str:
    """A piece of user input quoted in a message, cut to a readable length."""
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten_path(path, limit: int = SOURCE_LIMIT) -> str:
    """A path quoted in a message: its start and its file name survive the cut."""
    text = printable(str(path))
    if len(text) <= limit:
        return text
    tail = limit * 2 // 3
    return text[: limit - tail - 1] + "…" + text[-tail:]
