"""Parse stage: turn one source file into a ParsedFile, by language."""

from __future__ import annotations

from collections.abc import Callable

from indexer.parse.python import RecentTrees, parse_python
from indexer.types import ParsedFile

#: Extractor per language name: (path, source, recent trees or None) -> ParsedFile.
EXTRACTORS: dict[str, Callable[[str, bytes, RecentTrees | None], ParsedFile]] = {"python": parse_python}
#: Language per file suffix.
SUFFIXES: dict[str, str] = {".py": "python", ".pyi": "python"}


def language_of(path: str) -> str | None:
    """The language an extractor exists for, from the file suffix; None if unsupported."""
    dot = path.rfind(".")
    if dot < 0 or "/" in path[dot:]:
        return None
    return SUFFIXES.get(path[dot:].lower())


def parse_file(path: str, source: bytes, language: str = "python", trees: RecentTrees | None = None) -> ParsedFile:
    """Extract definitions, imports and references of ``path`` with its language's extractor.

    ``trees`` keeps the last trees parsed, so a file parsed again is parsed incrementally (same result).
    """
    extractor = EXTRACTORS.get(language)
    if extractor is None:
        raise ValueError(
            f"cannot parse {path}: no extractor for language {language!r}; "
            f"supported: {', '.join(sorted(EXTRACTORS))}"
        )
    return extractor(path, source, trees)
