# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""cpartd attempts through a Server over a Log (docs/zmq.md, "Attempts"):
cpartd.Client's attempt() as a context manager and explicitly, the first
commit winning, exceptions inside the block, a client process killed
mid-attempt, and a server whose store has no attempts."""
import multiprocessing
import os
import signal

import pytest

from cpartd import AttemptConflict, Dict, Log
from cpartd.zmq import Client, Server

from conftest import check_exception_aborts, conflicting_commits


@pytest.fixture
def served(root):
    s = Server(Log(root))
    c = Client(s.address)
    yield s, c
    c.close()
    s.close()


def test_with_commits_and_exceptions_abort(served):
    s, c = served
    r = Client(s.address)
    with c.attempt('w', 0) as a:
        a.append({'x': b'a;', 'y': b'1'})
        a.append({'x': b'b;'})
        assert r.get(['x', 'y']) == [b'', b'']     # invisible meanwhile
    assert r.get(['x', 'y']) == [b'a;b;', b'1']
    check_exception_aborts(c, r, 'v', b'a;b;')
    r.close()


def test_first_commit_wins(served):
    s, c = served
    d = Client(s.address)
    e = conflicting_commits(c, d)
    assert (e.writer, e.attempt) == ('w', 2)
    assert s.address.decode() in str(e)
    assert c.get('k') == b'one;'
    with pytest.raises(AttemptConflict):
        c.attempt('w', 3)
    # Explicit abort, and the same (writer, attempt) begun twice.
    e = c.attempt(7, 0)
    e.append({'m': b'x'})
    e.abort()
    f, g = c.attempt(7, 0), d.attempt(7, 0)
    g.append({'m': b'g'})
    f.append({'m': b'f'})
    g.commit()
    with pytest.raises(AttemptConflict):
        f.commit()
    assert c.get('m') == b'g'
    d.close()


def _killed_child(address, ready):
    c = Client(address)
    a = c.attempt('dead', 1)
    for _ in range(20):
        a.append({'k': b'half;'})
    c.get('k')                                      # everything acknowledged
    ready.set()
    signal.pause()


def test_client_killed_mid_attempt(served):
    s, c = served
    ctx = multiprocessing.get_context('fork')
    ready = ctx.Event()
    p = ctx.Process(target=_killed_child, args=(s.address, ready))
    p.start()
    assert ready.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    assert c.get('k') == b''
    with c.attempt('dead', 2) as a:
        a.append({'k': b'whole'})
    assert c.get('k') == b'whole'


def test_server_without_attempts():
    s = Server(Dict())
    c = Client(s.address)
    try:
        with pytest.raises(Exception, match='no attempts'):
            c.attempt('w', 0)
        c.append({'k': b'plain'})                   # plain appends work
        assert c.get('k') == b'plain'
    finally:
        c.close()
        s.close()
