"""The Jupyter kernel notebooks run in: always the interpreter that runs ``reproduce``.

A kernel name is only a lookup in Jupyter's search path; a ``python3`` kernelspec in the user's
home or the system can point at another Python without torch or sftvrl. So ``reproduce`` uses a
kernelspec named ``sftvrl`` whose command is ``sys.executable``, installed into ``sys.prefix``
(the venv) on first use, and checks that the name resolves to this interpreter.
"""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger(__name__)

KERNEL_NAME = "sftvrl"


class KernelError(RuntimeError):
    """No kernelspec runs notebooks in this interpreter; the message says how to add one."""


def _runs_here(name: str) -> bool:
    """Whether the kernelspec ``name`` starts this interpreter."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return False
    executable = spec.argv[0] if spec.argv else ""
    # jupyter_client replaces a bare "python" with sys.executable; a path must be this one
    # (compared unresolved: a venv's python is a symlink to the base interpreter).
    return executable in ("python", "python3") or os.path.abspath(executable) == os.path.abspath(
        sys.executable
    )


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Return a kernel name that runs this interpreter, installing ``name`` into the venv if needed."""
    if _runs_here(name):
        return name
    from ipykernel.kernelspec import install

    display = f"Python ({name})"
    try:
        path = install(prefix=sys.prefix, kernel_name=name, display_name=display)
    except PermissionError:
        path = install(user=True, kernel_name=name, display_name=display)
    logger.info("installed the Jupyter kernel %r for %s at %s", name, sys.executable, path)
    if not _runs_here(name):
        raise KernelError(
            f"the Jupyter kernel {name!r} does not run {sys.executable} (another kernelspec of "
            f"that name comes first on Jupyter's path); remove it (jupyter kernelspec remove "
            f"{name}) and run again"
        )
    return name


__all__ = ["KERNEL_NAME", "KernelError", "ensure_kernel"]
