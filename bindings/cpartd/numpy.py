# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
""" Store arrays

We put arrays on disk as raw bytes, extending along the first dimension.
Alongside each array x we ensure the value x.dtype which stores the string
description of the array's dtype.

Unlike partd 1.3, a stored dtype string is never passed to eval(): a
structured description ("[('a', '<i4')]") is read with ast.literal_eval,
which accepts only literals.
"""
import ast
from contextlib import suppress
import pickle

import numpy as np

from . import _cpartd
from .core import Interface
from .encode import _Wrapping
from .file import File  # noqa: F401  (partd.numpy.File)
from .utils import frame, framesplit, suffix

try:
    import msgpack
except ImportError:
    msgpack = False

__all__ = ['Numpy', 'serialize_dtype', 'parse_dtype', 'serialize',
           'deserialize', 'compress', 'decompress']


def serialize_dtype(dt):
    """ Serialize dtype to bytes

    >>> serialize_dtype(np.dtype('i4'))
    b'<i4'
    >>> serialize_dtype(np.dtype('M8[us]'))
    b'<M8[us]'
    """
    return dt.str.encode()


def parse_dtype(s):
    """ Parse text as numpy dtype, without eval

    >>> parse_dtype(b'i4')
    dtype('int32')

    >>> parse_dtype(b"[('a', 'i4')]")
    dtype([('a', '<i4')])
    """
    if isinstance(s, (bytes, bytearray, memoryview)):
        s = bytes(s).decode('ascii')
    if s.startswith('['):
        try:
            descr = ast.literal_eval(s)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
            raise ValueError('cpartd: bad stored dtype %r' % s[:100]) from e
        return np.dtype(descr)
    return np.dtype(s)


class Numpy(_Wrapping, Interface):
    def __init__(self, partd=None):
        self.partd = self._inner(partd)
        Interface.__init__(self)

    def __getstate__(self):
        return {'partd': self.partd}

    def append(self, data, **kwargs):
        for k, v in data.items():
            self.partd.iset(suffix(k, '.dtype'), serialize_dtype(v.dtype))
        if isinstance(self.partd, _cpartd.Store):
            # C stores take any buffer: the array's memory, not a copy.
            values = {k: _view(v) for k, v in data.items()}
        else:
            values = {k: serialize(v) for k, v in data.items()}
        self.partd.append(values, **kwargs)

    def _get(self, keys, **kwargs):
        bytes = self.partd._get(keys, **kwargs)
        dtypes = self.partd._get([suffix(key, '.dtype') for key in keys],
                                 lock=False)
        dtypes = map(parse_dtype, dtypes)
        return list(map(deserialize, bytes, dtypes))

    def delete(self, keys, **kwargs):
        keys2 = [suffix(key, '.dtype') for key in keys]
        self.partd.delete(keys2, **kwargs)

    def _iset(self, key, value):
        return self.partd._iset(key, value)

    def __del__(self):
        # partd calls self.partd.__del__(), which only a File has.
        pass


def _view(x):
    """serialize(x) without the copy where it can be: the bytes of a
    C-contiguous numeric array, as a buffer over its memory."""
    if x.dtype != 'O' and x.flags.c_contiguous:
        return x.reshape(-1).view(np.uint8)
    return serialize(x)


def identity(x):
    return x


def _loads_list(f):
    """One framed list of an object array (msgpack when partd wrote it with
    msgpack installed, else pickle)."""
    if msgpack:
        try:
            return msgpack.unpackb(f, raw=False)
        except Exception:
            pass
    return pickle.loads(f)


def serialize_list(l):
    """The framed pickle (or msgpack) of a list, as partd's serialize
    writes an object array's items.  A list of str/bytes/int/float/bool/None
    is pickled in C (cpartd._cpartd.text_pickle); anything else by pickle.
    With msgpack installed, msgpack first, as partd: the reference reads a
    key's frames all as msgpack or all as pickle, so a key that both append
    to must get the same kind from both."""
    if msgpack:
        with suppress(Exception):
            return frame(msgpack.packb(l, use_bin_type=True))
    b = _cpartd.text_pickle(l)
    if b is None:
        b = pickle.dumps(l, protocol=pickle.HIGHEST_PROTOCOL)
    return frame(b)


def serialize(x):
    if x.dtype == 'O':
        return serialize_list(x.flatten().tolist())
    else:
        return x.tobytes()


def deserialize(bytes, dtype, copy=False):
    if dtype == 'O':
        blocks = [_loads_list(f) for f in _cpartd.framesplit(bytes)]
        result = np.empty(sum(map(len, blocks)), dtype='O')
        i = 0
        for block in blocks:
            result[i:i + len(block)] = block
            i += len(block)
        return result
    else:
        result = np.frombuffer(bytes, dtype)
        if copy:
            result = result.copy()
        return result


# Compression as partd's numpy module does it: numbers with blosc (typesize
# the item size), text (pickled object arrays) with snappy, else blosc,
# else not at all, depending on which Python modules are installed, so that
# partd in the same environment reads what cpartd writes.  The work is
# done in C (libblosc, libsnappy) without the GIL.
try:
    import blosc as _blosc  # noqa: F401
    NUMERIC_CODEC = _cpartd.CODEC_BLOSC
except ImportError:
    NUMERIC_CODEC = _cpartd.CODEC_RAW
try:
    from snappy import compress as _snappy  # noqa: F401
    TEXT_CODEC = _cpartd.CODEC_SNAPPY
except ImportError:
    TEXT_CODEC = NUMERIC_CODEC
TEXT_TYPESIZE = 1


def _compress(codec, data, typesize):
    return _cpartd.blocks_frames(b'', [(codec, data, typesize)])[16:]


def compress_bytes(bytes, itemsize=8):
    return _compress(NUMERIC_CODEC, bytes, itemsize if 0 < itemsize < 256
                     else 1)


def decompress_bytes(bytes):
    return _cpartd.decompress(NUMERIC_CODEC, bytes)


def compress_text(bytes):
    return _compress(TEXT_CODEC, bytes, TEXT_TYPESIZE)


def decompress_text(bytes):
    return _cpartd.decompress(TEXT_CODEC, bytes)


def compress(bytes, dtype):
    if dtype == 'O':
        return compress_text(bytes)
    else:
        return compress_bytes(bytes, dtype.itemsize)


def decompress(bytes, dtype):
    if dtype == 'O':
        return decompress_text(bytes)
    else:
        return decompress_bytes(bytes)
