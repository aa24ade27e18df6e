# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""cpartd attempts (retried writers): store.attempt(writer, n) as a context
manager and explicitly, the first commit winning, exceptions inside the
block, the layers that pass attempts to a Log, pickled stores used by child
processes, and bad arguments."""
import multiprocessing
import os
import pickle
import signal

import pytest

import cpartd
from cpartd import AttemptConflict, Buffer, Dict, File, Log, Pickle
from cpartd.compressed import ZLib

from conftest import check_exception_aborts, conflicting_commits, run_threads


def test_with_commits_on_exit(root):
    p = Log(root)
    p.append({'x': b'a;'})
    with p.attempt('w', 0) as a:
        a.append({'x': b'b;', 'y': b'1'})
        a.append({'x': b'c;'})
        assert p.get(['x', 'y']) == [b'a;', b'']   # invisible meanwhile
        assert p.keys() == ['x']
        assert a.open
    assert not a.open
    assert p.get(['x', 'y']) == [b'a;b;c;', b'1']
    assert repr(a) == "<cpartd.Attempt writer='w' attempt=0 finished>"
    assert (a.writer, a.attempt, a.store) == ('w', 0, p)


def test_exception_in_block_aborts(root):
    p = Log(root)
    check_exception_aborts(p, p, 'w', b'')
    # An error inside a with-block after an explicit abort: still raised.
    with pytest.raises(ZeroDivisionError):
        with p.attempt('v', 0) as a:
            a.abort()
            1 / 0


def test_explicit_commit_and_abort(root):
    p = Log(root)
    a = p.attempt('w', 7)
    a.append({'k': b'1'})
    a.abort()
    a.abort()                           # idempotent
    with pytest.raises(ValueError, match='finished'):
        a.append({'k': b'2'})
    with pytest.raises(ValueError, match='finished'):
        a.commit()
    b = p.attempt('w', 8)
    b.append({'k': b'2'}, fsync=True)
    b.commit(fsync=True)
    assert p.get('k') == b'2'
    # Committed (or aborted) inside the block: the exit does nothing more.
    with p.attempt('u', 0) as c:
        c.append({'k': b'3'})
        c.commit()
    assert p.get('k') == b'23'
    # Never committed, collected: discarded.
    d = p.attempt('z', 0)
    d.append({'k': b'gone'})
    del d
    assert p.get('k') == b'23'


def test_conflict(root):
    p, q = Log(root), Log(root)
    e = conflicting_commits(p, q)
    assert isinstance(e, RuntimeError)
    assert (e.writer, e.attempt) == ('w', 2)
    assert "writer 'w' attempt 2" in str(e)
    assert 'attempt 1 of this writer' in str(e)
    assert p.get('k') == q.get('k') == b'one;'
    # Begin refuses a writer that committed; in a with statement too.
    with pytest.raises(AttemptConflict) as ei:
        with p.attempt('w', 3) as a:
            a.append({'k': b'never'})
    assert ei.value.attempt == 3
    p.close()
    q.close()
    r = Log(root)                       # after the close's compaction
    with pytest.raises(AttemptConflict):
        r.attempt('w', 4)
    assert r.get('k') == b'one;'


def test_int_writers_are_their_text(root):
    p = Log(root)
    with p.attempt(3, 0) as a:
        a.append({'k': b'x'})
    with pytest.raises(AttemptConflict):
        p.attempt('3', 1)
    with p.attempt(2**70, 0) as a:      # any int
        a.append({'k': b'y'})
    assert p.get('k') == b'xy'


def test_bad_arguments(root):
    p = Log(root)
    with pytest.raises(ValueError, match='>= 0'):
        p.attempt('w', -1)
    with pytest.raises(OverflowError, match='64 bits'):
        p.attempt('w', 2**64)
    p.attempt('w', 2**64 - 1).abort()
    for bad in (1.5, '1', None, True):
        with pytest.raises(TypeError, match='attempt number is an int'):
            p.attempt('w', bad)
    for bad in (b'w', 1.0, None, ('a', 'b'), False):
        with pytest.raises(TypeError, match='writer is a str or an int'):
            p.attempt(bad, 0)
    with pytest.raises(TypeError):
        p.attempt('w')
    a = p.attempt('w', 0)
    with pytest.raises(TypeError):
        a.append(['not', 'a', 'mapping'])
    with pytest.raises(TypeError):
        a.append({'k': b'v'}, lock=False)
    a.abort()


def test_stores_without_attempts(root):
    with pytest.raises(NotImplementedError, match='a dict store has no '
                                                  'attempts'):
        Dict().attempt('w', 0)
    f = File()
    with pytest.raises(NotImplementedError, match='file'):
        f.attempt('w', 0)
    with pytest.raises(NotImplementedError, match='Encode stores have no'):
        Pickle(Log(root)).attempt('w', 0)


def test_layers(root):
    z = ZLib(Log(root))
    with z.attempt('w', 0) as a:
        a.append({'k': b'zipped' * 100})
    assert z.get('k') == b'zipped' * 100
    with pytest.raises(AttemptConflict):
        z.attempt('w', 1)
    b = Buffer(Dict(), Log(os.path.join(root, 'b')))
    b.append({'k': b'f1;'})
    with b.attempt('w', 0) as a:
        a.append({'k': b'A;', 'n': b'N'})
        b.append({'k': b'f2;'})
        assert b.get('k') == b'f1;f2;'
    b.append({'k': b'f3;'})
    assert b.get(['k', 'n']) == [b'f1;f2;A;f3;', b'N']


def test_namespace(root):
    log = Log(root)
    n1, n2 = cpartd.Namespace(log, 'one'), cpartd.Namespace(log, 'two')
    with n1.attempt('w', 0) as a:       # writers are per namespace
        a.append({'k': b'1'})
    with n2.attempt('w', 0) as a:
        a.append({'k': b'2'})
    assert (n1.get('k'), n2.get('k')) == (b'1', b'2')
    with pytest.raises(AttemptConflict, match="'one'"):
        n1.attempt('w', 1)


def test_closed_store(root):
    p = Log(root)
    a = p.attempt('w', 0)
    a.append({'k': b'v'})
    p.close()                           # aborts the attempt
    with pytest.raises(ValueError, match='closed'):
        a.append({'k': b'v'})
    with pytest.raises(ValueError):
        a.commit()
    a.abort()
    q = Log(root)
    assert q.get('k') == b''


def _child(store, writer, n, die):
    with store.attempt(writer, n) as a:
        for i in range(20):
            a.append({'k%d' % (i % 3): ('%s.%d;' % (writer, i)).encode()})
        if die:
            os.kill(os.getpid(), signal.SIGKILL)


def _want(writer):
    out = {}
    for i in range(20):
        k = 'k%d' % (i % 3)
        out[k] = out.get(k, b'') + ('%s.%d;' % (writer, i)).encode()
    return out


def test_pickled_store_children(root):
    p = Log(root)
    st = pickle.loads(pickle.dumps(p))
    ctx = multiprocessing.get_context('spawn')
    # A child killed inside its attempt: nothing of it; the retry commits.
    pr = ctx.Process(target=_child, args=(st, 'w0', 0, True))
    pr.start()
    pr.join(60)
    assert pr.exitcode == -signal.SIGKILL
    assert p.get(['k0', 'k1', 'k2']) == [b'', b'', b'']
    pr = ctx.Process(target=_child, args=(st, 'w0', 1, False))
    pr.start()
    pr.join(60)
    assert pr.exitcode == 0
    want = _want('w0')
    assert p.get(['k0', 'k1', 'k2']) == [want['k0'], want['k1'], want['k2']]
    # A second retry loses: the child fails with AttemptConflict.
    pr = ctx.Process(target=_child, args=(st, 'w0', 2, False))
    pr.start()
    pr.join(60)
    assert pr.exitcode == 1
    assert p.get(['k0', 'k1', 'k2']) == [want['k0'], want['k1'], want['k2']]


def test_threads_share_an_attempt(root):
    p = Log(root)
    a = p.attempt('w', 0)
    errs, done = [], [0] * 4

    def run(t):
        for i in range(50):
            try:
                a.append({'k%d' % t: b'x'})
                done[t] += 1
            except RuntimeError as e:   # another thread inside: refused
                errs.append(e)

    assert run_threads(run) == []
    a.commit()
    # Every append that returned is there, once; the refused ones are not.
    assert [len(p.get('k%d' % t)) for t in range(4)] == done
    assert sum(done) + len(errs) == 200
    assert all('another thread' in str(e) for e in errs)
