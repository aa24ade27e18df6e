# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""cpartd.zmq: Server and Client (partd's tests, ported), explicit binds,
timeouts, hostile peers, and interop with the reference's Server/Client."""
import os
import pickle
import subprocess
import sys
import threading
import time

import pytest

import cpartd
from cpartd import Buffer, Dict, File
from cpartd.zmq import Client, Server, serialize_key, deserialize_key
from conftest import build_python_dir, run_threads, spinning


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def pair(server):
    c = Client(server.address, timeout=20)
    yield server, c
    c.close()


def test_server_methods(server):
    s = server
    assert s.status == 'run'
    s.append({'x': b'abc', 'y': b'1234'})
    s.append({'x': b'def', 'y': b'5678'})
    assert s.get(['x']) == [b'abcdef']
    assert s.get(['x', 'y']) == [b'abcdef', b'12345678']
    s.delete(['y'])
    assert s.get('y') == b''
    s.drop()
    assert s.get('x') == b''


def test_partd_object(pair):
    s, p = pair
    p.append({'x': b'Hello', 'y': b'abc'})
    p.append({'x': b'World!', 'y': b'def'})
    assert p.get(['y', 'x']) == [b'abcdef', b'HelloWorld!']
    assert p.get('x') == b'HelloWorld!'
    assert p.get(['x', ['y', 'z']]) == [b'HelloWorld!', [b'abcdef', b'']]
    assert p.get([]) == []
    assert isinstance(p, cpartd.core.Interface)


def test_delete_iset_drop(pair):
    s, p = pair
    p.append({'x': b'Hello'})
    p.delete(['x'])
    assert p.get('x') == b''
    p.append({'x': b'1'})
    p.delete('x')
    assert p.get('x') == b''
    p.iset('i', b'111')
    p.iset('i', b'222')
    assert p.get('i') == b'111'
    p.append({'a': b'1'})
    p.drop()
    assert p.get(['a', 'i']) == [b'', b'']


def test_key_types(pair):
    s, p = pair
    p.append({('x', 'y'): b'123', 7: b'seven', b'raw': b'r',
              ('t', 1, ('n', 'e')): b'nested'})
    assert p.get(('x', 'y')) == b'123'
    assert p.get('7') == b'seven'
    assert p.get(7) == b'seven'
    assert p.get('raw') == b'r'
    assert p.get(('t', '1', 'n', 'e')) == b'nested'
    # a key with the wire's tuple separator cannot cross the wire
    with pytest.raises(ValueError, match='-|-'):
        p.append({'a-|-b': b'1'})
    assert sorted(p.keys(), key=repr) == sorted(
        ['7', 'raw', ('x', 'y'), ('t', '1', 'n', 'e')], key=repr)


def test_values_any_buffer(pair):
    import array
    s, p = pair
    p.append({'a': bytearray(b'ab'), 'b': memoryview(b'xyz')[1:],
              'c': array.array('i', [1])})
    assert p.get(['a', 'b', 'c']) == [b'ab', b'yz',
                                      array.array('i', [1]).tobytes()]


def test_pickle_client(pair):
    s, p = pair
    p.append({'x': b'123'})
    q = pickle.loads(pickle.dumps(p))
    assert isinstance(q, Client)
    assert q.address == p.address and q.timeout == p.timeout
    assert q.get('x') == b'123'
    q.close()


def test_pickle_client_other_process(pair):
    s, p = pair
    p.append({'x': b'from parent;'})
    p.sync()
    code = ("import pickle, sys\n"
            "c = pickle.loads(sys.stdin.buffer.read())\n"
            "c.append({'x': b'from child;'})\n"
            "sys.stdout.write(c.get('x').decode())\n")
    env = dict(os.environ, PYTHONPATH=build_python_dir())
    r = subprocess.run([sys.executable, '-c', code], input=pickle.dumps(p),
                       capture_output=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b'from parent;from child;'


def test_context_managers(tmp_path):
    path = str(tmp_path / 's')
    with Server(File(path)) as s:
        with Client(s.address) as c:
            c.append({'x': b'1'})
            assert c.get('x') == b'1'
        assert c.closed
        assert s.get('x') == b''        # the client's __exit__ drops
        s.append({'y': b'2'})
    assert s.status == 'closed'
    assert not os.path.exists(path)     # the File's __exit__ removes it


def test_server_over_file_keeps_data(tmp_path):
    path = str(tmp_path / 's')
    f = File(path)
    s = Server(Buffer(Dict(), f, 1000))
    c = Client(s.address)
    c.append({'k%d' % i: b'v' * 10 for i in range(20)})
    c.close()
    s.close()                           # flushes the Buffer into the File
    assert f.get('k3') == b'v' * 10
    assert File(path).get('k19') == b'v' * 10


def test_status_start_block(tmp_path):
    s = Server(start=False)
    assert s.status == 'created'
    s.append({'x': b'direct'})          # not serving: straight to the store
    s.start()
    assert s.status == 'run'
    c = Client(s.address)
    assert c.get('x') == b'direct'
    t = threading.Thread(target=c.close_server)
    t.start()
    s.block()                           # returns once a client closed it
    t.join()
    assert s.status == 'closed'
    s.close()
    s.close()                           # idempotent
    c.close()


def test_close_while_another_thread_blocks():
    s = Server(Dict())
    t = threading.Thread(target=s.block)
    t.start()
    time.sleep(0.1)
    s.close()                 # block() sees it at once, never a freed server
    t.join(10)
    assert not t.is_alive()
    assert s.status == 'closed'


def test_block_in_constructor():
    box = {}

    def serve():
        box['s'] = Server(bind='tcp://127.0.0.1:0', block=True,
                          idle_timeout=0.5)

    t = threading.Thread(target=serve)
    t0 = time.monotonic()
    t.start()
    t.join(30)
    assert not t.is_alive()
    assert time.monotonic() - t0 >= 0.4
    assert box['s'].status == 'closed'
    box['s'].close()


def test_explicit_binds(tmp_path):
    sock = str(tmp_path / 'srv.sock')
    s = Server(bind=['ipc://' + sock, 'tcp://127.0.0.1:0'])
    try:
        assert s.address == ('ipc://' + sock).encode()
        assert len(s.addresses) == 2
        tcp = s.addresses[1].decode()
        assert tcp.startswith('tcp://127.0.0.1:') and not tcp.endswith(':0')
        a, b = Client(s.address), Client(tcp)
        a.append({'x': b'ipc;'})
        a.sync()
        b.append({'x': b'tcp;'})
        b.sync()
        assert a.get('x') == b.get('x') == b'ipc;tcp;'
        a.close()
        b.close()
        # a second server cannot take a live socket over
        with pytest.raises(OSError):
            Server(bind='ipc://' + sock)
    finally:
        s.close()
    assert not os.path.exists(sock)


def test_bind_bytes_and_hostname():
    s = Server(bind=b'tcp://127.0.0.1:0')
    assert s.address.startswith(b'tcp://127.0.0.1:')
    s.close()
    s = Server(hostname='127.0.0.1')    # partd's: tcp://* on a free port
    try:
        assert s.address.startswith(b'tcp://127.0.0.1:')
        c = Client(s.address)
        c.append({'x': b'1'})
        assert c.get('x') == b'1'
        c.close()
    finally:
        s.close()


def test_default_is_private_ipc(server):
    addr = server.address.decode()
    assert addr.startswith('ipc://')
    d = os.path.dirname(addr[len('ipc://'):])
    assert os.stat(d).st_mode & 0o777 == 0o700


def test_bad_bind():
    with pytest.raises(ValueError):
        Server(bind='nonsense://x')
    with pytest.raises(OSError):
        Server(bind='ipc:///no/such/dir/sock')
    with pytest.raises(TypeError):
        Server(bind=[1])


def test_server_needs_cpartd_store():
    with pytest.raises(TypeError):
        Server(cpartd.Pickle(Dict()))


def test_served_store_borrowed(tmp_path):
    f = File(str(tmp_path / 's'))
    s = Server(f)
    with pytest.raises(ValueError):
        f.close()                       # the server uses it
    s.close()
    f.close()


def test_client_timeout():
    t0 = time.monotonic()
    c = Client('tcp://127.0.0.1:1', timeout=0.3)
    with pytest.raises(TimeoutError, match='127.0.0.1:1'):
        c.get('x')
    assert time.monotonic() - t0 < 5
    with pytest.raises(TimeoutError):
        c.get('x')                      # still bounded after the reset
    c.close()
    with pytest.raises(ValueError):
        Client('tcp://127.0.0.1:1', timeout=0)
    with pytest.raises(ValueError):
        Client('tcp://127.0.0.1:1', timeout=-1)
    with pytest.raises(TypeError):
        Client()


def test_client_recovers_when_server_comes(tmp_path):
    sock = 'ipc://' + str(tmp_path / 'late.sock')
    c = Client(sock, timeout=0.3)
    with pytest.raises(TimeoutError):
        c.get('x')
    s = Server(Dict(), bind=sock)
    try:
        c.append({'x': b'1'})
        assert c.get('x') == b'1'
    finally:
        c.close()
        s.close()


def test_client_releases_gil():
    c = Client('tcp://127.0.0.1:1', timeout=1)
    with spinning() as count:
        time.sleep(0.05)
        before = count[0]
        with pytest.raises(TimeoutError):
            c.get('x')
        during = count[0] - before
    c.close()
    assert during > 10000      # the spinning thread ran while get waited


def test_server_error_is_raised(tmp_path):
    s = Server(File(str(tmp_path / 's')))
    c = Client(s.address, timeout=20)
    try:
        c.append({'a': b'1'})
        c.append({('a', 'b'): b'2'})     # 'a' is a file: the server refuses
        with pytest.raises(ValueError, match='previous request.*failed on the server'):
            c.sync()
        assert c.get('a') == b'1'        # and keeps serving
    finally:
        c.close()
        s.close()


def test_pipelined_appends_and_window(tmp_path):
    s = Server(File(str(tmp_path / 's')))
    try:
        with pytest.raises(ValueError, match='window'):
            Client(s.address, window=65)
        with pytest.raises(ValueError, match='window'):
            Client(s.address, window=-1)
        # window 3: the 3rd append after a failed one reads its reply.
        c = Client(s.address, timeout=20, window=3)
        c.append({'a': b'1'})
        c.sync()
        c.append({('a', 'b'): b'2'})     # fails on the server
        c.append({'p1': b'x'})
        c.append({'p2': b'x'})           # 3 in flight
        with pytest.raises(ValueError, match='previous request.*not sent'):
            c.append({'p3': b'x'})
        c.sync()
        assert c.get(['p1', 'p2', 'p3']) == [b'x', b'x', b'']
        # In order, however many are in flight; pickling keeps the window.
        for i in range(500):
            c.append({'k': b'%d,' % i})
        assert c.get('k') == b''.join(b'%d,' % i for i in range(500))
        c2 = pickle.loads(pickle.dumps(c))
        assert c2._options == {'window': 3}
        c2.close()
        c.close()
        one = Client(s.address, timeout=20, window=1)   # partd's pacing
        one.append({('a', 'b'): b'2'})
        with pytest.raises(ValueError, match='not sent'):
            one.append({'p4': b'x'})
        one.close()
    finally:
        s.close()


def test_unknown_command_does_not_kill_server(server):
    zmq = pytest.importorskip('zmq')
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(server.address)
    try:
        for msg in ([b'bogus'], [b'append', b'odd'], [b''], [b'get'] * 1,
                    [b'\xff' * 100, b'x']):
            sock.send_multipart(msg)
        replies = []
        while sock.poll(2000):
            replies.append(sock.recv_multipart())
            if len(replies) >= 5:
                break
        assert any(r[0] == b'error' for r in replies), replies
    finally:
        sock.close(0)
        ctx.term()
    c = Client(server.address, timeout=10)
    c.append({'x': b'still serving'})
    assert c.get('x') == b'still serving'
    c.close()


def test_many_threads_and_clients(server):

    def work(t):
        c = Client(server.address, timeout=30)
        for i in range(100):
            c.append({i % 5: b'%d.%d;' % (t, i)})
        c.close()

    assert run_threads(work) == []
    c = Client(server.address)
    for k in range(5):
        items = c.get(k).split(b';')[:-1]
        assert len(items) == 80
        for t in range(4):
            mine = [int(x.split(b'.')[1]) for x in items
                    if x.split(b'.')[0] == str(t).encode()]
            assert mine == sorted(mine)
    c.close()


def test_client_after_fork(pair):
    s, p = pair
    p.append({'x': b'parent;'})
    p.sync()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            p.append({'x': b'child;'})
            p.sync()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert p.get('x') == b'parent;child;'


def test_curve():
    pub, sec = cpartd.zmq.curve_keypair()
    s = Server(Dict(), bind='tcp://127.0.0.1:0', curve_secret=sec)
    try:
        assert s.curve_public_key == pub
        c = Client(s.address, curve_server_key=pub, timeout=10)
        c.append({'x': b'secret'})
        assert c.get('x') == b'secret'
        d = pickle.loads(pickle.dumps(c))
        assert d.get('x') == b'secret'
        d.close()
        c.close()
        plain = Client(s.address, timeout=0.5)
        with pytest.raises(TimeoutError):
            plain.get('x')
        plain.close()
    finally:
        s.close()


def test_serialize_key_helpers():
    assert serialize_key(('a', 'b', 1)) == b'a-|-b-|-1'
    assert serialize_key(b'x') == b'x'
    assert deserialize_key(b'a-|-b') == (b'a', b'b')
    assert deserialize_key(b'x') == b'x'


def test_lock_is_usable(pair):
    s, p = pair
    with p.lock:
        p.append({'x': b'1'}, lock=False)
        assert p.get('x', lock=False) == b'1'


# ------------------------------------------------------ the reference's zmq

@pytest.fixture
def refzmq(needs_ref):
    return pytest.importorskip('partd.zmq')


def test_reference_client_our_server(refzmq):
    s = Server(bind='tcp://127.0.0.1:0')
    try:
        rc = refzmq.Client(s.address)
        rc.append({'x': b'Hello', ('a', 'b'): b'1', 3: b'three'})
        rc.append({'x': b'World'})
        assert rc.get(['x', ('a', 'b'), 3, 'nope']) == \
            [b'HelloWorld', b'1', b'three', b'']
        rc.iset('i', b'1')
        rc.delete(['x'])
        assert rc.get(['x', 'i']) == [b'', b'1']
        rc.drop()
        assert rc.get('i') == b''
        # our client sees what theirs wrote, and the reverse
        rc.append({('t', 'u'): b'theirs;'})
        c = Client(s.address)
        c.append({('t', 'u'): b'ours;'})
        c.sync()       # appends return once sent; other clients may overtake
        assert rc.get(('t', 'u')) == c.get(('t', 'u')) == b'theirs;ours;'
        c.close()
        rc.close()
    finally:
        s.close()


def test_our_client_reference_server(refzmq):
    rs = refzmq.Server()
    try:
        c = Client(rs.address, timeout=20)
        c.append({'x': b'A', ('t', 1): b'B'})
        c.append({'x': b'C'})
        assert c.get(['x', ('t', 1), 'none']) == [b'AC', b'B', b'']
        assert c.server_is_libpartd is False
        c.iset('i', b'1')
        c.iset('i', b'2')
        assert c.get('i') == b'1'
        c.delete(['x'])
        assert c.get('x') == b''
        with pytest.raises(NotImplementedError):
            c.keys()                 # partd's server has no keys command
        c.close()
    finally:
        rs.close()


def test_reference_client_bad_request_gets_error(refzmq):
    # A failing request is answered [error, ...]: the reference client,
    # which asserts each reply is [ack], fails instead of hanging.
    s = Server(File(), bind='tcp://127.0.0.1:0')
    try:
        rc = refzmq.Client(s.address)
        rc.append({'a': b'1'})
        rc.append({('a', 'b'): b'2'})
        with pytest.raises(AssertionError):
            rc.get('a')
        c = Client(s.address)
        assert c.get('a') == b'1'    # the server still serves others
        c.close()
    finally:
        s.close()
