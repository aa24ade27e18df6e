# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""partd.file: File, a directory with one file per key (libpartd pd_file).

Differences from partd 1.3 (all deliberate): keys are never written outside
the directory (partd writes ``'../x'`` there) and never share a file (partd
maps ``'x!y'`` and ``'xy'`` to one); the
lock is the same flock on <root>/.lock, so cpartd and partd processes
exclude each other and read each other's files.

Across machines: with CPARTD_SERVERS=tcp://HOST:PORT,... set, File(path)
gives a cpartd.fanout.ServerFile instead, the namespace named after this
host and path on a Fanout over those servers (bindings/README.md).  A File
unpickled on another host (by name) where its directory does not exist
is a MissingFile, whose every
use raises FileNotFoundError, instead of an empty new store (partd's,
losing the data written on the other host).
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


class _DirStore:
    """What File and Log share: a store in a directory, either given or a
    new temporary one (``tempfile.mkdtemp(suffix=TEMP_SUFFIX, dir=dir)``)
    removed when the object is collected or the process exits; leaving a
    ``with`` block drops the data and removes the directory, as partd's."""

    TEMP_SUFFIX = '.partd'

    def _take_path(self, path, dir):
        # Sets self.path (a new temporary directory when path is empty).
        if not path:
            path = tempfile.mkdtemp(suffix=self.TEMP_SUFFIX, dir=dir)
            cleanup_files.append(path)
            self._explicitly_given_path = False
        else:
            self._explicitly_given_path = True
        self.path = path
        return path

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


class File(_DirStore, CStore, _cpartd.File, Interface):
    """File(path=None, dir=None): a store in directory `path` (created with
    its parents if missing).  Without a path: a new
    ``tempfile.mkdtemp(suffix='.partd', dir=dir)``, removed when the object
    is collected or the process exits (``cleanup_files``)."""

    def __new__(cls, path=None, dir=None):
        if cls is File:
            from . import fanout
            servers = fanout.servers_from_env()
            if servers is not None:
                if not path:
                    path = tempfile.mkdtemp(suffix='.partd', dir=dir)
                    cleanup_files.append(path)
                return fanout.server_file(path, servers)
        return super().__new__(cls)

    def __init__(self, path=None, dir=None):
        _cpartd.File.__init__(self, self._take_path(path, dir))

    def __reduce__(self):
        # A File pickles to its path, as partd's; the copy never removes it.
        return (_restore_file, (type(self), self.path, _hostname()))

    def filename(self, key):
        return os.path.join(self.path, self._relname(key))


MISSING_DIRECTORY = (
    "cpartd: the store's directory %r (made on %s) is missing on this host "
    "(%s); dask's disk shuffle needs a shared filesystem or CPARTD_SERVERS "
    "(servers holding the store: see cpartd's README, 'Across machines')")


def _hostname():
    import socket
    return socket.gethostname()


def _restore_file(cls, path, host=None):
    # A File travels by its path and its host's name.  On another host
    # where that path is not a directory, the data written through it is
    # elsewhere, and making an empty store here would lose it without a
    # word.  On its own host a missing directory is made again, as partd
    # does (dask's bag groupby relies on it: its processes scheduler's child
    # removes the temporary directory it made when its File is collected,
    # before any data is appended, and the parent makes it again).
    if host is not None and host != _hostname() and not os.path.isdir(path):
        return MissingFile(cls, path, host)
    # Not cls(path): under CPARTD_SERVERS that would give a server store,
    # and this File's data is in its directory.
    f = _cpartd.File.__new__(cls)
    f.__init__(path)
    return f


class MissingFile(Interface):
    """What a File unpickles to where its directory does not exist: every
    use raises FileNotFoundError saying so.  (Raising in the unpickling
    itself would not reach the user of dask.distributed: a worker that
    cannot deserialize a dependency retries the transfer instead of failing
    the task.)  Pickles back to the File."""

    def __init__(self, cls, path, host):
        self._cls = cls
        self.path = path
        self.host = host
        self.closed = False
        Interface.__init__(self)

    def error(self):
        import errno
        return FileNotFoundError(
            errno.ENOENT, MISSING_DIRECTORY % (self.path, self.host,
                                               _hostname()),
            self.path)

    def __reduce__(self):
        return (_restore_file, (self._cls, self.path, self.host))

    def layer(self, rebuild, args):
        """A layer over this missing File (a C compressor, which needs a
        real store): it fails the same way when used, and pickles back to
        rebuild(*args)."""
        return MissingLayer(self, rebuild, args)

    def _fail(self, *args, **kwargs):
        raise self.error()

    append = _get = get = keys = delete = _delete = iset = _iset = drop = \
        _fail

    @property
    def lock(self):
        raise self.error()

    def close(self):
        self.closed = True

    def __exit__(self, *args):
        pass


class MissingLayer(MissingFile):
    """A layer over a MissingFile (MissingFile.layer): the same error."""

    def __init__(self, inner, rebuild, args):
        MissingFile.__init__(self, inner._cls, inner.path, inner.host)
        self.partd = inner
        self._rebuild = (rebuild, args)

    def __reduce__(self):
        return self._rebuild


def _remove_tree(path):
    with suppress(OSError):
        shutil.rmtree(path)


cleanup_files = list()


@atexit.register
def cleanup():
    for fn in cleanup_files:
        if os.path.exists(fn):
            shutil.rmtree(fn)
