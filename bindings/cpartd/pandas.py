# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""partd.pandas: PandasColumns and PandasBlocks.

PandasBlocks stores each appended DataFrame as one frame: a pickled header,
then the column index, the index and each block as bytes.  Two formats
(docs/pandas-blocks.md), told apart by the header frame by frame:

- partd's (``serialize``): numbers compressed with blosc, object columns
  pickled and compressed as text; partd and cpartd read each other's.
- cpartd's own (``serialize_cpartd``), for stores only cpartd reads
  (``private_store``: dask's temporary shuffle stores among them): numbers
  raw, and object columns of str, bytes, float and None in a compact
  encoding made and read in C (strings.c), no pickle.

The byte work runs in C without the GIL where it can
(cpartd._cpartd.blocks_frames, decompress, concat_into, strings_into).

get(key) of a key holding several DataFrames with the same columns, block
layout and dtypes (a shuffle's partition) builds the result once: each block
is decoded straight into its place in one array, instead of making one
DataFrame per append and concatenating them (partd's join).  Anything else
(different columns or categories, extension arrays, special indexes) goes
through partd's path: one DataFrame per append, then ``join``.  ``join``
keeps categorical columns categorical (partd 1.4).
"""
import os
import pickle

import pandas as pd

from . import _cpartd
from . import numpy as pnp
from .core import Interface
from .encode import Encode, _Wrapping
from .utils import extend, framesplit, frame  # noqa: F401 (partd's names)
# The frames (blocks.py); partd's module-level names stay importable here.
from .blocks import (  # noqa: F401
    MARK, MAGIC2, VERSION, dumps, serialize, serialize_cpartd, deserialize,
    join, index_to_header_bytes, index_from_header_bytes,
    block_to_header_bytes, block_from_header_bytes, is_extension_array,
    _decode, _parts, _read_header, _get_one)

__all__ = ['PandasColumns', 'PandasBlocks', 'serialize', 'deserialize',
           'serialize_cpartd', 'private_store', 'join', 'index_to_header_bytes', 'index_from_header_bytes',
           'block_to_header_bytes', 'block_from_header_bytes']

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


# ------------------------------------------------------- the store

def private_store(p):
    """True when what is put in store p is read by cpartd alone: a cpartd
    Dict or Log (no other implementation reads them), a File in a
    temporary directory (one in ``file.cleanup_files``, removed at exit:
    File() without a path, and dask's shuffle stores), or a cpartd Buffer
    or compressor over such stores."""
    if isinstance(p, (_cpartd.Dict, _cpartd.Log)):
        return True
    if isinstance(p, _cpartd.Buffer):
        return private_store(p.fast) and private_store(p.slow)
    if isinstance(p, _cpartd.Compressed):
        return private_store(p.partd)
    if isinstance(p, _cpartd.File):
        path = getattr(p, 'path', None)
        if not path:
            return False
        from .file import cleanup_files
        path = os.path.abspath(path)
        return any(os.path.abspath(c) == path for c in cleanup_files)
    return False


class PandasBlocks(Encode):
    """PandasBlocks(partd=None, format=None): an Encode store of DataFrames
    (partd's ``partial(Encode, serialize, deserialize, join)``, with a
    faster get).

    format: 'partd' writes partd's format (serialize), which partd reads;
    'cpartd' writes cpartd's own (serialize_cpartd: no compression, string
    columns without pickle), which only cpartd reads; None (the default)
    is 'cpartd' when ``private_store(partd)`` (the store is cpartd's alone:
    dask's shuffle stores, a File() of its own), else 'partd'.  get reads
    both, frame by frame."""

    def __init__(self, partd=None, format=None):
        Encode.__init__(self, serialize, deserialize, join, partd)
        if format is None:
            format = 'cpartd' if private_store(self.partd) else 'partd'
        if format not in ('partd', 'cpartd'):
            raise ValueError("PandasBlocks: format is 'partd' or 'cpartd', "
                             "not %r" % (format,))
        self.format = format
        if format == 'cpartd':
            self.encode = serialize_cpartd

    def __reduce__(self):
        return (PandasBlocks, (self.partd, self.format))

    def _get(self, keys, **kwargs):
        memo = {}
        return [_get_one(chunk, memo) for chunk in self._raw(keys, **kwargs)]
