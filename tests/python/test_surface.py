# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""The partd surface on cpartd's File, Dict and Buffer (the reference's own
tests, ported, plus what they leave out)."""
import os
import pickle
import threading

import pytest

import cpartd
from cpartd import Buffer, Dict, File
from cpartd.buffer import CBuffer, PyBuffer, keys_to_flush
from cpartd.utils import frame, framesplit, flatten, nested_get, suffix, extend
from conftest import (check_pickled_by_path, check_temporary_pickle_keeps_dir,
                      run_threads)


def stores(root):
    return {
        'File': lambda: File(root),
        'Dict': Dict,
        'Buffer': lambda: Buffer(Dict(), File(root), available_memory=10),
    }


@pytest.fixture(params=['File', 'Dict', 'Buffer'])
def store(request, root):
    p = stores(root)[request.param]()
    yield p
    if not p.closed:
        p.close()


def test_partd(store):
    p = store
    p.append({'x': b'Hello', 'y': b'abc'})
    p.append({'x': b'World!', 'y': b'def'})
    assert p.get('x') == b'HelloWorld!'
    assert p.get(['y', 'x']) == [b'abcdef', b'HelloWorld!']
    assert p.get('z') == b''
    p.delete(['x'])
    assert p.get('x') == b''
    assert p.get('y') == b'abcdef'
    p.delete('y')
    assert p.get(['x', 'y']) == [b'', b'']


def test_key_types(store):
    p = store
    p.append({('a', 'b'): b'1', 3: b'2', b'raw': b'3', ('c', 4): b'4'})
    assert p.get(('a', 'b')) == b'1'
    assert p.get(3) == b'2'
    assert p.get('3') == b'2'       # an int key is str(int), as partd names it
    assert p.get(b'raw') == b'3'
    assert p.get('raw') == b'3'     # bytes are the key's bytes
    assert p.get(('c', '4')) == b'4'
    assert p.get(('c', 4)) == b'4'
    assert p.get(('a',)) == b''     # a 1-tuple is its part
    p.append({('z',): b'one'})
    assert p.get('z') == b'one'
    p.append({('n', ('e', 'st')): b'!'})  # nested tuples flatten, as token()
    assert p.get(('n', 'e', 'st')) == b'!'


def test_nested_get(store):
    p = store
    p.append({'x': b'1', 'y': b'2', 'z': b'3'})
    assert p.get(['x', ['y', 'z']]) == [b'1', [b'2', b'3']]
    assert p.get([['x'], [['y']], 'z', []]) == [[b'1'], [[b'2']], b'3', []]
    assert p.get([]) == []


def test_iset(store):
    p = store
    p.iset('x', b'111')
    p.iset('x', b'222')
    assert p.get('x') == b'111'
    p.iset(('t', 1), b'a')
    assert p.iget(('t', 1)) == b'a'
    p.drop()                        # drop forgets what iset has seen
    p.iset('x', b'333')
    assert p.get('x') == b'333'


def test_drop(store):
    p = store
    p.append({'x': b'Hello'})
    p.drop()
    assert p.get('x') == b''
    p.append({'x': b'again'})       # still usable
    assert p.get('x') == b'again'


def test_lock_kwarg(store):
    p = store
    with p.lock:
        p.append({'x': b'1'}, lock=False)
        p.append({'x': b'2'}, lock=False)
        assert p.get('x', lock=False) == b'12'
        assert p._get(['x'], lock=False) == [b'12']
        p.delete('x', lock=False)
    assert p.get('x') == b''
    lk = p.lock
    assert lk.acquire() is True
    lk.release()
    with pytest.raises(RuntimeError):
        lk.release()


def test_append_kwargs_ignored(store):
    # partd's append/get take **kwargs and ignore unknown ones.
    store.append({'x': b'1'}, whatever=3)
    assert store.get('x', whatever=3) == b'1'


def test_pop(store):
    store.append({'x': b'1', 'y': b'2'})
    assert store.pop(['x', 'y']) == [b'1', b'2']
    assert store.get(['x', 'y']) == [b'', b'']


def test_values_any_buffer(store):
    import array
    store.append({'a': bytearray(b'ab'), 'b': memoryview(b'xyz')[1:],
                  'c': array.array('i', [1])})
    assert store.get(['a', 'b', 'c']) == [b'ab', b'yz',
                                          array.array('i', [1]).tobytes()]


def test_mapping_not_dict(store):
    from collections import OrderedDict
    from types import MappingProxyType
    store.append(OrderedDict([('a', b'1')]))
    store.append(MappingProxyType({'a': b'2'}))
    assert store.get('a') == b'12'


def test_context_manager_dict():
    with Dict() as p:
        p.append({'x': b'1'})
    assert p.get('x') == b''


def test_file_basics(tmp_path):
    path = str(tmp_path / 'p')
    with File(path) as p:
        assert p.path == path
        assert os.path.isdir(path)
        p.append({'x': b'Hello'})
        assert os.path.exists(p.filename('x'))
        assert p.filename('x') == os.path.join(path, 'x')
        assert p.filename(('a', 'b')) == os.path.join(path, 'a', 'b')
        p.append({('a', 'b'): b'1'})
        with open(p.filename(('a', 'b')), 'rb') as f:
            assert f.read() == b'1'
    assert not os.path.exists(path)   # __exit__ drops and removes it
    with pytest.raises(ValueError):
        p.get('x')


def test_file_temporary_and_cleanup(tmp_path):
    p = File(dir=str(tmp_path))
    assert p.path.endswith('.partd')
    assert os.path.dirname(p.path) == str(tmp_path)
    assert p.path in cpartd.file.cleanup_files
    p.append({'x': b'1'})
    path = p.path
    del p                              # a temporary store goes with its object
    assert not os.path.exists(path)
    q = File('')                       # an empty path is a temporary too
    assert q._explicitly_given_path is False
    q.close()


def test_file_explicit_path_kept(tmp_path):
    path = str(tmp_path / 'keep')
    p = File(path)
    p.append({'x': b'1'})
    del p
    assert os.path.isdir(path)
    assert File(path).get('x') == b'1'


def test_file_creates_parents(tmp_path):
    path = str(tmp_path / 'a' / 'b' / 'c')
    p = File(path)
    p.append({'x': b'1'})
    assert os.path.isfile(os.path.join(path, 'x'))


def test_file_pathlike(tmp_path):
    p = File(tmp_path / 'pl')
    p.append({'x': b'1'})
    assert p.filename('x') == str(tmp_path / 'pl' / 'x')


def test_file_fsync(root):
    p = File(root)
    p.append({'x': b'1'}, fsync=True)
    assert p.get('x') == b'1'


def test_file_pickle(root):
    check_pickled_by_path(File, root)


def test_temp_file_pickle_does_not_remove():
    check_temporary_pickle_keeps_dir(File)


def test_dict_pickle():
    d = Dict()
    d.append({'x': b'1', ('a', 'b'): b'2'})
    e = pickle.loads(pickle.dumps(d))
    assert isinstance(e, Dict)
    assert e.get(['x', ('a', 'b')]) == [b'1', b'2']
    e.append({'x': b'3'})
    assert d.get('x') == b'1'
    assert d.data == {'x': [b'1'], ('a', 'b'): [b'2']}


def test_buffer_spills(root):
    p = Buffer(Dict(), File(root), available_memory=10)
    assert isinstance(p, CBuffer) and isinstance(p, Buffer)
    p.append({'x': b'Hello', 'y': b'abc'})
    assert p.memory_usage == 8
    p.append({'x': b'World!'})
    # As partd: the batch is appended, then the largest key spills while
    # over the limit (x: all of it to slow, the batch's part included).
    assert p.memory_usage == 3
    assert p.get('x') == b'HelloWorld!'
    assert p.slow.get('x') == b'HelloWorld!'
    assert p.fast.get('x') == b''
    assert p.fast.get('y') == b'abc'
    assert p.available_memory == 10
    p.flush()
    assert p.memory_usage == 0
    assert p.slow.get('y') == b'abc'


def test_buffer_order_after_spill(root):
    # partd 1.3 returns 'third' + 'first-' + 'second-...' (its defect 3).
    p = Buffer(Dict(), File(root), available_memory=20)
    p.append({'k': b'first-'})
    p.append({'k': b'second-' + b'x' * 20})
    p.append({'k': b'third'})
    assert p.get('k') == b'first-second-' + b'x' * 20 + b'third'


def test_buffer_flush_keys(root):
    p = Buffer(Dict(), File(root))
    p.append({'a': b'1', 'b': b'2'})
    p.flush(['a'])
    assert p.fast.get(['a', 'b']) == [b'', b'2']
    assert p.slow.get(['a', 'b']) == [b'1', b'']
    assert p.memory_usage == 1


def test_buffer_pickle(root):
    p = Buffer(Dict(), File(root), available_memory=100)
    p.append({'x': b'Hello', 'y': b'World'})
    p.flush(['x'])
    p.append({'x': b'!'})
    q = pickle.loads(pickle.dumps(p))
    assert isinstance(q, Buffer)
    assert q.available_memory == 100
    assert q.get(['x', 'y']) == [b'Hello!', b'World']
    assert q.memory_usage == p.memory_usage


def test_buffer_borrows_inner(root):
    f, d = File(root), Dict()
    p = Buffer(d, f)
    with pytest.raises(ValueError, match='Buffer'):
        f.close()
    p.close()
    f.close()                        # fine once the Buffer is closed
    d.close()


def test_buffer_needs_two_stores(root):
    d = Dict()
    with pytest.raises(ValueError):
        Buffer(d, d)
    with pytest.raises(TypeError):
        Buffer(d, 'not a store')   # a str is not a store: goes to PyBuffer,
                                   # which fails when used
    with pytest.raises(ValueError):
        Buffer(Dict(), File(root), available_memory=-1)


def test_pybuffer_over_python_stores(root):
    # Any store that is not cpartd's goes through the Python Buffer.
    slow = cpartd.Pickle(File(root))
    p = Buffer(cpartd.Pickle(Dict()), slow, available_memory=10)
    assert isinstance(p, PyBuffer) and isinstance(p, Buffer)
    p.append({'x': [1, 2]})
    p.append({'x': [3] * 20})
    p.append({'x': [4]})
    assert p.get('x') == [1, 2] + [3] * 20 + [4]


def test_keys_to_flush():
    lengths = {'a': 20, 'b': 10, 'c': 15, 'd': 15, 'e': 10, 'f': 25, 'g': 5}
    assert keys_to_flush(lengths, 0.5) == ['f', 'a']
    assert keys_to_flush({'a': 1}) == ['a']


def test_keys(store):
    store.append({'x': b'1', ('a', 'b'): b'2', 7: b'3', b'\xff': b'4'})
    assert sorted(store.keys(), key=repr) == sorted(
        ['x', ('a', 'b'), '7', b'\xff'], key=repr)


def test_utils():
    data = frame(b'Hello') + frame(b'World')
    assert data[:8] == b'\x05' + b'\x00' * 7
    assert list(framesplit(data)) == [b'Hello', b'World']
    assert list(framesplit(b'')) == []
    with pytest.raises(cpartd.CorruptError):
        list(framesplit(data[:-1]))
    assert issubclass(cpartd.CorruptError, ValueError)
    assert list(flatten([[1, 2], [3, [4]]])) == [1, 2, 3, 4]
    assert nested_get([1, [0]], 'ab') == ['b', ['a']]
    assert suffix(('a', 'b'), '.x') == ('a', 'b.x')
    assert extend('x', 'y') == ('x', 'y')
    views = cpartd._cpartd.framesplit(bytearray(data))
    assert [bytes(v) for v in views] == [b'Hello', b'World']
    assert cpartd._cpartd.framesplit(data[:-1], torn='drop')[0] == b'Hello'


def test_core_names():
    from cpartd import core
    assert core.token(('a', 'b')) == os.path.join('a', 'b')
    assert core.token(1) == '1'
    assert core.escape_filename('Foo!bar?') == 'Foobar'
    assert core.filename('/p', 'x') == '/p/x'
    assert isinstance(Dict(), core.Interface)
    assert isinstance(File(), core.Interface)


def test_threads(root):
    p = Buffer(Dict(), File(root), available_memory=1000)

    def work(t):
        for i in range(200):
            p.append({i % 7: b'%d.%d;' % (t, i)})
            if i % 50 == 0:
                p.get(list(range(7)))

    assert run_threads(work) == []
    got = b''.join(p.get(list(range(7))))
    for t in range(4):
        for i in range(200):
            assert b'%d.%d;' % (t, i) in got
    # each thread's appends stay in order within a key
    for k in range(7):
        v = p.get(k).split(b';')[:-1]
        for t in range(4):
            mine = [int(x.split(b'.')[1]) for x in v if x.split(b'.')[0] ==
                    str(t).encode()]
            assert mine == sorted(mine)


def test_lock_threads(root):
    # A thread holding the lock keeps others out of the store.
    p = File(root)
    order = []
    p.lock.acquire()
    t = threading.Thread(target=lambda: (p.append({'x': b'B'}),
                                         order.append('B')))
    t.start()
    t.join(0.2)
    order.append('A')
    p.append({'x': b'A'}, lock=False)
    p.lock.release()
    t.join()
    assert order == ['A', 'B']
    assert p.get('x') == b'AB'


def test_close_refused_while_locked_elsewhere(root):
    p = File(root)
    ready, done = threading.Event(), threading.Event()

    def hold():
        with p.lock:
            ready.set()
            done.wait()

    t = threading.Thread(target=hold)
    t.start()
    ready.wait()
    with pytest.raises(ValueError):
        p.close()
    done.set()
    t.join()
    p.close()
    p.close()                        # idempotent
    assert p.closed


def test_gc_cycle_closes(root):
    import gc
    import weakref
    f = File(root)
    b = Buffer(Dict(), f, available_memory=10)
    b.cycle = b
    f.cycle = b
    r = weakref.ref(b)
    b.append({'s': b'x' * 20})
    b.append({'x': b'1'})           # spills 's' (past the limit) first
    del b, f
    gc.collect()
    assert r() is None
    # Collected, the Buffer forgot what fast held (as partd's), and it
    # was closed before its File: what it had spilled is there.
    assert File(root).get(['s', 'x']) == [b'x' * 20, b'']


def test_buffer_close_moves_fast_to_slow(root):
    b = Buffer(Dict(), File(root))
    b.append({'x': b'1'})
    b.close()                        # an explicit close flushes fast
    assert File(root).get('x') == b'1'


def test_buffer_collected_forgets_fast(root):
    # dask drops its shuffle Buffer when done: nothing is written to disk.
    b = Buffer(Dict(), File(root))
    b.append({'x': b'1' * 1000})
    del b
    assert File(root).get('x') == b''
    assert os.listdir(root) == ['.lock']


def test_raw_iset_replaces(store):
    # _iset is the raw set under iset: it replaces every time (Numpy calls
    # it directly); iset is once per handle.
    store.append({'k': b'old'})
    store._iset('k', b'new')
    store._iset('k', b'newer')
    assert store.get('k') == b'newer'
    with store.lock:
        store._iset('k', b'locked', lock=False)
    assert store.get('k') == b'locked'
