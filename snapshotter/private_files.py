"""Private files in the state directory: directories 0700, files 0600, no symlinks.

A directory or file found open to group or others is narrowed, with one warning naming
it. A symlink where the state directory, one of its subdirectories or one of its files
should be is refused with a ``StatePathError`` (a ``ConfigError``: the command stops with
exit status 2 and one line naming the path), so a planted link never receives a session
token. The one link accepted is the one systemd makes for ``StateDirectory=`` under
``DynamicUser=yes`` (``/var/lib/NAME -> private/NAME``, owned by root).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from pathlib import Path

from snapshotter.errors import ConfigError

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


class StatePathError(ConfigError):
    """The state directory cannot be used safely; one line naming the path."""

    def __init__(self, message: str):
        super().__init__([message])


def _symlinked_file(path: Path) -> StatePathError:
    return StatePathError(f"{path}: is a symlink; refusing to read or write it "
                          "(remove it: the program recreates the file)")


def _systemd_private_link(path: Path, st: os.stat_result) -> bool:
    """systemd's StateDirectory= link under DynamicUser=yes: root's ``NAME -> private/NAME``."""
    if st.st_uid != 0:
        return False
    try:
        target = os.readlink(path)
    except OSError:
        return False
    return target in (f"private/{path.name}", str(path.parent / "private" / path.name))


def _narrow(path: Path, mode: int, wanted: int, what: str) -> None:
    if mode & 0o077 == 0:
        return
    try:
        os.chmod(path, wanted)
    except OSError as exc:
        log.warning("%s: %s open to group/others (mode %04o) and could not be made private: %s",
                    path, what, mode & 0o777, exc.strerror or type(exc).__name__)
        return
    log.warning("%s: %s was open to group/others (mode %04o); set to %04o",
                path, what, mode & 0o777, wanted)


def private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) or check it: a real directory, narrowed to 0700."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        try:
            path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            st = os.lstat(path)
        except OSError as exc:
            raise StatePathError(f"{path}: cannot create the state directory: "
                                 f"{exc.strerror or type(exc).__name__}") from None
    except OSError as exc:
        raise StatePathError(f"{path}: cannot use the state directory: "
                             f"{exc.strerror or type(exc).__name__}") from None
    if stat.S_ISLNK(st.st_mode):
        if not _systemd_private_link(path, st):
            raise StatePathError(f"{path}: is a symlink; refusing to keep private files there "
                                 "(state_dir and its subdirectories must be real directories)")
        st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StatePathError(f"{path}: not a directory (state_dir must be a directory)")
    _narrow(path, st.st_mode, DIR_MODE, "directory")
    return path


def private_file_check(path: Path) -> None:
    """An existing file under the state directory: a regular file, narrowed to 0600.
    A missing file is fine (nothing to protect)."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StatePathError(f"{path}: cannot check the file: "
                             f"{exc.strerror or type(exc).__name__}") from None
    if stat.S_ISLNK(st.st_mode):
        raise _symlinked_file(path)
    if not stat.S_ISREG(st.st_mode):
        raise StatePathError(f"{path}: not a regular file (remove it: the program "
                             "recreates it)")
    _narrow(path, st.st_mode, FILE_MODE, "file")


def read_private_text(path: Path) -> str:
    """The text of a private file, never through a symlink; narrowed to 0600 when wider.
    Raises FileNotFoundError when missing, StatePathError for a symlink, OSError or
    UnicodeDecodeError when it cannot be read."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        if os.path.islink(path):
            raise _symlinked_file(path) from None
        raise
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise StatePathError(f"{path}: not a regular file (remove it: the program "
                                 "recreates it)")
        if st.st_mode & 0o077:
            _narrow(path, st.st_mode, FILE_MODE, "file")
        return fh.read().decode("utf-8")


def write_private_text(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a 0600 file holding ``text`` (its directory must
    exist: see private_dir). A symlink at ``path`` is refused, not followed."""
    path = Path(path)
    if os.path.islink(path):
        raise _symlinked_file(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    except OSError as exc:
        raise StatePathError(f"{path}: cannot write: "
                             f"{exc.strerror or type(exc).__name__}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), FILE_MODE)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StatePathError(f"{path}: cannot write: "
                             f"{exc.strerror or type(exc).__name__}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
