# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""partd.buffer: Buffer(fast, slow, available_memory=1e9).

When fast and slow are cpartd stores (Dict, File, a C Buffer, ...), the
Buffer is libpartd's pd_buffer (class CBuffer); with any other store (e.g.
a Python-level Encode) it is the reference's algorithm in Python (class
PyBuffer).  Both are instances of Buffer.  Unlike partd 1.3, get returns a
key's bytes in append order (what was spilled, then what fast still holds).
"""
from bisect import bisect
from collections import defaultdict
from heapq import nlargest
from itertools import accumulate
from operator import itemgetter
from threading import RLock

from . import _cpartd
from .core import CStore, Interface

__all__ = ['Buffer', 'keys_to_flush']


class Buffer(Interface):
    def __new__(cls, fast=None, slow=None, available_memory=1e9):
        if cls is Buffer:
            if (isinstance(fast, _cpartd.Store)
                    and isinstance(slow, _cpartd.Store)):
                cls = CBuffer
            else:
                cls = PyBuffer
        if issubclass(cls, _cpartd.Store):
            return _cpartd.Buffer.__new__(cls)
        return object.__new__(cls)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.drop()


class CBuffer(CStore, _cpartd.Buffer, Buffer):
    """A Buffer over two cpartd stores, in C.  It borrows them: they cannot
    be closed while it is open.  Collecting or closing it moves what fast
    holds into slow (libpartd's close).  Placement is partd's: a batch is
    appended, then the largest keys spill while memory_usage exceeds
    available_memory."""

    @property
    def lengths(self):
        """{key: bytes held in fast} (partd's ``lengths``; str keys as
        ``keys()`` gives them)."""
        fast = self.fast
        keys = fast.keys()
        return defaultdict(int, zip(keys, map(len, fast._get(keys))))

    def iset(self, key, value, lock=True, fsync=False):
        """partd's: once per key (``_iset_seen``), and through fast's own
        ``iset``, so a key fast has seen is not set again either."""
        if key in self._iset_seen:
            return
        fast = self.fast
        fseen = fast._iset_seen if isinstance(fast, CStore) else None
        if fseen is None or key not in fseen:
            self._iset(key, value, lock=lock, fsync=fsync)
            if fseen is not None:
                fseen.add(key)
        self._iset_seen.add(key)

    def drop(self):
        super().drop()
        for p in (self.fast, self.slow):  # dropped by libpartd with it
            if isinstance(p, CStore):
                p._iset_seen.clear()

    def __reduce__(self):
        return (_restore_buffer,
                (Buffer, self.fast, self.slow, self.available_memory))


class PyBuffer(Buffer):
    """The reference's Buffer for stores that are not cpartd's."""

    def __init__(self, fast, slow, available_memory=1e9):
        for name, p in (('fast', fast), ('slow', slow)):
            if not all(hasattr(p, m) for m in ('append', 'get', 'delete')):
                raise TypeError('cpartd: Buffer %s must be a store, not %s'
                                % (name, type(p).__name__))
        self.lock = RLock()
        self.fast = fast
        self.slow = slow
        self.available_memory = available_memory
        self.lengths = defaultdict(int)
        self.memory_usage = 0
        Interface.__init__(self)

    def __getstate__(self):
        return {'fast': self.fast,
                'slow': self.slow,
                'memory_usage': self.memory_usage,
                'lengths': self.lengths,
                'available_memory': self.available_memory}

    def __setstate__(self, state):
        Interface.__setstate__(self, state)
        self.lock = RLock()
        self.__dict__.update(state)

    def __reduce__(self):
        return (_new_pybuffer, (type(self),), self.__getstate__())

    def append(self, data, lock=True, **kwargs):
        if lock:
            self.lock.acquire()
        try:
            for k, v in data.items():
                self.lengths[k] += len(v)
                self.memory_usage += len(v)
            self.fast.append(data, lock=False, **kwargs)

            while self.memory_usage > self.available_memory:
                keys = keys_to_flush(self.lengths, 0.1, maxcount=20)
                self.flush(keys)
        finally:
            if lock:
                self.lock.release()

    def _get(self, keys, lock=True, **kwargs):
        if lock:
            self.lock.acquire()
        try:
            slow = self.slow.get(keys, lock=False)
            fast = self.fast.get(keys, lock=False)
            return [s + f for s, f in zip(slow, fast)]
        finally:
            if lock:
                self.lock.release()

    def _iset(self, key, value, lock=True):
        if lock:
            self.lock.acquire()
        try:
            self.fast.iset(key, value, lock=False)
        finally:
            if lock:
                self.lock.release()

    def _delete(self, keys, lock=True):
        if lock:
            self.lock.acquire()
        try:
            self.fast.delete(keys, lock=False)
            self.slow.delete(keys, lock=False)
            for key in keys:
                self.memory_usage -= self.lengths.pop(key, 0)
        finally:
            if lock:
                self.lock.release()

    def drop(self):
        self._iset_seen.clear()
        self.fast.drop()
        self.slow.drop()
        self.lengths.clear()
        self.memory_usage = 0

    def flush(self, keys=None, block=None):
        """Move keys (all when None) from fast to slow."""
        if keys is None:
            keys = list(self.lengths)
        self.slow.append(dict(zip(keys, self.fast.get(keys))))
        self.fast.delete(keys)
        for key in keys:
            self.memory_usage -= self.lengths.pop(key, 0)


def _new_pybuffer(cls):
    return object.__new__(cls)


def _restore_buffer(cls, fast, slow, available_memory):
    """Rebuild a C Buffer: what the pickled fast store held is appended again
    so that the new Buffer counts it."""
    held = {}
    if isinstance(fast, _cpartd.Store):
        keys = fast.keys()
        held = dict(zip(keys, fast._get(keys)))
        fast.drop()
    b = cls(fast, slow, available_memory)
    if held:
        b.append(held)
    return b


def keys_to_flush(lengths, fraction=0.1, maxcount=100000):
    """ Which keys to remove

    >>> lengths = {'a': 20, 'b': 10, 'c': 15, 'd': 15,
    ...            'e': 10, 'f': 25, 'g': 5}
    >>> keys_to_flush(lengths, 0.5)
    ['f', 'a']
    """
    top = nlargest(max(len(lengths) // 2, 1), lengths.items(),
                   key=itemgetter(1))
    total = sum(lengths.values())
    cutoff = min(maxcount, max(1,
                 bisect(list(accumulate(v for _, v in top)),
                        total * fraction)))
    result = [k for k, v in top[:cutoff]]
    assert result
    return result
