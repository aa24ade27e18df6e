"""partd.file: File, a directory with one file per key (libpartd pd_file).

Differences from partd 1.3 (all deliberate): keys are never written outside
the directory (partd writes ``'../x'`` there) and never share a file (partd
maps ``'x!y'`` and ``'xy'`` to one); the
lock is the same flock on <root>/.lock, so cpartd and partd processes
exclude each other and read each other's files.
"""
import atexit
from contextlib import suppress
import os
import shutil
import tempfile

from . import _cpartd
from .core import CStore, Interface, escape_filename, token, valid_chars
from .core import filename  # noqa: F401  (partd.file.filename)

__all__ = ['File', 'cleanup_files', 'cleanup', 'filename', 'escape_filename',
           'token', 'valid_chars']


class File(CStore, _cpartd.File, Interface):
    """File(path=None, dir=None): a store in directory `path` (created with
    its parents if missing).  Without a path: a new
    ``tempfile.mkdtemp(suffix='.partd', dir=dir)``, removed when the object
    is collected or the process exits (``cleanup_files``)."""

    def __init__(self, path=None, dir=None):
        if not path:
            path = tempfile.mkdtemp(suffix='.partd', dir=dir)
            cleanup_files.append(path)
            self._explicitly_given_path = False
        else:
            self._explicitly_given_path = True
        self.path = path
        _cpartd.File.__init__(self, path)

    def __reduce__(self):
        # A File pickles to its path, as partd's; the copy never removes it.
        return (_restore_file, (type(self), self.path))

    def filename(self, key):
        return os.path.join(self.path, self._relname(key))

    def __enter__(self):
        return self

    def __exit__(self, *args):
        # partd: drop, then remove the (now empty) directory.
        if not self.closed:
            self.drop()
            with suppress(ValueError):  # still used by a Buffer: keep open
                self.close()
        _remove_tree(self.path)

    def __del__(self):
        if getattr(self, '_explicitly_given_path', True):
            return
        with suppress(Exception):
            self.close()
        _remove_tree(self.path)


def _restore_file(cls, path):
    return cls(path)


def _remove_tree(path):
    with suppress(OSError):
        shutil.rmtree(path)


cleanup_files = list()


@atexit.register
def cleanup():
    for fn in cleanup_files:
        if os.path.exists(fn):
            shutil.rmtree(fn)
