# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""
get/put functions that consume/produce Python lists using Pickle to serialize
"""
from functools import partial
import pickle

from .encode import Encode

__all__ = ['Pickle', 'concat']


def concat(lists):
    return sum(lists, [])


Pickle = partial(Encode,
                 partial(pickle.dumps, protocol=pickle.HIGHEST_PROTOCOL),
                 pickle.loads,
                 concat)
