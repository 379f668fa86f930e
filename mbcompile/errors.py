"""Errors the compiler reports to users.

`SpecError` is bad input: the CLI prints it on one line and exits with code 2.
Anything else escaping the compiler is an internal error (exit code 1).
"""

from __future__ import annotations

# Exit codes of the command line: success, a bug in mbcompile, bad input.
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2


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
            source = printable(self.source)
            where = source if self.line is None else f"{source}:{self.line}"
        parts = [p for p in (where, self.field and printable(self.field)) if p]
        return ": ".join([*parts, printable(self.message)])


class SpecErrors(SpecError):
    """Several located errors found in one pass, reported together."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        Exception.__init__(self, "\n".join(e.one_line() for e in errors))

    def one_line(self) -> str:  # pragma: no cover - the CLI prints each line
        return "\n".join(e.one_line() for e in self.errors)


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
