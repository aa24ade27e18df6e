# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""cpartd's tests.  Run with tests/python/run.sh <build-dir>, which puts
<build>/python on PYTHONPATH; Debian's /usr/bin/python3 has partd 1.3."""
import contextlib
import os
import pickle
import sys
import threading

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


def run_threads(work, n=4):
    """Runs work(0) ... work(n - 1) at once, each in a thread of its own,
    and waits for them all.  Returns the exceptions they raised (a list,
    empty when none did)."""
    errors = []

    def run(t):
        try:
            work(t)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    ts = [threading.Thread(target=run, args=(t,)) for t in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors


@contextlib.contextmanager
def spinning():
    """A thread counting as fast as it can while the block runs; yields a
    list whose [0] is the count.  It counts during a call only if the call
    releases the GIL."""
    count = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        yield count
    finally:
        stop.set()
        t.join()


# A script whose child process (multiprocessing's spawn) prints whether
# `import partd` gives cpartd there.
SPAWNED_CHILD = (
    "import multiprocessing as mp\n"
    "def f(q):\n"
    "    import partd, cpartd\n"
    "    q.put(partd is cpartd)\n"
    "if __name__ == '__main__':\n"
    "    ctx = mp.get_context('spawn')\n"
    "    q = ctx.Queue()\n"
    "    p = ctx.Process(target=f, args=(q,))\n"
    "    p.start(); print(q.get(timeout=120)); p.join()\n")


def check_pickled_by_path(cls, root):
    """A cls(root) store (File, Log) pickles by its path: the copy is a cls
    with a handle of its own on the same directory, and collecting it
    never removes the directory.  Returns the store."""
    p = cls(root)
    p.append({'x': b'1'})
    q = pickle.loads(pickle.dumps(p))
    assert isinstance(q, cls)
    assert q.path == root
    assert q.get('x') == b'1'
    q.append({'x': b'2'})               # its own handle on the directory
    assert p.get('x') == b'12'
    del q
    assert os.path.isdir(root)
    return p


def check_temporary_pickle_keeps_dir(cls):
    """Collecting an unpickled copy of a temporary cls() (File, Log) never
    removes the directory: the original removes it."""
    p = cls()
    q = pickle.loads(pickle.dumps(p))
    del q
    assert os.path.isdir(p.path)
    p.close()


def check_exception_aborts(p, r, writer, before):
    """An exception raised in `with p.attempt(writer, 0)` propagates and
    aborts the attempt: its append to 'x' is lost (store r reads `before`).
    The writer never committed: its retry, attempt 1, commits."""
    with pytest.raises(KeyError, match='boom'):
        with p.attempt(writer, 0) as a:
            a.append({'x': b'lost'})
            raise KeyError('boom')
    assert not a.open
    assert r.get('x') == before
    with p.attempt(writer, 1) as a:
        a.append({'x': b'kept'})
    assert r.get('x') == before + b'kept'


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
