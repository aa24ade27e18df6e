# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""cpartd.Log: the Log store (libpartd pd_log) with the partd surface:
round trips, pickling by path, under Buffer and the codec layers, and two
processes appending to one directory at once."""
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

import cpartd
from cpartd import Buffer, Dict, Log, Pickle
from cpartd.compressed import ZLib, Snappy
from conftest import (build_python_dir, check_pickled_by_path,
                      check_temporary_pickle_keeps_dir, run_threads)


def test_round_trip(root):
    p = Log(root)
    assert os.path.isfile(os.path.join(root, 'partd-log'))
    p.append({'x': b'Hello', 'y': b'abc'})
    p.append({'x': b'World!', 'y': b'def'})
    assert p.get('x') == b'HelloWorld!'
    assert p.get(['y', 'x']) == [b'abcdef', b'HelloWorld!']
    assert p.get('z') == b''
    p.append({('a', 'b'): b'1', 3: b'2'})
    assert p.get(('a', 'b')) == b'1'
    assert p.get('3') == b'2'
    assert sorted(map(str, p.keys())) == sorted(
        map(str, ['x', 'y', ('a', 'b'), '3']))
    p.delete(['x'])
    assert p.get('x') == b''
    p.iset('i', b'once')
    p.iset('i', b'twice')              # iset is idempotent
    assert p.get('i') == b'once'
    with p.lock:
        p.append({'y': b'!'}, lock=False)
    assert p.get('y') == b'abcdef!'
    p.drop()
    assert p.get(['y', 'i']) == [b'', b'']
    assert list(p.keys()) == []
    p.close()
    assert p.closed


def test_reopen_after_close_compacts(root):
    p = Log(root)
    for i in range(100):
        p.append({'k%d' % (i % 7): b'%d,' % i})
    want = {k: p.get(k) for k in ['k%d' % j for j in range(7)]}
    p.close()                           # the last handle compacts
    q = Log(root)
    assert {k: q.get(k) for k in want} == want
    q.compact()
    assert {k: q.get(k) for k in want} == want
    assert q.torn == 0 and q.notice == ''
    assert q._root.endswith('store')
    q.close()


def test_refuses_a_file_store(root):
    f = cpartd.File(root)
    f.append({'x': b'1'})
    f.close()
    with pytest.raises(ValueError, match='not a Log'):
        Log(root)


def test_context_manager_and_temporary(tmp_path):
    with Log(dir=str(tmp_path)) as p:
        path = p.path
        p.append({'x': b'1'})
        assert p.get('x') == b'1'
    assert not os.path.exists(path)
    p = Log()
    path = p.path
    p.append({'x': b'1'})
    del p
    assert not os.path.exists(path)


def test_pickle(root):
    check_pickled_by_path(Log, root).close()


def test_temporary_pickle_does_not_remove():
    check_temporary_pickle_keeps_dir(Log)


def test_under_buffer(root):
    p = Buffer(Dict(), Log(root), available_memory=10)
    p.append({'x': b'Hello', 'y': b'abc'})
    p.append({'x': b'World!' * 10, 'y': b'def'})
    assert p.get('x') == b'Hello' + b'World!' * 10
    assert p.get('y') == b'abcdef'
    assert p.slow.get('x') != b''       # spilled past the limit
    p.flush()
    assert p.fast.get('y') == b''
    assert p.slow.get('y') == b'abcdef'
    q = pickle.loads(pickle.dumps(p))
    assert q.get('x') == b'Hello' + b'World!' * 10
    p.close()


@pytest.mark.parametrize('layer', [ZLib, Snappy])
def test_under_a_codec(root, layer):
    p = layer(Log(root))
    p.append({'x': b'a' * 1000, 'y': b'b'})
    p.append({'x': b'c' * 1000})
    assert p.get('x') == b'a' * 1000 + b'c' * 1000
    assert p.get(['y', 'z']) == [b'b', b'']
    q = pickle.loads(pickle.dumps(p))
    assert q.get('y') == b'b'


def test_under_pickle(root):
    p = Pickle(Log(root))
    p.append({'x': [1, 2], 'y': ['a']})
    p.append({'x': [3]})
    assert p.get('x') == [1, 2, 3]
    assert p.get(['y']) == [['a']]


def test_threads_append_at_once(root):
    p = Log(root)

    def work(t):
        for i in range(200):
            p.append({'k%d' % (i % 5): b'%d.%d,' % (t, i)})

    assert run_threads(work) == []
    got = b''.join(p.get(['k%d' % j for j in range(5)]))
    assert sorted(got.split(b',')[:-1]) == sorted(
        b'%d.%d' % (t, i) for t in range(4) for i in range(200))
    p.close()


_CHILD = textwrap.dedent('''
    import sys
    from cpartd import Log
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    p = Log(path)
    for i in range(n):
        p.append({'k%d' % (i % 13): b'%s%d,' % (tag.encode(), i),
                  'all': b'%s,' % tag.encode()})
    p.close()
''')


def test_two_processes_append_at_once(root):
    Log(root).close()
    env = dict(os.environ, PYTHONPATH=build_python_dir())
    n = 2000
    procs = [subprocess.Popen([sys.executable, '-c', _CHILD, root, tag,
                               str(n)], env=env) for tag in 'ab']
    assert [pr.wait(timeout=120) for pr in procs] == [0, 0]
    p = Log(root)
    assert p.get('all').count(b'a,') == n
    assert p.get('all').count(b'b,') == n
    for tag in 'ab':
        seen = []
        for j in range(13):
            items = [x for x in p.get('k%d' % j).split(b',') if x]
            mine = [int(x[1:]) for x in items if x[:1] == tag.encode()]
            assert mine == sorted(mine)  # one writer's appends in order
            seen += mine
        assert sorted(seen) == list(range(n))
    p.close()
