"""Opening a file a user named as a regular file only: a pipe, device or socket is refused unopened (its status
read first), and the file is opened without blocking (a FIFO swapped in after that look must not hang the
reader), then checked again on the open file itself. Imports only the standard library."""
from __future__ import annotations

import os
import stat
from typing import BinaryIO


def open_regular(path: str | os.PathLike) -> tuple[BinaryIO, os.stat_result] | None:
    """(the file opened for binary reading, unbuffered; its status) when ``path`` is a regular file (links
    followed), else None (a pipe, a device, a folder: nothing of it is read). The caller closes the file.

    Raises:
        OSError: the file cannot be opened (missing, no permission...).
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        return None
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            os.close(descriptor)
            return None
        return os.fdopen(descriptor, "rb", buffering=0), status
    except BaseException:
        try:
            os.close(descriptor)
        except OSError:
            pass
        raise
