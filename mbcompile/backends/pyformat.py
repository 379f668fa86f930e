"""Emit Python calls the way `ruff format` would lay them out.

Generated files must pass `ruff format --check`, but the compiler does not depend on
ruff, so the few layouts our templates produce are reproduced here: a call that fits
on its line stays there; a layer called on its input (`layers.Conv2D(...)(x)`) whose
construction still fits splits the call on `x`; otherwise its arguments move to one
indented line; if that is still too long, one argument per line with a trailing
comma.
"""

from __future__ import annotations

import re

LINE_LENGTH = 88


def split_args(text: str) -> list[str]:
    """Split `a, (b, c), "d,e"` at top-level commas."""
    args, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    tail = text[start:].strip()
    if tail:
        args.append(tail)
    return args


def call(indent: int, head: str, args: str, tail: str = "", comment: str = "") -> str:
    """`head(args)tail  # comment` at `indent`, wrapped like ruff format does.

    `head` is everything up to the opening parenthesis (e.g. `x = conv(`),
    `tail` what follows the closing one (e.g. `,` inside a list).
    """
    pad = " " * indent
    note = f"  # {comment}" if comment else ""
    parts = split_args(args)
    one_line = f"{pad}{head}{', '.join(parts)}){tail}{note}"
    if len(one_line) <= LINE_LENGTH or not parts:
        return one_line
    chained = re.fullmatch(r"\((\w+)\)", tail)  # `layer(...)(x)`: split `(x)` first
    first = f"{pad}{head}{', '.join(parts)})("
    if chained and len(first) <= LINE_LENGTH:
        return f"{first}\n{pad}    {chained[1]}\n{pad}){note}"
    inner = " " * (indent + 4)
    joined = f"{inner}{', '.join(parts)}"
    if len(joined) <= LINE_LENGTH:
        return f"{pad}{head}\n{joined}\n{pad}){tail}{note}"
    lines = "\n".join(f"{inner}{p}," for p in parts)
    return f"{pad}{head}\n{lines}\n{pad}){tail}{note}"
