"""Errors a user can cause, each naming what is wrong and what to do.

CLIs catch `EdvrError` and print it without a traceback; everything else is a bug.
"""

from __future__ import annotations

from pathlib import Path


class EdvrError(Exception):
    """Base class for every error a user can cause (bad file, bad config, bad argument)."""

    def __init__(self, message: str, path: str | Path | None = None, hint: str | None = None):
        self.path = str(path) if path is not None else None
        self.hint = hint
        parts = []
        if self.path is not None:
            parts.append(f"{self.path}: ")
        parts.append(message)
        if hint:
            parts.append(f" ({hint})")
        super().__init__("".join(parts))


class InputError(EdvrError, ValueError):
    """A tensor or argument passed to a public function is of the wrong shape, dtype or device."""


class DatasetError(EdvrError):
    """Clips on disk, a packed LMDB or its meta.json are missing, malformed or inconsistent."""


class ConfigError(EdvrError):
    """A config file or override has an unknown key or a value out of range."""


class CheckpointError(EdvrError):
    """A checkpoint is missing, unreadable, or does not fit the model it is loaded into."""


class ExtensionError(EdvrError):
    """The compiled extension is missing or was built against another torch."""


def is_out_of_space(exc: BaseException) -> bool:
    """True when `exc` (or an exception it was raised from or while handling) is a full disk or quota:
    torch.save reports ENOSPC as a RuntimeError whose context is the OSError, py-lmdb only by its message."""
    import errno

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False
