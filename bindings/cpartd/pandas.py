# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""partd.pandas: PandasColumns and PandasBlocks, in partd's format.

PandasBlocks stores each appended DataFrame as partd's ``serialize`` does
(a pickled header, then the column index, the index and each block as
compressed bytes), so partd and cpartd read each other's stores.  The byte
work runs in C without the GIL (cpartd._cpartd.blocks_frames, decompress):
framing, blosc/snappy compression, and object (string) columns, whose items
are pickled in C when they are str, bytes, int, float, bool or None.

get(key) of a key holding several DataFrames with the same columns, block
layout and dtypes (a shuffle's partition) builds the result once: each block
is decompressed straight into its place in one array, instead of making one
DataFrame per append and concatenating them (partd's join).  Anything else
(different columns or categories, extension arrays, special indexes) goes
through partd's path: one DataFrame per append, then ``join``.  ``join``
keeps categorical columns categorical (partd 1.4).
"""
from functools import partial
import pickle

import numpy as np
import pandas as pd
from pandas.core.internals import create_block_manager_from_blocks
try:  # the supported home of make_block (pandas >= 1.3; 2.x warns on the
    from pandas.core.internals.api import make_block  # other one)
except ImportError:  # pragma: no cover
    from pandas.core.internals import make_block

from . import _cpartd
from . import numpy as pnp
from .core import Interface
from .encode import Encode, _Wrapping
from .utils import extend, framesplit, frame  # noqa: F401 (partd's names)

# Dtype checks by class (pandas >= 1.0), not the is_*_dtype helpers that
# pandas 2 deprecates; blocks through DataFrame._mgr (partd 1.4), never the
# _data that pandas 2 removed.
from pandas.api.extensions import ExtensionArray, ExtensionDtype
from pandas import CategoricalDtype, DatetimeTZDtype


def is_extension_array(x):
    # Some ExtensionArrays have a numpy .dtype (dask/partd issue 48).
    return isinstance(x, ExtensionArray)


__all__ = ['PandasColumns', 'PandasBlocks', 'serialize', 'deserialize',
           'join', 'index_to_header_bytes', 'index_from_header_bytes',
           'block_to_header_bytes', 'block_from_header_bytes']

dumps = partial(pickle.dumps, protocol=pickle.HIGHEST_PROTOCOL)


class PandasColumns(_Wrapping, Interface):
    def __init__(self, partd=None):
        self.partd = pnp.Numpy(partd)
        Interface.__init__(self)

    def append(self, data, **kwargs):
        for k, df in data.items():
            self.iset(extend(k, '.columns'), dumps(list(df.columns)))
            self.iset(extend(k, '.index-name'), dumps(df.index.name))

        # TODO: don't use values, it does some work.  Look at _blocks instead
        #       pframe/cframe do this well
        arrays = {extend(k, col): df[col].values
                  for k, df in data.items()
                  for col in df.columns}
        arrays.update({extend(k, '.index'): df.index.values
                       for k, df in data.items()})
        # TODO: handle categoricals
        self.partd.append(arrays, **kwargs)

    def _get(self, keys, columns=None, **kwargs):
        if columns is None:
            columns = self.partd.partd.get([extend(k, '.columns')
                                            for k in keys], **kwargs)
            columns = list(map(pickle.loads, columns))
        else:
            columns = [columns] * len(keys)
        index_names = self.partd.partd.get([extend(k, '.index-name')
                                            for k in keys], **kwargs)
        index_names = map(pickle.loads, index_names)

        keys = [[extend(k, '.index'), [extend(k, col) for col in cols]]
                for k, cols in zip(keys, columns)]

        arrays = self.partd.get(keys, **kwargs)

        return [pd.DataFrame(dict(zip(cols, arrs)), columns=cols,
                             index=pd.Index(index, name=iname))
                for iname, (index, arrs), cols in zip(index_names, arrays,
                                                      columns)]

    def __getstate__(self):
        return {'partd': self.partd}

    def _iset(self, key, value):
        return self.partd._iset(key, value)

    @property
    def lock(self):
        return self.partd.partd.lock

    def __del__(self):
        pass


# ------------------------------------------------------------- serializing

def _values_part(values):
    """(codec, data, typesize) for blocks_frames: what partd's
    pnp.compress(pnp.serialize(values), values.dtype) makes, in C."""
    if values.dtype == 'O':
        # partd: frame(pickle(x.flatten().tolist())), compressed as text
        return (pnp.TEXT_CODEC, values.ravel().tolist(), pnp.TEXT_TYPESIZE)
    flat = np.ascontiguousarray(values).reshape(-1).view(np.uint8)
    itemsize = values.dtype.itemsize
    return (pnp.NUMERIC_CODEC, flat, itemsize if 0 < itemsize < 256 else 1)


def _index_parts(ind):
    # These have special `__reduce__` methods, just use pickle
    if isinstance(ind, (pd.DatetimeIndex, pd.MultiIndex, pd.RangeIndex)):
        return None, (_cpartd.CODEC_RAW, dumps(ind), 1)
    if isinstance(ind.dtype, ExtensionDtype):
        # partd 1.4: indexes of extension dtypes (nullable numbers and
        # booleans, strings, categoricals, intervals, ...) are pickled.
        return None, (_cpartd.CODEC_RAW, dumps(ind), 1)
    cat = None
    values = ind.values
    header = (type(ind), {k: getattr(ind, k, None) for k in ind._attributes},
              values.dtype, cat)
    return header, _values_part(values)


def _block_parts(block):
    values = block.values
    if isinstance(values, pd.Categorical):
        extension = ('categorical_type', (values.ordered, values.categories))
        values = values.codes
    elif isinstance(block.dtype, DatetimeTZDtype):
        extension = ('datetime64_tz_type', (block.values.tzinfo,))
        values = np.asarray(values.asi8 if hasattr(values, 'asi8')
                            else values.view('i8'))
    elif isinstance(block.dtype, ExtensionDtype) or is_extension_array(values):
        extension = ("other", ())
    else:
        extension = ('numpy_type', ())

    header = (block.mgr_locs.as_array, values.dtype, values.shape, extension)
    if extension == ("other", ()):
        return header, (_cpartd.CODEC_RAW, pickle.dumps(values), 1)
    return header, _values_part(values)


def _parts_bytes(part):
    """The bytes one part stands for (partd's path, for the Python
    helpers below)."""
    codec, data, typesize = part
    if isinstance(data, list):
        data = pnp.serialize_list(data)
    return pnp._compress(codec, data, typesize)


def index_to_header_bytes(ind):
    header, part = _index_parts(ind)
    return header, _parts_bytes(part)


def block_to_header_bytes(block):
    header, part = _block_parts(block)
    return header, _parts_bytes(part)


def serialize(df):
    """ Serialize and compress a Pandas DataFrame

    Uses Pandas blocks, snappy, and blosc to deconstruct an array into bytes
    """
    col_header, col_part = _index_parts(df.columns)
    ind_header, ind_part = _index_parts(df.index)
    headers = [col_header, ind_header]
    parts = [col_part, ind_part]
    for block in df._mgr.blocks:
        h, p = _block_parts(block)
        headers.append(h)
        parts.append(p)
    out = _cpartd.blocks_frames(dumps(headers), parts)
    if out is None:
        # An object column holds items text_pickle leaves to pickle.
        parts = [(_cpartd.CODEC_RAW, _parts_bytes(p), 1) for p in parts]
        out = _cpartd.blocks_frames(dumps(headers), parts)
    return out


# ----------------------------------------------------------- deserializing

def index_from_header_bytes(header, bytes):
    if header is None:
        return pickle.loads(bytes)

    typ, attr, dtype, cat = header
    data = pnp.deserialize(pnp.decompress(bytes, dtype), dtype, copy=True)
    if cat:
        data = pd.Categorical.from_codes(data, cat[1], ordered=cat[0])
    return typ.__new__(typ, data=data, **attr)


def _finish_block(values, extension_type, extension_values, placement):
    if extension_type == 'categorical_type':
        values = pd.Categorical.from_codes(values,
                                           extension_values[1],
                                           ordered=extension_values[0])
    elif extension_type == 'datetime64_tz_type':
        tz_info = extension_values[0]
        values = pd.DatetimeIndex(values).tz_localize('utc').tz_convert(
            tz_info)
    return make_block(values, placement=placement)


def block_from_header_bytes(header, bytes):
    placement, dtype, shape, (extension_type, extension_values) = header

    if extension_type == "other":
        values = pickle.loads(bytes)
    else:
        values = pnp.deserialize(pnp.decompress(bytes, dtype), dtype,
                                 copy=True).reshape(shape)
    return _finish_block(values, extension_type, extension_values, placement)


def _from_frames(frames):
    headers = pickle.loads(frames[0])
    bytes = frames[1:]
    axes = [index_from_header_bytes(headers[0], bytes[0]),
            index_from_header_bytes(headers[1], bytes[1])]
    blocks = [block_from_header_bytes(h, b)
              for (h, b) in zip(headers[2:], bytes[2:])]
    return pd.DataFrame(create_block_manager_from_blocks(blocks, axes))


def deserialize(bytes):
    """ Deserialize and decompress bytes back to a pandas DataFrame """
    return _from_frames(_cpartd.framesplit(bytes))  # memoryviews: no copies


def join(dfs):
    """pd.concat, keeping categorical columns categorical (partd 1.4)."""
    if not dfs:
        return pd.DataFrame()
    result = pd.concat(dfs)
    first = dfs[0].dtypes
    dtypes = {col: 'category' for col in result.columns
              if col in first
              and isinstance(first[col], CategoricalDtype)
              and not isinstance(result.dtypes[col], CategoricalDtype)}
    if dtypes:
        result = result.astype(dtypes)
    return result


# ---------------------------------------- get: one DataFrame from many

def _eq(a, b):
    """a == b for header items (dtypes, names, dicts of them), False when
    the comparison is not a plain bool."""
    if a is b:
        return True
    try:
        r = a == b
        return r if isinstance(r, bool) else bool(np.all(r)) and \
            type(a) is type(b)
    except Exception:
        return False


def _same_cat(a, b):
    return a[0] == b[0] and type(a[1]) is type(b[1]) and a[1].equals(b[1])


def _plan(headers, frames):
    """True when every DataFrame has the first one's columns, index type
    and block layout, and the get can concatenate their blocks."""
    h0 = headers[0]
    c0, i0, b0 = h0[0], h0[1], h0[2:]
    if (c0 is None or c0[3] is not None or i0 is None or i0[3] is not None
            or not b0 or i0[1].get('freq') is not None):
        # (an index with a freq, e.g. a TimedeltaIndex: concat decides it)
        return False
    for h in b0:
        if h[3][0] == 'other' or h[1] == 'O' and len(h[2]) != 2:
            return False
    cbytes = frames[0][1]
    for h, f in zip(headers[1:], frames[1:]):
        if len(h) != len(h0) or h[0] is None or h[1] is None:
            return False
        c, i = h[0], h[1]
        if (c[0] is not c0[0] or not _eq(c[1], c0[1]) or c[2] != c0[2]
                or c[3] is not None or f[1] != cbytes):
            return False
        if i[0] is not i0[0] or not _eq(i[1], i0[1]) or i[2] != i0[2] \
                or i[3] is not None:
            return False
        for x, y in zip(h[2:], b0):
            if (x[1] != y[1] or len(x[2]) != len(y[2])
                    or x[2][:-1] != y[2][:-1] or x[3][0] != y[3][0]
                    or not np.array_equal(x[0], y[0])):
                return False
            kind, ext = x[3]
            if kind == 'categorical_type' and not _same_cat(ext, y[3][1]):
                return False
            if kind == 'datetime64_tz_type' and not _eq(ext[0], y[3][1][0]):
                return False
    return True


def _text_items(codec, piece):
    """The items of one object piece: partd's framed pickles (or msgpack)
    of lists, compressed as text."""
    items = []
    for f in _cpartd.framesplit(_cpartd.decompress(codec, piece)):
        items.extend(pnp._loads_list(f))
    return items


def _concat_values(dtype, shape0, pieces, rows):
    """One array of shape shape0 with its last axis the sum of rows, from
    the compressed pieces (one per DataFrame)."""
    total = sum(rows)
    lead = shape0[:-1]
    out = np.empty(lead + (total,), dtype=dtype)
    ncols = int(np.prod(lead)) if lead else 1
    off = 0
    if dtype == 'O':
        codec = pnp.TEXT_CODEC
        for piece, n in zip(pieces, rows):
            items = _text_items(codec, piece)
            if len(items) != ncols * n:
                raise _cpartd.CorruptError(
                    'cpartd: PandasBlocks: an object block holds %d items, '
                    'its header says %d' % (len(items), ncols * n))
            if ncols == 1:
                out.reshape(-1)[off:off + n] = items
            else:
                tmp = np.empty(ncols * n, dtype='O')
                tmp[:] = items
                out[..., off:off + n] = tmp.reshape(lead + (n,))
            off += n
        return out
    # numbers: every piece decompressed into its place, in one C call
    _cpartd.concat_into(pnp.NUMERIC_CODEC, pieces,
                        out.reshape(-1).view(np.uint8), ncols,
                        dtype.itemsize, rows)
    return out


def _concat(headers, frames):
    h0 = headers[0]
    rows = [h[2][2][-1] for h in headers]
    columns = index_from_header_bytes(h0[0], frames[0][1])
    typ, attr, dtype, _ = h0[1]
    data = _concat_values(dtype, (0,), [f[2] for f in frames], rows)
    index = typ.__new__(typ, data=data, **attr)
    blocks = []
    for j, bh in enumerate(h0[2:]):
        placement, bdtype, shape, (kind, ext) = bh
        values = _concat_values(bdtype, tuple(shape),
                                [f[3 + j] for f in frames], rows)
        blocks.append(_finish_block(values, kind, ext, placement))
    return pd.DataFrame(create_block_manager_from_blocks(blocks,
                                                         [columns, index]))


def _get_one(chunk):
    outer = _cpartd.framesplit(chunk, torn='drop')
    if not outer:
        return pd.DataFrame()
    if len(outer) == 1:
        return deserialize(outer[0])
    frames = [_cpartd.framesplit(f) for f in outer]
    headers = [pickle.loads(f[0]) for f in frames]
    if _plan(headers, frames):
        return _concat(headers, frames)
    return join([_from_frames(f) for f in frames])


class PandasBlocks(Encode):
    """PandasBlocks(partd=None): an Encode store of DataFrames (partd's
    ``partial(Encode, serialize, deserialize, join)``, with a faster get)."""

    def __init__(self, partd=None):
        Encode.__init__(self, serialize, deserialize, join, partd)

    def __reduce__(self):
        return (PandasBlocks, (self.partd,))

    def _get(self, keys, **kwargs):
        return [_get_one(chunk) for chunk in self._raw(keys, **kwargs)]
