"""Dotted module names from file paths.

A file's module name follows the chain of ``__init__.py`` packages above it,
the way Python itself would import it from the package's parent folder:
``django/db/models/base.py`` -> ``django.db.models.base`` when ``django/``,
``django/db/`` and ``django/db/models/`` are packages; a folder without ``__init__.py`` inside a
package is a namespace portion of it (``flask/sansio/app.py`` -> ``flask.sansio.app``). A file
outside any package is a top-level module named by its stem.

A workspace that is itself a package (``-w src/flask``, whose ``__init__.py`` sits at the root) names its
modules from the folder's name, as its code imports them: ``flask.app``, not ``app``, or no
``from flask.app import ...`` in it would resolve.
"""

from __future__ import annotations

from collections.abc import Iterable

_INIT = "__init__"


def _strip_suffix(name: str) -> str:
    for suffix in (".pyi", ".py"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def module_names(paths: Iterable[str], root_name: str = "") -> dict[str, str]:
    """Map each ``.py`` path (POSIX, workspace-relative) to its dotted module name; ``root_name`` is the
    workspace folder's name, the package name when the root holds an ``__init__.py``."""
    paths = list(paths)
    packages = {p.rsplit("/", 1)[0] if "/" in p else "" for p in paths
                if p.rsplit("/", 1)[-1] in ("__init__.py", "__init__.pyi")}
    root_package = root_name if "" in packages and root_name.isidentifier() else ""
    inside: dict[str, bool] = {}

    def in_package(folder: str) -> bool:
        """A package, or a folder without ``__init__.py`` below one: a namespace portion Python imports
        as ``pkg.folder`` (Flask's ``flask/sansio/``)."""
        found = inside.get(folder)
        if found is None:
            parent = folder.rsplit("/", 1)[0] if "/" in folder else ""
            found = inside[folder] = folder in packages or (in_package(parent) if parent else "" in packages)
        return found

    names: dict[str, str] = {}
    for path in paths:
        parts = path.split("/")
        stem = _strip_suffix(parts[-1])
        folders = parts[:-1]
        chain: list[str] = []
        # Walk up while the containing folder is a package, or a namespace folder inside one.
        while folders and in_package("/".join(folders)):
            chain.append(folders[-1])
            folders = folders[:-1]
        if root_package and not folders:  # the chain reached the root, itself a package
            chain.append(root_package)
        chain.reverse()
        if stem != _INIT:
            chain.append(stem)
        names[path] = ".".join(chain) if chain else (parts[-2] if len(parts) > 1 else stem)
    return names


def package_of(module: str, path: str) -> str:
    """The package a relative import in this file is relative to."""
    is_init = _strip_suffix(path.rsplit("/", 1)[-1]) == _INIT
    if is_init:
        return module
    return module.rsplit(".", 1)[0] if "." in module else ""


def absolute_module(package: str, module: str, level: int) -> str:
    """Resolve ``from {'.' * level}{module} import ...`` inside ``package``."""
    if level == 0:
        return module
    base = package.split(".") if package else []
    if level > 1:
        base = base[: len(base) - (level - 1)] if level - 1 <= len(base) else []
    parts = [p for p in base if p] + ([module] if module else [])
    return ".".join(parts)
