# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""partd.encode: Encode(encode, decode, join, partd=None).

Each appended value is encoded, then framed (8-byte little-endian length +
payload) and appended to the inner store; get splits a key's bytes into
frames, decodes each and joins them.  The format is partd's, so either
implementation reads what the other wrote.  Over a cpartd store the frames
are appended without copying the payloads (_append_framed), and split
without copying (memoryviews).  A last frame cut short (a writer killed
mid-append) is left out instead of failing the whole key.
"""
from . import _cpartd
from .core import Interface
from .file import File

__all__ = ['Encode']


class _Wrapping:
    """What the layers over an inner store (self.partd) written in Python
    share, as partd's: a File by default, and drop, lock and the end of a
    ``with`` block passed to the inner store."""

    @staticmethod
    def _inner(partd):
        # The store to wrap: a new File when not given or given a path.
        if not partd or isinstance(partd, str):
            partd = File(partd)
        return partd

    def drop(self):
        return self.partd.drop()

    @property
    def lock(self):
        return self.partd.lock

    def __exit__(self, *args):
        self.drop()
        self.partd.__exit__(*args)


class Encode(_Wrapping, Interface):
    def __init__(self, encode, decode, join, partd=None):
        self.partd = self._inner(partd)
        self.encode = encode
        self.decode = decode
        self.join = join
        Interface.__init__(self)

    def __getstate__(self):
        return self.__dict__

    __setstate__ = Interface.__setstate__

    def append(self, data, **kwargs):
        encode = self.encode
        data = {k: encode(v) for k, v in data.items()}
        inner = self.partd
        if isinstance(inner, _cpartd.Store):
            inner._append_framed(data, **kwargs)
        else:
            frame = _cpartd.frame
            inner.append({k: frame(v) for k, v in data.items()}, **kwargs)

    def _raw(self, keys, **kwargs):
        """The inner store's bytes for each key: memoryviews over one
        result when it is a cpartd store (no copy)."""
        inner = self.partd
        if isinstance(inner, _cpartd.Store):
            return inner._get_views(keys, **kwargs)
        return inner._get(keys, **kwargs)

    def _get(self, keys, **kwargs):
        raw = self._raw(keys, **kwargs)
        decode, join, split = self.decode, self.join, _cpartd.framesplit
        return [join([decode(f) for f in split(chunk, torn='drop')])
                for chunk in raw]

    def delete(self, keys, **kwargs):
        return self.partd.delete(keys, **kwargs)

    def _iset(self, key, value, **kwargs):
        return self.partd.iset(key, _cpartd.frame(self.encode(value)),
                               **kwargs)

