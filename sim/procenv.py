"""Hide secrets from this process's own environment, as other processes can read it.

Every agent's shell is a child of the sim process and runs as the same user, so
`cat /proc/$PPID/environ` would show the environment sim was started with, API key included:
agents get a scrubbed environment, but the kernel shows the parent's original block, and
`os.environ.pop` does not change it (unsetenv only unlinks the pointer). So the CLI, once it
has copied the environment it needs, overwrites the values of secret variables in place in that
block and unsets them. Nothing in the standard library or our dependencies does this, hence
the few lines of ctypes. It is defence in depth, not isolation: a process of the same user can
still read sim's memory with ptrace; only a separate user per agent stops that.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable


def hide_from_children(names: Iterable[str]) -> list[str]:
    """Blank the values of `names` in /proc/self/environ and remove them from os.environ.
    Returns the names hidden. Call after copying what the process needs from os.environ."""
    wanted = {name.encode() + b"=" for name in names if name in os.environ}
    hidden: list[str] = []
    try:
        libc = ctypes.CDLL(None)
        environ = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
    except (OSError, ValueError):  # not glibc-like: nothing to blank
        environ = None
    i = 0
    while environ is not None and environ[i]:
        address = environ[i]
        entry = ctypes.string_at(address)
        prefix = next((w for w in wanted if entry.startswith(w)), None)
        if prefix is not None:
            ctypes.memset(address + len(prefix), 0, len(entry) - len(prefix))
            hidden.append(prefix[:-1].decode())
        i += 1
    for prefix in wanted:
        os.environ.pop(prefix[:-1].decode(), None)
    return hidden
