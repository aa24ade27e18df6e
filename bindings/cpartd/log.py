# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""cpartd.log: Log, a directory of append-only segments (libpartd pd_log).

A store for shuffles with many keys: each handle appends its batches to a
segment of its own, so an append costs the same for 16 keys or 65,536
(File writes one file per key).  Handles in several threads and processes
may append to one directory at once; a get sees every append that
completed before it began.  The last handle to close after appending
compacts the directory (each key then one sequential range);
``compact()`` does it on demand.  The format: docs/log-format.md.
"""
from . import _cpartd
from .core import Interface
from .file import _DirStore

__all__ = ['Log']


class Log(_DirStore, _cpartd.Log, Interface):
    """Log(path=None, dir=None, fsync=False): a Log store in directory
    `path` (created with its parents if missing; an empty directory becomes
    a Log, a directory holding anything else is refused).  Without a path:
    a new ``tempfile.mkdtemp(suffix='.partd-log', dir=dir)``, removed when
    the object is collected or the process exits, as File's."""

    TEMP_SUFFIX = '.partd-log'

    def __init__(self, path=None, dir=None, fsync=False):
        self._fsync = bool(fsync)
        _cpartd.Log.__init__(self, self._take_path(path, dir),
                             fsync=self._fsync)

    def __reduce__(self):
        # Pickles to its path (as File): the copy opens a handle of its own
        # on the same directory and never removes it.
        return (_restore_log, (type(self), self.path, self._fsync))


def _restore_log(cls, path, fsync):
    return cls(path, fsync=fsync)
