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
    store (borrowed: the inner store stays usable and open)."""

    def __init__(self, codec, partd, level=None):
        _cpartd.Compressed.__init__(
            self, codec, partd,
            _cpartd.LEVEL_DEFAULT if level is None else level)
        self.codec = codec
        self.level = level

    def __reduce__(self):
        return (CEncode, (self.codec, self.partd, self.level))

    def __enter__(self):
        return self

    def __exit__(self, *args):
        inner = self.partd
        self.drop()
        self.close()
        inner.__exit__(*args)


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
