# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""The frames of cpartd.pandas.PandasBlocks (docs/pandas-blocks.md).

serialize (partd's format) and serialize_cpartd (cpartd's own) make one
frame of a DataFrame; deserialize reads one back; get's path (_get_one)
decodes the frames of a key straight into one DataFrame where their layout
allows, else through join.  Kept apart from pandas.py, which holds the
store layers (PandasColumns, PandasBlocks) and the choice of format
(private_store).
"""
from functools import partial
import pickle
import struct
import threading

import numpy as np
import pandas as pd
from pandas.core.internals import create_block_manager_from_blocks
try:  # the supported home of make_block (pandas >= 1.3; 2.x warns on the
    from pandas.core.internals.api import make_block  # other one)
except ImportError:  # pragma: no cover
    from pandas.core.internals import make_block

from . import _cpartd
from . import numpy as pnp

# Dtype checks by class (pandas >= 1.0), not the is_*_dtype helpers that
# pandas 2 deprecates; blocks through DataFrame._mgr (partd 1.4), never the
# _data that pandas 2 removed.
from pandas.api.extensions import ExtensionArray, ExtensionDtype
from pandas import CategoricalDtype, DatetimeTZDtype
# Nullable numbers and booleans (Int64, Float64, boolean): values + mask.
MASKED = (pd.arrays.IntegerArray, pd.arrays.FloatingArray,
          pd.arrays.BooleanArray)


def is_extension_array(x):
    # Some ExtensionArrays have a numpy .dtype (dask/partd issue 48).
    return isinstance(x, ExtensionArray)


dumps = partial(pickle.dumps, protocol=pickle.HIGHEST_PROTOCOL)


# ------------------------------------------------------------- formats
#
# A frame is frame(pickled header) + frame(part) for the columns, the index
# and each block (docs/pandas-blocks.md).  Two formats:
#   - partd's: the header is partd's list [columns, index, block, ...];
#     numbers compressed with blosc, object arrays as framed pickled item
#     lists compressed as text (partd reads it);
#   - cpartd's, for stores only cpartd reads: the header is MAGIC2, the
#     row count and the pickled tuple (MARK, 2, kinds, that list) (version
#     1, still read: the tuple alone, categories in it), kinds saying how
#     each part is coded: numbers raw, object arrays of str/bytes/float/None
#     in the compact encoding (C, no pickle), other object arrays pickled,
#     categories in parts of their own.
# A reader tells them apart by the header, frame by frame.
MARK = 'cpartd-blocks'
VERSION = 2   # written; version 1 (the whole header pickled) still reads
# Version 2's header: MAGIC2, the row count (8 bytes, little-endian), then
# pickle.dumps((MARK, 2, kinds, headers)) with each block's shape without
# its last axis (the rows) and a categorical block's categories in a part of
# their own (kind 'c').  What follows the row count repeats frame after frame
# of one DataFrame's pieces: a writer pickles it once (_HeaderCache) and a
# reader unpickles it once per get (bytes compared, _Reader).
MAGIC2 = b'CPB\x02'
_ROWS = struct.Struct('<Q')

# How a part is coded.
K_PICKLE = 'x'  # a pickle (pickled indexes, extension arrays): both
K_NUM = 'n'     # partd: numbers, compressed with pnp.NUMERIC_CODEC
K_TEXT = 't'    # partd: framed item lists, compressed with pnp.TEXT_CODEC
K_RAW = 'r'     # cpartd: numbers, raw
K_STRS = 's'    # cpartd: the compact encoding (strings.c)
K_LIST = 'p'    # cpartd: the pickle of the item list, raw
K_MASKED = 'm'  # cpartd: a masked array's values raw, then its mask
K_CATS = 'c'    # cpartd 2: a categorical block's categories, pickled
_NUMBERS = (K_NUM, K_RAW)
_OBJECTS = (K_TEXT, K_STRS, K_LIST)
_RAW = _cpartd.CODEC_RAW


def _corrupt(msg, *args):
    return _cpartd.CorruptError('cpartd: PandasBlocks: ' + msg % args)


# ------------------------------------------------------------- serializing

def _values_part(values, private=False):
    """(kind, (codec, data, typesize)) for blocks_frames.  partd's format:
    what partd's pnp.compress(pnp.serialize(values), values.dtype) makes,
    in C (an item list is pickled by blocks_frames)."""
    itemsize = values.dtype.itemsize
    if values.dtype == 'O':
        if not private:
            return K_TEXT, (pnp.TEXT_CODEC, values.ravel().tolist(),
                            pnp.TEXT_TYPESIZE)
        values = np.ascontiguousarray(values)
        packed = _cpartd.strings_pack(values)
        if packed is not None:
            return K_STRS, (_RAW, packed, 1)
        return K_LIST, (_RAW, dumps(values.ravel().tolist()), 1)
    flat = np.ascontiguousarray(values).reshape(-1).view(np.uint8)
    typesize = itemsize if 0 < itemsize < 256 else 1
    if private:
        return K_RAW, (_RAW, flat, typesize)
    return K_NUM, (pnp.NUMERIC_CODEC, flat, typesize)


def _index_parts(ind, private=False):
    """(header, kind, part) of an index."""
    # These have special `__reduce__` methods, just use pickle
    if isinstance(ind, (pd.DatetimeIndex, pd.MultiIndex, pd.RangeIndex)):
        return None, K_PICKLE, (_RAW, dumps(ind), 1)
    if isinstance(ind.dtype, ExtensionDtype):
        # partd 1.4: indexes of extension dtypes (nullable numbers and
        # booleans, strings, categoricals, intervals, ...) are pickled.
        return None, K_PICKLE, (_RAW, dumps(ind), 1)
    cat = None
    values = ind.values
    header = (type(ind), {k: getattr(ind, k, None) for k in ind._attributes},
              values.dtype, cat)
    return (header,) + _values_part(values, private)


def _block_parts(block, private=False):
    """(header, kind, part) of a block."""
    values = block.values
    if isinstance(values, pd.Categorical):
        extension = ('categorical_type', (values.ordered, values.categories))
        values = values.codes
    elif isinstance(block.dtype, DatetimeTZDtype):
        extension = ('datetime64_tz_type', (block.values.tzinfo,))
        values = np.asarray(values.asi8 if hasattr(values, 'asi8')
                            else values.view('i8'))
    elif private and isinstance(values, MASKED) and values.ndim == 1:
        # cpartd's format: values and mask raw, not the array pickled
        # (what a masked slot holds does not matter: 0 there)
        numpy_dtype = values.dtype.numpy_dtype
        data = values.to_numpy(dtype=numpy_dtype,
                               na_value=numpy_dtype.type(0))
        header = (block.mgr_locs.as_array, data.dtype, values.shape,
                  ('masked_type', (values.dtype,)))
        raw = b''.join([np.ascontiguousarray(data).view(np.uint8),
                        np.ascontiguousarray(values.isna()).view(np.uint8)])
        return header, K_MASKED, (_RAW, raw, 1)
    elif isinstance(block.dtype, ExtensionDtype) or is_extension_array(values):
        extension = ("other", ())
    else:
        extension = ('numpy_type', ())

    header = (block.mgr_locs.as_array, values.dtype, values.shape, extension)
    if extension == ("other", ()):
        return header, K_PICKLE, (_RAW, pickle.dumps(values), 1)
    return (header,) + _values_part(values, private)


def _parts_bytes(part):
    """The bytes one part stands for (partd's path, for the Python
    helpers below)."""
    codec, data, typesize = part
    if isinstance(data, list):
        data = pnp.serialize_list(data)
    return pnp._compress(codec, data, typesize)


def index_to_header_bytes(ind):
    header, _, part = _index_parts(ind)
    return header, _parts_bytes(part)


def block_to_header_bytes(block):
    header, _, part = _block_parts(block)
    return header, _parts_bytes(part)


def _parts(df, private):
    headers, kinds, parts = [], [], []
    for h, k, p in [_index_parts(df.columns, private),
                    _index_parts(df.index, private)] + \
            [_block_parts(b, private) for b in df._mgr.blocks]:
        headers.append(h)
        kinds.append(k)
        parts.append(p)
    return headers, kinds, parts


def serialize(df):
    """ Serialize and compress a Pandas DataFrame

    Uses Pandas blocks, snappy, and blosc to deconstruct an array into bytes
    (partd's format: partd reads it)
    """
    headers, _, parts = _parts(df, False)
    out = _cpartd.blocks_frames(dumps(headers), parts)
    if out is None:
        # An object column holds items text_pickle leaves to pickle.
        parts = [(_RAW, _parts_bytes(p), 1) for p in parts]
        out = _cpartd.blocks_frames(dumps(headers), parts)
    return out


_tls = threading.local()   # per thread: dask's threads append at once


def _cats_pickle(cats):
    """The pickle of a categories Index, made once per Index object (the
    pieces of one split DataFrame share it)."""
    memo = getattr(_tls, 'cats', None)
    if memo is None or len(memo) > 16:
        memo = _tls.cats = {}
    hit = memo.get(id(cats))
    if hit is not None and hit[0] is cats:
        return hit[1]
    b = dumps(cats)
    memo[id(cats)] = (cats, b)   # holds cats: its id is not reused
    return b


def _same_key(a, b):
    """Two header keys alike.  Their items are plain values (attributes
    paired with their types, dtypes, tuples, slices, bytes): == of the
    lists is exact, and it runs in C."""
    try:
        return a == b
    except Exception:   # a dtype's == that raises: no match
        return False


def _loc_key(loc):
    """A block placement as a value that compares cheaply: its slice, or
    its positions' bytes (the pieces dask's get_group makes have
    placements equal but not identical)."""
    ind = loc.indexer
    return ind if type(ind) is slice else ind.tobytes()


_PLAIN = (str, int, float, bool, type(None))


def _index_key(h):
    """An index header as a cache key: its attributes compared by type and
    value when they are plain (str, int, float, bool, None), else a key
    equal to no other."""
    if h is None:
        return None
    typ, attrs, dtype, _ = h
    items = tuple((k, type(v), v) for k, v in attrs.items())
    if not all(t in _PLAIN for _, t, _ in items):
        return (object(),)
    return (typ, items, dtype)


def _static_header(kinds, key, axes, locs):
    """pickle.dumps((MARK, 2, kinds, headers)) of a frame, from the cache
    when the last frame this thread wrote had the same key (axes: the
    columns' and index's headers)."""
    last = getattr(_tls, 'header', None)
    if last is not None and last[0] == kinds and _same_key(last[1], key):
        return last[2]
    headers = list(axes)
    for k, loc in zip(key[2:], locs):
        dtype, lead, ext, extv = k[1:]
        if ext == 'categorical_type':
            extv = (extv[0], extv[1])   # (ordered, the categories' part)
        headers.append((loc.as_array, dtype, lead, (ext, extv)))
    b = dumps((MARK, VERSION, kinds, headers))
    _tls.header = (kinds, key, b)
    return b


def serialize_cpartd(df):
    """A DataFrame in cpartd's own format (only cpartd reads it): numbers
    raw, str/bytes/float/None columns in the compact encoding, the header
    version 2 (categories in parts of their own)."""
    cols, ind, blocks = df.columns, df.index, df._mgr.blocks
    key, kinds, parts, cats, locs, axes = [], [], [], [], [], []
    for i in (cols, ind):
        h, k, p = _index_parts(i, True)
        axes.append(h)
        key.append(_index_key(h))
        kinds.append(k)
        parts.append(p)
    for b in blocks:
        values = b.values
        if isinstance(values, pd.Categorical):
            codes = values.codes
            k, p = _values_part(codes, True)
            key.append((_loc_key(b.mgr_locs), codes.dtype, codes.shape[:-1],
                        'categorical_type',
                        (bool(values.ordered), 2 + len(blocks) + len(cats))))
            cats.append(values.categories)
        else:
            h, k, p = _block_parts(b, True)
            key.append((_loc_key(b.mgr_locs), h[1], tuple(h[2][:-1])) +
                       h[3])
        locs.append(b.mgr_locs)
        kinds.append(k)
        parts.append(p)
    kinds.extend(K_CATS * len(cats))
    parts.extend((_RAW, _cats_pickle(c), 1) for c in cats)
    static = _static_header(''.join(kinds), key, axes, locs)
    return _cpartd.blocks_frames(MAGIC2 + _ROWS.pack(len(ind)) + static,
                                 parts)


# ----------------------------------------------------------- deserializing

def _partd_kinds(headers):
    """The kinds of a frame in partd's format."""
    kinds = []
    for i, h in enumerate(headers):
        if h is None or (i >= 2 and h[3][0] == 'other'):
            kinds.append(K_PICKLE)
        else:
            kinds.append(K_TEXT if h[2 if i < 2 else 1] == 'O' else K_NUM)
    return kinds


def _read_v2(data, memo):
    """(headers, kinds, token) of a version-2 header; memo (a dict, one per
    get) keeps the last static part read: a frame whose static part has
    the same bytes reuses it and gets the same token."""
    if len(data) < 12:
        raise _corrupt('a frame header of %d bytes', len(data))
    rows = _ROWS.unpack_from(data, 4)[0]
    static = data[12:]
    last = memo.get('static')
    if last is not None and len(last[0]) == len(static) and \
            last[0] == bytes(static):
        token, headers, kinds = last
    else:
        token = bytes(static)
        headers, kinds = _parse_v2(token)
        memo['static'] = (token, headers, kinds)
    if rows > 1 << 48:
        raise _corrupt('a frame of %d rows', rows)
    full = headers[:2] + [(p, d, lead + (rows,), e)
                          for p, d, lead, e in headers[2:]]
    return full, kinds, token


def _parse_v2(static):
    """(headers with shapes short of their rows, kinds) of a version-2
    static part, checked: anything malformed raises CorruptError."""
    try:
        h = pickle.loads(static)
    except Exception as e:
        raise _corrupt('an unreadable frame header (%s)', e) from None
    if (type(h) is not tuple or len(h) != 4 or h[0] != MARK
            or h[1] != 2 or type(h[2]) is not str or type(h[3]) is not list):
        raise _corrupt('a bad cpartd frame header (version 2)')
    kinds, headers = h[2], h[3]
    n = len(headers)
    if n < 2 or len(kinds) < n or kinds[n:] != K_CATS * (len(kinds) - n):
        raise _corrupt('a cpartd frame header of %d parts and kinds %r',
                       n, kinds)
    for i, x in enumerate(headers):
        ok = x is None or (type(x) is tuple and len(x) == 4)
        if ok and i < 2 and x is not None:
            ok = isinstance(x[0], type) and type(x[1]) is dict and \
                isinstance(x[2], np.dtype) and x[3] is None
        elif ok and i >= 2:
            ok = (x is not None
                  and isinstance(x[1], (np.dtype, ExtensionDtype))
                  and type(x[2]) is tuple
                  and all(type(d) is int and d >= 0 for d in x[2])
                  and type(x[3]) is tuple and len(x[3]) == 2
                  and type(x[3][1]) is tuple)
            if ok and x[3][0] == 'categorical_type':
                c = x[3][1]
                ok = (len(c) == 2 and type(c[1]) is int and n <= c[1]
                      < len(kinds))
        if not ok:
            raise _corrupt('part %d of a frame has a bad header', i)
    _check_kinds(headers, kinds)
    return headers, kinds


def _read_header(data, memo=None):
    """(headers, kinds, token) of a frame's first part, in either format
    (token: the static header's bytes in version 2, else None)."""
    if data[:4] == MAGIC2:
        return _read_v2(data, {} if memo is None else memo)
    h = pickle.loads(data)
    if type(h) is tuple:
        if len(h) != 4 or h[0] != MARK:
            raise _corrupt('a frame header of neither format')
        if h[1] != 1:
            raise _corrupt('a frame of format version %r (this cpartd '
                           'reads 1 and 2)', h[1])
        kinds, headers = h[2], h[3]
        if (type(kinds) is not str or type(headers) is not list
                or len(kinds) != len(headers)):
            raise _corrupt('a bad cpartd frame header')
    elif type(h) is list:
        headers = h
        kinds = _partd_kinds(headers)
    else:
        raise _corrupt('a frame header of neither format')
    if len(headers) < 2:
        raise _corrupt('a frame header without columns and index')
    _check_kinds(headers, kinds)
    return headers, kinds, None


def _check_kinds(headers, kinds):
    """Each part coded in a way its header allows."""
    for i, (h, k) in enumerate(zip(headers, kinds)):
        pickled = h is None or (i >= 2 and h[3][0] == 'other')
        masked = i >= 2 and h[3][0] == 'masked_type'
        if pickled or masked or k in (K_PICKLE, K_MASKED):
            ok = k == (K_PICKLE if pickled else K_MASKED if masked else '')
        else:
            ok = k in (_OBJECTS if h[2 if i < 2 else 1] == 'O' else _NUMBERS)
        if not ok:
            raise _corrupt('part %d of a frame is coded %r, which its '
                           'header does not allow', i, k)


def _strs_count(piece):
    """The item count a compact piece claims, bounded by its size."""
    if len(piece) < 12:
        raise _corrupt('a string block of %d bytes', len(piece))
    n = int.from_bytes(piece[4:12], 'little')
    if n > (len(piece) - 12) // 5:
        raise _corrupt('a string block claims %d items in %d bytes', n,
                       len(piece))
    return n


def _objects(items):
    """A 1-d object array of a list's items (never broadcast: a tuple is
    one item)."""
    return np.fromiter(items, dtype=object, count=len(items))


def _decode(kind, dtype, piece):
    """The 1-d values one part codes."""
    if kind == K_NUM:
        return pnp.deserialize(pnp.decompress(piece, dtype), dtype, copy=True)
    if kind == K_RAW:
        if len(piece) % dtype.itemsize:
            raise _corrupt('%d bytes of %s', len(piece), dtype)
        return np.frombuffer(piece, dtype).copy()
    if kind == K_TEXT:
        return pnp.deserialize(pnp.decompress(piece, dtype), dtype)
    if kind == K_LIST:
        return _objects(pickle.loads(piece))
    n = _strs_count(piece)
    out = np.empty(n, dtype=object)
    _cpartd.strings_into([piece], out, 1, [n])
    return out


def _index_from(header, kind, data):
    if header is None:
        return pickle.loads(data)
    typ, attr, dtype, cat = header
    data = _decode(kind, dtype, data)
    if cat:
        data = pd.Categorical.from_codes(data, cat[1], ordered=cat[0])
    return typ.__new__(typ, data=data, **attr)


def index_from_header_bytes(header, bytes):
    return _index_from(header, _partd_kinds([header, None])[0], bytes)


def _finish_block(values, extension_type, extension_values, placement):
    if extension_type == 'categorical_type':
        if isinstance(extension_values[1], CategoricalDtype):  # version 2
            values = pd.Categorical.from_codes(values,
                                               dtype=extension_values[1])
        else:
            values = pd.Categorical.from_codes(values,
                                               extension_values[1],
                                               ordered=extension_values[0])
    elif extension_type == 'datetime64_tz_type':
        tz_info = extension_values[0]
        values = pd.DatetimeIndex(values).tz_localize('utc').tz_convert(
            tz_info)
    return make_block(values, placement=placement)


def _masked(ext, dtype, pieces, rows):
    """A masked array (ext: its dtype) from kind-m pieces of rows[i]
    values each, concatenated."""
    size = dtype.itemsize
    for piece, n in zip(pieces, rows):
        if len(piece) != n * (size + 1):
            raise _corrupt('a masked block of %d bytes for %d values of %s',
                           len(piece), n, dtype)
    total = sum(rows)
    data = np.empty(total, dtype=dtype)
    mask = np.empty(total, dtype=np.uint8)
    _cpartd.concat_into(_RAW, [p[:n * size] for p, n in zip(pieces, rows)],
                        data.view(np.uint8), 1, size, list(rows))
    _cpartd.concat_into(_RAW, [p[n * size:] for p, n in zip(pieces, rows)],
                        mask, 1, 1, list(rows))
    if total and mask.max() > 1:
        raise _corrupt('a mask byte that is neither 0 nor 1')
    return ext.construct_array_type()(data, mask.view(bool))


def _categories(ext, kinds, parts, memo):
    """A categorical block's (ordered, categories): in its header (version
    1, partd's) or unpickled from the part its header names (version 2;
    memo keeps the last one, for a get's many frames of one DataFrame)."""
    at = ext[1]
    if type(at) is not int:
        return ext
    if not (0 <= at < len(kinds) and kinds[at] == K_CATS):
        raise _corrupt('a categorical block names part %r', at)
    data = bytes(parts[at])
    last = memo.get('cats')
    if last is not None and last[0] == data and last[1] == ext[0]:
        return ext[0], last[2]
    try:
        cats = pickle.loads(data)
    except Exception as e:
        raise _corrupt('unreadable categories (%s)', e) from None
    if not isinstance(cats, pd.Index):
        raise _corrupt('categories of type %s', type(cats).__name__)
    try:
        dtype = CategoricalDtype(cats, ordered=bool(ext[0]))
    except (TypeError, ValueError) as e:
        raise _corrupt('bad categories (%s)', e) from None
    # one dtype for a get's frames: pd.concat hashes each distinct one
    memo['cats'] = (data, ext[0], dtype)
    return ext[0], dtype


def _block_from(header, kind, data):
    placement, dtype, shape, (extension_type, extension_values) = header
    if kind == K_PICKLE:
        values = pickle.loads(data)
    elif kind == K_MASKED:
        values = _masked(extension_values[0], dtype, [data], [shape[-1]])
    else:
        values = _decode(kind, dtype, data)
        if values.size != int(np.prod(shape)):
            raise _corrupt('a block of %d values, its header says %r',
                           values.size, shape)
        values = values.reshape(shape)
    return _finish_block(values, extension_type, extension_values, placement)


def block_from_header_bytes(header, bytes):
    kind = _partd_kinds([None, None, header])[2]
    return _block_from(header, kind, bytes)


def _from_parts(headers, kinds, parts, memo=None):
    if len(parts) != len(kinds):
        raise _corrupt('a frame of %d parts whose header lists %d',
                       len(parts), len(kinds))
    memo = {} if memo is None else memo
    axes = [_index_from(headers[0], kinds[0], parts[0]),
            _index_from(headers[1], kinds[1], parts[1])]
    blocks = []
    for h, k, b in zip(headers[2:], kinds[2:], parts[2:]):
        if h[3][0] == 'categorical_type':
            h = h[:3] + (('categorical_type',
                          _categories(h[3][1], kinds, parts, memo)),)
        blocks.append(_block_from(h, k, b))
    return pd.DataFrame(create_block_manager_from_blocks(blocks, axes))


def _from_frames(frames):
    headers, kinds, _ = _read_header(frames[0])
    return _from_parts(headers, kinds, frames[1:])


def deserialize(bytes):
    """ Deserialize and decompress bytes back to a pandas DataFrame (either
    format) """
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


def _same_coding(kinds, k0):
    """Each part coded alike: numbers with one codec; object parts in any
    object coding (each piece is decoded by its own)."""
    return all(a == b or (a in _OBJECTS and b in _OBJECTS)
               for a, b in zip(kinds, k0))


def _same_cats(x, y, fx, fy):
    """Two categorical blocks' (ordered, categories) alike: categories in
    the header (version 1) compared as Indexes, in a part (version 2)
    byte for byte."""
    if type(x[1]) is int and type(y[1]) is int:
        a, b = fx[1 + x[1]], fy[1 + y[1]]
        return x[0] == y[0] and len(a) == len(b) and bytes(a) == bytes(b)
    if type(x[1]) is int or type(y[1]) is int:
        return False
    return _same_cat(x, y)


def _plan(heads, frames):
    """True when every DataFrame has the first one's columns, index type
    and block layout, and the get can concatenate their blocks.  heads:
    (headers, kinds, token) per frame; frames with the first one's token
    (version 2, the same static header bytes) only compare their columns
    and categories."""
    h0, k0, t0 = heads[0]
    if len(frames[0]) != len(k0) + 1:
        return False
    cat_parts = [b[3][1][1] for b in h0[2:]
                 if b[3][0] == 'categorical_type'
                 and type(b[3][1][1]) is int]
    c0, i0, b0 = h0[0], h0[1], h0[2:]
    if (c0 is None or c0[3] is not None or i0 is None or i0[3] is not None
            or not b0 or i0[1].get('freq') is not None):
        # (an index with a freq, e.g. a TimedeltaIndex: concat decides it)
        return False
    for h in b0:
        if h[3][0] == 'other' or h[1] == 'O' and len(h[2]) != 2:
            return False
        if h[3][0] == 'masked_type' and len(h[2]) != 1:
            return False
    cbytes = frames[0][1]
    f0 = frames[0]
    for (h, k, t), f in zip(heads[1:], frames[1:]):
        if t is not None and t is t0:
            if len(f) != len(f0) or f[1] != cbytes:
                return False
            for at in cat_parts:
                a, b = f[1 + at], f0[1 + at]
                if len(a) != len(b) or bytes(a) != bytes(b):
                    return False
            continue
        if (len(h) != len(h0) or len(f) != len(frames[0]) or h[0] is None
                or h[1] is None or k[0] != k0[0]
                or not _same_coding(k, k0)):
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
            if kind == 'categorical_type' and \
                    not _same_cats(ext, y[3][1], f, f0):
                return False
            if kind in ('datetime64_tz_type', 'masked_type') and \
                    not _eq(ext[0], y[3][1][0]):
                return False
    return True


def _text_items(codec, piece):
    """The items of one object piece: partd's framed pickles (or msgpack)
    of lists, compressed as text."""
    items = []
    for f in _cpartd.framesplit(_cpartd.decompress(codec, piece)):
        items.extend(pnp._loads_list(f))
    return items


def _concat_values(dtype, shape0, pieces, rows, kinds):
    """One array of shape shape0 with its last axis the sum of rows, from
    the coded pieces (one per DataFrame, kinds[i] coding pieces[i])."""
    total = sum(rows)
    lead = shape0[:-1]
    out = np.empty(lead + (total,), dtype=dtype)
    ncols = int(np.prod(lead)) if lead else 1
    if dtype == 'O':
        if all(k == K_STRS for k in kinds):
            # every piece decoded straight into its slots, in one C call
            _cpartd.strings_into(list(pieces), out, ncols, rows)
            return out
        off = 0
        for piece, n, kind in zip(pieces, rows, kinds):
            if kind == K_STRS:
                _cpartd.strings_into([piece], out, ncols, [n], off)
                off += n
                continue
            if kind == K_TEXT:
                items = _text_items(pnp.TEXT_CODEC, piece)
            else:
                items = pickle.loads(piece)
            if len(items) != ncols * n:
                raise _corrupt('an object block holds %d items, its header '
                               'says %d', len(items), ncols * n)
            out[..., off:off + n] = _objects(items).reshape(lead + (n,))
            off += n
        return out
    # numbers: every piece decompressed into its place, in one C call
    codec = pnp.NUMERIC_CODEC if kinds[0] == K_NUM else _RAW
    _cpartd.concat_into(codec, list(pieces), out.reshape(-1).view(np.uint8),
                        ncols, dtype.itemsize, rows)
    return out


def _concat(heads, frames, memo):
    h0, k0 = heads[0][0], heads[0][1]
    rows = [h[2][2][-1] for h, _, _ in heads]
    columns = _index_from(h0[0], heads[0][1][0], frames[0][1])
    typ, attr, dtype, _ = h0[1]
    data = _concat_values(dtype, (0,), [f[2] for f in frames], rows,
                          [k[1] for _, k, _ in heads])
    index = typ.__new__(typ, data=data, **attr)
    blocks = []
    for j, bh in enumerate(h0[2:]):
        placement, bdtype, shape, (kind, ext) = bh
        pieces = [f[3 + j] for f in frames]
        if kind == 'masked_type':
            blocks.append(make_block(_masked(ext[0], bdtype, pieces, rows),
                                     placement=placement))
            continue
        if kind == 'categorical_type':
            ext = _categories(ext, k0, frames[0][1:], memo)
        values = _concat_values(bdtype, tuple(shape), pieces, rows,
                                [k[2 + j] for _, k, _ in heads])
        blocks.append(_finish_block(values, kind, ext, placement))
    # Not consolidated: merging blocks of one dtype would copy them again
    # (pandas consolidates later, if an operation needs it).
    return pd.DataFrame(create_block_manager_from_blocks(
        blocks, [columns, index], consolidate=False))


def _get_one(chunk, memo):
    """The DataFrame of one key's bytes; memo: the last static header and
    categories read, shared by a get's keys."""
    outer = _cpartd.framesplit(chunk, torn='drop')
    if not outer:
        return pd.DataFrame()
    frames = [_cpartd.framesplit(f) for f in outer]
    heads = [_read_header(f[0], memo) for f in frames]
    if len(frames) > 1 and _plan(heads, frames):
        return _concat(heads, frames, memo)
    dfs = [_from_parts(h, k, f[1:], memo) for (h, k, _), f in
           zip(heads, frames)]
    return dfs[0] if len(dfs) == 1 else join(dfs)
