"""codeahead's engine: index a workspace into a code graph and pack the context an agent needs.

Usable as a library with no MCP in sight: ``Workspace(root).index()``, then
``search``, ``context``, ``related``, ``record`` and ``task_state``.
"""

from __future__ import annotations

__all__ = ["Workspace", "WorkspaceError"]


def __getattr__(name: str):
    # Lazy, so ``import indexer.tokens`` (or any single stage) does not load the whole engine.
    if name in __all__:
        from indexer import workspace

        return getattr(workspace, name)
    raise AttributeError(f"module 'indexer' has no attribute {name!r}")
