"""codeahead's engine: index a workspace into a code graph and pack the context an agent needs.

Usable as a library with no MCP in sight: ``Workspace(root).index()``, then
``search``, ``context``, ``related``, ``record`` and ``task_state``.
"""

from indexer.workspace import Workspace, WorkspaceError

__all__ = ["Workspace", "WorkspaceError"]
