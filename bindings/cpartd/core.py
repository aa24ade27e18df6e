# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""partd.core: the Interface every store shares, and partd's key-to-name
helpers (token, escape_filename, filename).

The helpers are the reference's string functions, unchanged.  Note that a
cpartd File does not name its files with them for every key: keys the
reference would store unsafely (``'../x'``, ``'x!y'``, ``'.lock'``, non-ASCII)
are escaped injectively (see docs/file-layout.md); ``File.filename(key)``
gives the real name.
"""
import os
import string

from .utils import nested_get, flatten

__all__ = ['Interface', 'CStore', 'token', 'escape_filename', 'filename', 'valid_chars']

# http://stackoverflow.com/questions/295135/turn-a-string-into-a-valid-filename-in-python
valid_chars = "-_.() " + string.ascii_letters + string.digits + os.path.sep


def escape_filename(fn):
    """ Escape text so that it is a valid filename

    >>> escape_filename('Foo!bar?')
    'Foobar'
    """
    return ''.join(filter(valid_chars.__contains__, fn))


def filename(path, key):
    return os.path.join(path, escape_filename(token(key)))


def token(key):
    """
    >>> token('hello')
    'hello'
    >>> token(('hello', 'world'))  # doctest: +SKIP
    'hello/world'
    """
    if isinstance(key, str):
        return key
    elif isinstance(key, tuple):
        return os.path.join(*map(token, key))
    else:
        return str(key)


class Interface:
    """The behaviour shared by every store.  The C stores (File, Dict, the C
    Buffer) implement these methods in C and inherit this class so that
    ``isinstance(p, cpartd.core.Interface)`` holds; the Python-level stores
    (Encode, Numpy, ...) use it as partd's."""

    def __init__(self):
        self._iset_seen = set()

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._iset_seen = set()

    def iset(self, key, value, **kwargs):
        if key in self._iset_seen:
            return
        else:
            self._iset(key, value, **kwargs)
            self._iset_seen.add(key)

    def __enter__(self):
        return self

    def __exit__(self, type, value, traceback):
        self.drop()

    def iget(self, key):
        return self._get([key], lock=False)[0]

    def get(self, keys, **kwargs):
        if not isinstance(keys, list):
            return self.get([keys], **kwargs)[0]
        elif any(isinstance(key, list) for key in keys):  # nested case
            flatkeys = list(flatten(keys))
            result = self.get(flatkeys, **kwargs)
            return nested_get(keys, dict(zip(flatkeys, result)))
        else:
            return self._get(keys, **kwargs)

    def delete(self, keys, **kwargs):
        if not isinstance(keys, list):
            return self._delete([keys], **kwargs)
        else:
            return self._delete(keys, **kwargs)

    def attempt(self, writer, attempt):
        """Attempts need a C store over a Log (Log, Compressed(Log), a
        Buffer whose slow store is one...); a Python-level store encoding
        values itself has none."""
        raise NotImplementedError(
            'cpartd: %s stores have no attempts (they need a Log '
            'underneath, reached through C stores: Log, a compressor over a '
            'Log, a Buffer over one)' % type(self).__name__)

    def pop(self, keys, **kwargs):
        """get then delete, under the store's lock.  (partd's pop reaches
        for self.partd.lock, which only wrappers have.)"""
        with self.lock:
            result = self.get(keys, lock=False)
            self.delete(keys if isinstance(keys, list) else [keys],
                        lock=False)
        return result


class CStore:
    """What partd's Interface gives every store, for the C stores (Dict,
    File, the C Buffer), which inherit it first: ``_iset_seen``, the set of
    keys ``iset`` has written on this handle (cleared by ``drop``, empty in
    an unpickled copy), consulted and filled as partd's ``iset`` does."""

    @property
    def _iset_seen(self):
        seen = self.__dict__.get('_iset_seen_keys')
        if seen is None:
            seen = self.__dict__['_iset_seen_keys'] = set()
        return seen

    @_iset_seen.setter
    def _iset_seen(self, value):
        self.__dict__['_iset_seen_keys'] = value

    def iset(self, key, value, lock=True, fsync=False):
        """Set key to value once: a key already in ``_iset_seen`` is left
        alone (partd's idempotent set)."""
        seen = self._iset_seen
        if key in seen:
            return
        self._iset(key, value, lock=lock, fsync=fsync)
        seen.add(key)

    def drop(self):
        super().drop()
        self._iset_seen.clear()

