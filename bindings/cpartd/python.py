# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""
get/put functions that consume/produce Python lists using msgpack or pickle
to serialize.

First we try msgpack (it's faster).  If that fails then we default to pickle.
"""
from functools import partial
import pickle

try:
    import msgpack
except ImportError:
    msgpack = False

from .encode import Encode

__all__ = ['Python', 'dumps', 'loads', 'concat']


def dumps(x):
    try:
        return msgpack.packb(x, use_bin_type=True)
    except Exception:
        return pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL)


def loads(x):
    try:
        return msgpack.unpackb(x, raw=False)
    except Exception:
        return pickle.loads(x)


def concat(lists):
    return sum(lists, [])


Python = partial(Encode, dumps, loads, concat)
