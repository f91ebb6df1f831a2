"""Files a report writes (a table's markdown, its chart, the diagnostics plot): each says how many
results it shows, and an existing file is replaced only by one that shows at least as many.

So a report made from a fresh or smaller run store never clobbers a fuller table, and a report
with no result of its own writes nothing. The count is written into the file where it can be read
back: a comment line at the end of a markdown file, a text chunk of a PNG. A file without a count
(written by hand, or by a version before counts) is never replaced: the user moves it away first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

COUNT_KEY = "hardneg-bench results"
"""The name of the count: the markdown comment's label and the PNG text chunk's keyword."""
_MARKDOWN_COUNT = re.compile(rf"^<!-- {COUNT_KEY}: (\d+) -->$", re.MULTILINE)


def markdown_with_count(text: str, count: int) -> str:
    """``text`` with its count as a last, invisible line."""
    return f"{text.rstrip()}\n\n<!-- {COUNT_KEY}: {count} -->\n"


def png_metadata(count: int) -> dict[str, str]:
    """The ``metadata`` for matplotlib's ``savefig`` that records the count in the PNG."""
    return {COUNT_KEY: str(count)}


def results_in(path: Path) -> int | None:
    """The count ``path`` records, or None if it records none (or cannot be read)."""
    try:
        if path.suffix == ".png":
            from PIL import Image  # matplotlib's own dependency

            with Image.open(path) as image:
                value = image.text.get(COUNT_KEY)
            return int(value) if value is not None and value.isdigit() else None
        found = _MARKDOWN_COUNT.findall(path.read_text(errors="replace"))
    except (OSError, ValueError, SyntaxError):  # PIL raises SyntaxError on a damaged PNG
        return None
    return int(found[-1]) if found else None


@dataclass(frozen=True)
class Outcome:
    path: Path
    written: bool
    message: str
    """One line for the user: where it wrote, or why it kept the file that was there."""


def write_unless_fewer(path: Path, count: int, write: Callable[[Path], None]) -> Outcome:
    """``write(path)`` (which must write atomically and record ``count``) unless ``count`` is 0,
    or ``path`` exists and records more results than ``count`` or records none."""
    if count == 0:
        return Outcome(path, False, f"nothing written to {path}: no result of its own")
    if path.exists():
        existing = results_in(path)
        if existing is None:
            return Outcome(path, False, f"kept {path}: it does not record how many results it shows (written by hand or by an older version); move it away to replace it")
        if existing > count:
            return Outcome(path, False, f"kept {path}: it shows {existing} results, this report {count}")
    write(path)
    return Outcome(path, True, f"wrote {path} ({count} result{'s' if count != 1 else ''})")


def save_figure(figure, path: Path, count: int) -> None:
    """Save a matplotlib figure as a PNG recording ``count``, atomically, and close it."""
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(tmp, dpi=110, bbox_inches="tight", metadata=png_metadata(count))
        tmp.replace(path)
    finally:
        plt.close(figure)
        tmp.unlink(missing_ok=True)
