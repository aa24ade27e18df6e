# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""cpartd's tests.  Run with tests/python/run.sh <build-dir>, which puts
<build>/python on PYTHONPATH; Debian's /usr/bin/python3 has partd 1.3."""
import os
import pickle
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# bindings/cpartd is the source tree without the extension: never import it.
sys.path[:] = [p for p in sys.path
               if os.path.abspath(p or '.') != os.path.join(
                   os.path.dirname(os.path.dirname(HERE)), 'bindings')]

import cpartd  # noqa: E402

try:
    import partd as ref
    if getattr(ref, '__file__', '') and 'cpartd' in ref.__file__:
        ref = None
except ImportError:  # pragma: no cover
    ref = None


@pytest.fixture
def needs_ref():
    if ref is None:
        pytest.skip('the reference partd is not installed')
    return ref


@pytest.fixture
def root(tmp_path):
    """A directory for one store (not yet created)."""
    return str(tmp_path / 'store')


def build_python_dir():
    return os.path.dirname(os.path.dirname(os.path.abspath(cpartd.__file__)))


# scripts/test's pip pass (tests/python/pip.sh) runs this suite against a
# cpartd that pip installed into a virtual environment and sets this: the
# tests of the installed package's metadata and drop-in must run there.
INSTALLED = os.environ.get('CPARTD_TEST_INSTALLED') == '1'


def repo_root():
    return os.path.dirname(os.path.dirname(HERE))


def conflicting_commits(p, q):
    """Attempts 1 (through store p) and 2 (through q) of writer 'w' append
    to key k; 1 commits first, so 2's commit raises AttemptConflict, which
    is returned."""
    a1 = p.attempt('w', 1)
    a2 = q.attempt('w', 2)
    a1.append({'k': b'one;'})
    a2.append({'k': b'two;'})
    a1.commit()
    with pytest.raises(cpartd.AttemptConflict) as ei:
        a2.commit()
    return ei.value


# Exceptions a damaged PandasBlocks key may raise instead of CorruptError.
DAMAGE_ERRORS = (ValueError, TypeError, KeyError, IndexError, EOFError,
                 pickle.UnpicklingError, MemoryError, OverflowError)


def damage_rounds(p, key, seed, tolerated=DAMAGE_ERRORS):
    """300 rounds of damage to PandasBlocks p's file of `key` (cut short
    every third round; 1-3 bytes changed outside the pickled headers, which
    are unpickled as partd does): each get returns a DataFrame or raises
    one of `tolerated`.  Returns the set of outcomes ('ok' or the
    exception's name)."""
    import random
    import pandas as pd
    fn = p.partd.filename(key)
    with open(fn, 'rb') as f:
        good = f.read()
    headers, off = [], 0
    for outer in cpartd._cpartd.framesplit(good, torn='drop'):
        hlen = int.from_bytes(bytes(outer[:8]), 'little')
        headers.append(range(off + 16, off + 16 + hlen))
        off += 8 + len(outer)
    rnd = random.Random(seed)
    outcomes = set()
    for trial in range(300):
        data = bytearray(good)
        if trial % 3 == 0:
            data = data[:rnd.randrange(len(data))]
        for _ in range(rnd.randrange(1, 4)):
            i = rnd.randrange(len(data))
            if not any(i in r for r in headers):
                data[i] = rnd.randrange(256)
        with open(fn, 'wb') as f:
            f.write(data)
        try:
            assert isinstance(p.get(key), pd.DataFrame)
            outcomes.add('ok')
        except tolerated as e:
            outcomes.add(type(e).__name__)
    return outcomes
