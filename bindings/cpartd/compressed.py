# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""partd.compressed: ZLib, BZ2, Snappy, Blosc (partd's) and LZ4, Zstd
(cpartd's), each ``NAME(partd=None, level=None)``.

Over a cpartd store (File, Dict, Buffer, ...) the codec runs in C with the
GIL released: libpartd's Encode layer (pd_compress_open), whose frames are
byte-for-byte partd's for zlib, bz2, snappy and blosc; it leaves torn
frames out on get (partd 1.3 cannot read a key past a torn frame, which a
writer killed during an append leaves).  Over any other store, ZLib,
BZ2, Snappy and Blosc are partd's Python ``Encode`` with that module's
compress/decompress (as partd: a `partial`-like factory, so
``isinstance(p, Encode)`` holds either way).
"""
from contextlib import suppress

from . import _cpartd
from .encode import Encode
from .file import File

__all__ = []


def bytes_concat(L):
    return b''.join(L)


class CEncode(_cpartd.Compressed, Encode):
    """A libpartd Encode layer with a built-in codec over a cpartd
    store (borrowed: the inner store stays usable and open).

    Over a store that waits for its servers instead of fsyncing (a
    ServerFile, File(path) under CPARTD_SERVERS: its Clients cannot forward
    PD_FSYNC), fsync=True writes without the flag, then waits for every
    server's reply (the store's server_sync()), as the store itself does."""

    def __init__(self, codec, partd, level=None):
        _cpartd.Compressed.__init__(
            self, codec, partd,
            _cpartd.LEVEL_DEFAULT if level is None else level)
        self.codec = codec
        self.level = level

    def __reduce__(self):
        return (_restore, (self.codec, self.partd, self.level))

    def _write(self, method, args, kwargs):
        sync = getattr(self.partd, 'server_sync', None)
        if sync is None or not kwargs.get('fsync'):
            return method(self, *args, **kwargs)
        kwargs = dict(kwargs, fsync=False)
        out = method(self, *args, **kwargs)
        sync()
        return out

    def append(self, data, **kwargs):
        return self._write(_cpartd.Compressed.append, (data,), kwargs)

    def _append_framed(self, data, **kwargs):
        return self._write(_cpartd.Compressed._append_framed, (data,), kwargs)

    def iset(self, key, value, **kwargs):
        return self._write(_cpartd.Compressed.iset, (key, value), kwargs)

    def _iset(self, key, value, **kwargs):
        return self._write(_cpartd.Compressed._iset, (key, value), kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        inner = self.partd
        self.drop()
        self.close()
        inner.__exit__(*args)


def _restore(codec, partd, level):
    # A File unpickled on a host without its directory is a MissingFile:
    # the compressor over it fails the same way when used (not here: an
    # error in the unpickling never reaches a dask.distributed user).
    from .file import MissingFile
    if isinstance(partd, MissingFile):
        return partd.layer(_restore, (codec, partd, level))
    return CEncode(codec, partd, level)


_C_CODECS = set(_cpartd.codecs())


def _factory(name, codec, py=None):
    """NAME(partd=None, level=None): C over cpartd stores, else Python."""
    def make(partd=None, level=None):
        if not partd or isinstance(partd, str):
            partd = File(partd)
        if codec in _C_CODECS and isinstance(partd, _cpartd.Store):
            return CEncode(codec, partd, level)
        if py is None:
            raise TypeError('cpartd.%s needs a cpartd store (File, Dict, '
                            'Buffer...), not %s' % (name, type(partd).__name__))
        compress, decompress = py
        return Encode(compress, decompress, bytes_concat, partd)
    make.__name__ = make.__qualname__ = name
    make.__doc__ = ('%s(partd=None, level=None): an Encode store compressing '
                    'each value with %s.' % (name, codec))
    globals()[name] = make
    __all__.append(name)


with suppress(ImportError, AttributeError):
    # python-snappy (not SnapPy): it has compress and decompress.
    import snappy
    _snappy = (snappy.compress, snappy.decompress)
if 'snappy' in _C_CODECS or '_snappy' in globals():
    _factory('Snappy', 'snappy', globals().get('_snappy'))

import zlib  # noqa: E402
_factory('ZLib', 'zlib', (zlib.compress, zlib.decompress))

import bz2  # noqa: E402
_factory('BZ2', 'bz2', (bz2.compress, bz2.decompress))

with suppress(ImportError):
    import blosc
    _blosc = (blosc.compress, blosc.decompress)
if 'blosc' in _C_CODECS or '_blosc' in globals():
    _factory('Blosc', 'blosc', globals().get('_blosc'))

with suppress(ImportError):
    import lz4.frame
    _lz4 = (lz4.frame.compress, lz4.frame.decompress)
if 'lz4' in _C_CODECS:
    _factory('LZ4', 'lz4', globals().get('_lz4'))

if 'zstd' in _C_CODECS:
    _factory('Zstd', 'zstd')
