"""Writing a benchmark's markdown table into the README between its two markers.

Each benchmark owns a block ``<!-- bench_<name>:start -->`` ... ``<!-- bench_<name>:end -->``;
``check_markers`` runs before measuring so a missing block fails at once, not after minutes.
"""

from __future__ import annotations

from pathlib import Path


def _span(path: Path, name: str) -> tuple[str, int, int]:
    """The README's text and where the table goes; exits with a clear message when it cannot."""
    start_marker, end_marker = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if not path.is_file():
        raise SystemExit(f"{name}: {path} does not exist; nothing written")
    text = path.read_text(encoding="utf-8")
    start = text.find(start_marker)
    end = text.find(end_marker, start + len(start_marker)) if start >= 0 else -1
    if start < 0 or end < 0:
        raise SystemExit(
            f"{name}: {path} lacks the markers {start_marker} ... {end_marker} (in that order); "
            "add them where the table should go. Nothing written."
        )
    return text, start + len(start_marker), end


def check_markers(path: Path, name: str) -> None:
    """Fail now (SystemExit) if ``path`` cannot take the table of benchmark ``name``."""
    _span(path, name)


def write_table(path: Path, name: str, table: str) -> None:
    """Replace what lies between benchmark ``name``'s markers in ``path``; refuse without them."""
    text, start, end = _span(path, name)
    path.write_text(text[:start] + "\n" + table + "\n" + text[end:], encoding="utf-8")
