# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""partd.dict: Dict, the in-memory store (libpartd pd_dict)."""
from . import _cpartd
from .core import CStore, Interface

__all__ = ['Dict']


class Dict(CStore, _cpartd.Dict, Interface):
    """Dict(): keys to bytes in memory.  Keys are converted as File names
    them (an int key is its str), so Dict, File and Buffer agree on keys."""

    def __reduce__(self):
        # A Dict pickles to its data, as partd's.
        return (_restore_dict, (type(self), self._items()))

    def _items(self):
        keys = self.keys()
        return dict(zip(keys, self._get(keys)))

    @property
    def data(self):
        """A snapshot {key: [bytes]} in the shape of partd's Dict.data."""
        return {k: [v] for k, v in self._items().items()}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.drop()


def _restore_dict(cls, items):
    d = cls()
    if items:
        d.append(items)
    return d
