"""Work functions for the decode-pool tests; a module of its own so worker processes import it."""

from __future__ import annotations

import os
import time


def misbehave(item):
    """Twice the item, or crash / hang / exhaust memory / raise as the item says."""
    if item == "abort":
        os.abort()
    if item == "hang":
        time.sleep(3600)
    if item == "oom":
        return len(bytearray(2 << 30))  # 2 GiB: within reach unless RLIMIT_AS holds
    if item == "raise":
        raise ValueError("bad item")
    if item == "kill":
        os.kill(os.getpid(), 9)
    if item == "exit":
        os._exit(3)
    return item * 2


def identity(item):
    return item
