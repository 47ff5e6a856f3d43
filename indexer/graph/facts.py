"""What resolution needs to know about one file, stored so it can be re-resolved without re-parsing.

When another file changes, the files whose references may now resolve
differently are resolved again from these facts (a compact msgpack blob per
file), not from disk: the disk may already hold a newer version.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from indexer.modules import absolute_module, package_of
from indexer.testpaths import is_test_path
from indexer.types import Definition, ParsedFile


@dataclass(frozen=True, slots=True)
class FileFacts:
    """Resolution inputs of one file: its definitions' shape, imports (absolute) and references."""

    file_id: int
    path: str
    module: str
    module_node: int
    def_ids: tuple[int, ...]  # node id of each definition, same order as ParsedFile.definitions
    def_kinds: tuple[str, ...]
    def_names: tuple[str, ...]
    def_parents: tuple[int, ...]
    bases: tuple[tuple[int, tuple[str, ...]], ...]  # (definition index, raw base expressions)
    imports: tuple[tuple[str, str | None, str, int, int], ...]  # (abs module, name, alias, line, scope)
    references: tuple[tuple[str, str, int, int], ...]  # (kind, target, line, scope)
    is_test_file: bool
    fixtures: tuple[tuple[int, str], ...] = ()  # (definition index, name) of each pytest fixture defined
    requests: tuple[tuple[int, str], ...] = ()  # (definition index, fixture name) a test or fixture asks for

    def to_blob(self) -> bytes:
        """Compact serialisation for the ``file_facts`` table (ids are stored as rows, not here)."""
        # msgpack writes tuples as arrays: the fields go in as they are, without copies.
        return msgpack.packb(
            [self.def_kinds, self.def_names, self.def_parents, self.bases, self.imports, self.references,
             self.fixtures, self.requests],
            use_bin_type=True,
        )

    @classmethod
    def from_blob(
        cls, blob: bytes, *, file_id: int, path: str, module: str, module_node: int, def_ids: tuple[int, ...]
    ) -> "FileFacts":
        # Arrays come back as tuples: no Python-level copy of every reference (the writer reads thousands).
        # A blob written before fixtures were read has six fields: the index re-parses it (``GRAPH_RULES``).
        kinds, names, parents, bases, imports, refs, *pytest = msgpack.unpackb(blob, raw=False, use_list=False)
        fixtures, requests = pytest if pytest else ((), ())
        return cls(
            file_id=file_id,
            path=path,
            module=module,
            module_node=module_node,
            def_ids=def_ids,
            def_kinds=kinds,
            def_names=names,
            def_parents=parents,
            bases=bases,
            imports=imports,
            references=refs,
            is_test_file=is_test_path(path),
            fixtures=fixtures,
            requests=requests,
        )


def facts_of(
    parsed: ParsedFile, *, file_id: int, module: str, module_node: int, def_ids: tuple[int, ...]
) -> FileFacts:
    """Facts of a freshly parsed file: relative imports made absolute against its package."""
    package = package_of(module, parsed.path)
    imports = tuple(
        (absolute_module(package, imp.module, imp.level), imp.name, imp.alias, imp.line, imp.scope)
        for imp in parsed.imports
    )
    defs: tuple[Definition, ...] = parsed.definitions
    return FileFacts(
        file_id=file_id,
        path=parsed.path,
        module=module,
        module_node=module_node,
        def_ids=def_ids,
        def_kinds=tuple(d.kind.value for d in defs),
        def_names=tuple(d.name for d in defs),
        def_parents=tuple(d.parent for d in defs),
        bases=tuple((i, d.bases) for i, d in enumerate(defs) if d.bases),
        imports=imports,
        references=parsed.references,  # named (kind, target, line, scope) tuples
        is_test_file=is_test_path(parsed.path),
        fixtures=tuple((i, d.fixture_name) for i, d in enumerate(defs) if d.fixture_name),
        requests=tuple((i, name) for i, d in enumerate(defs) for name in d.fixtures),
    )

