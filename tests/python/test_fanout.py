# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""cpartd.Fanout and cpartd.Namespace, and File(path) under CPARTD_SERVERS
(one store spread over several servers: dask's disk shuffle without a
shared filesystem), and the error a File gives where its directory is
missing."""
import contextlib
import os
import pickle
import shutil
import subprocess
import sys
import time

import pytest

import cpartd
from cpartd import Dict, Fanout, File, Namespace
from cpartd import fanout as cfan

DATA = {'x': b'1', 'y': b'22', ('a', 1): b'333', ('b', 'c', 2): b'4',
        'z' * 200: b'5' * 10000}


def fill(p):
    p.append(DATA)
    p.append({'x': b'more', ('a', 1): b'!'})
    # Servers acknowledge appends asynchronously (pipelined): wait for the
    # replies before another connection reads, as a shuffle's barrier does.
    inner = getattr(p, 'partd', p)
    if isinstance(inner, Fanout):
        inner.sync()


def expected():
    e = dict(DATA)
    e['x'] += b'more'
    e[('a', 1)] += b'!'
    return e


def norm(keys):
    return sorted(repr(k) for k in keys)


# ----------------------------------------------------------- Fanout itself

@pytest.mark.parametrize('n', [1, 2, 5])
def test_fanout_matches_a_plain_store(n):
    plain, f = Dict(), Fanout([Dict() for _ in range(n)])
    fill(plain)
    fill(f)
    keys = list(DATA)
    assert f.get(keys) == plain.get(keys)
    assert norm(f.keys()) == norm(plain.keys())
    f.delete(['y'])
    plain.delete(['y'])
    assert norm(f.keys()) == norm(plain.keys())
    assert f.get('y') == b''
    f.drop()
    assert f.keys() == []
    assert f.nstores == n


def test_fanout_spreads_keys_by_fanout_index(tmp_path):
    stores = [Dict() for _ in range(3)]
    f = Fanout(stores)
    keys = ['k%d' % i for i in range(60)]
    f.append({k: b'v' for k in keys})
    assert all(s.closed for s in stores)        # taken over
    counts = [0, 0, 0]
    for k in keys:
        counts[cpartd.fanout.fanout_index(k, 3)] += 1
    assert all(c > 0 for c in counts)
    # the same keys over Files land in the file of their index
    roots = [str(tmp_path / str(i)) for i in range(3)]
    g = Fanout([File(r) for r in roots])
    g.append({k: b'v' for k in keys})
    g.close()
    for i, r in enumerate(roots):
        assert len(File(r).keys()) == counts[i]


def test_fanout_refuses_bad_stores():
    with pytest.raises(ValueError):
        Fanout([])
    d = Dict()
    with pytest.raises(ValueError, match='twice'):
        Fanout([d, d])
    with pytest.raises(TypeError):
        Fanout([object()])
    inner = Dict()
    b = cpartd.Buffer(inner, Dict())
    with pytest.raises(ValueError, match='in use'):
        Fanout([inner])
    b.close()
    with pytest.raises(ValueError, match='wraps other stores'):
        Fanout([cpartd.Buffer(Dict(), Dict())])
    closed = Dict()
    closed.close()
    with pytest.raises(ValueError):
        Fanout([closed])


def test_fanout_pickles_by_its_stores(tmp_path):
    roots = [str(tmp_path / str(i)) for i in range(2)]
    f = Fanout([File(r) for r in roots])
    fill(f)
    g = pickle.loads(pickle.dumps(f))
    assert type(g) is Fanout and g.nstores == 2
    assert g.get(list(DATA)) == [expected()[k] for k in DATA]


# -------------------------------------------------------------- Namespace

def test_namespace_matches_a_plain_store_and_isolates():
    shared = Fanout([Dict(), Dict()])
    a, b = Namespace(shared, 'a'), Namespace(shared, b'b')
    plain = Dict()
    fill(plain)
    fill(a)
    b.append({'x': b'other'})
    assert a.get(list(DATA)) == plain.get(list(DATA))
    assert norm(a.keys()) == norm(plain.keys())
    assert b.keys() == ['x'] and b.get('x') == b'other'
    assert a.name == 'a' and a.name_bytes == b'a' and a.partd is shared
    a.drop()
    assert a.keys() == [] and b.get('x') == b'other'
    with pytest.raises(ValueError):
        shared.close()                      # borrowed by a and b
    a.close()
    b.close()
    shared.close()


def test_namespace_refuses_bad_names():
    d = Dict()
    with pytest.raises(ValueError):
        Namespace(d, 'a-|-b')
    with pytest.raises(TypeError):
        Namespace(d, 3)


def test_namespace_pickles_to_store_and_name(root):
    ns = Namespace(File(root), 'shuffle-1')
    fill(ns)
    ns2 = pickle.loads(pickle.dumps(ns))
    assert type(ns2) is Namespace and ns2.name == 'shuffle-1'
    assert ns2.get('x') == expected()['x']


def test_namespace_under_pandasblocks():
    pd = pytest.importorskip('pandas')
    p = cpartd.PandasBlocks(Namespace(Fanout([Dict(), Dict()]), 's'))
    df = pd.DataFrame({'a': range(10), 'b': list('abcdefghij')})
    p.append({0: df, 1: df.iloc[:3]}, fsync=False)
    p.append({0: df.iloc[5:]})
    got = p.get(0)
    assert len(got) == 15 and list(got.b[-5:]) == list('fghij')


# --------------------------------------------------- CPARTD_SERVERS: File

@contextlib.contextmanager
def serving(monkeypatch, n, timeout, **kw):
    """n Servers of a Dict on tcp loopback (kw: more Server arguments),
    named by CPARTD_SERVERS with CPARTD_TIMEOUT=timeout and no
    CPARTD_SERVER_KEYS while the block runs; closed after it."""
    srvs = [cpartd.Server(Dict(), bind='tcp://127.0.0.1:0', **kw)
            for _ in range(n)]
    try:
        monkeypatch.setenv('CPARTD_SERVERS',
                           ','.join(s.address.decode() for s in srvs))
        monkeypatch.setenv('CPARTD_TIMEOUT', timeout)
        monkeypatch.delenv('CPARTD_SERVER_KEYS', raising=False)
        yield srvs
    finally:
        for s in srvs:
            s.close()


@pytest.fixture
def servers(monkeypatch):
    with serving(monkeypatch, 3, '10') as srvs:
        yield srvs


def server_keys(srvs):
    out = []
    for s in srvs:
        c = cpartd.Client(s.address)
        out.extend(c.keys())
        c.close()
    return out


def test_file_becomes_a_server_store(servers, tmp_path):
    path = str(tmp_path / 'x.partd')
    os.mkdir(path)
    f = File(path)
    assert isinstance(f, cfan.ServerFile) and f.path == path
    assert f.name == cfan.namespace_name(path)
    fill(f)
    f.append({'y': b'+'}, fsync=True)              # dask's shuffle_group_3
    e = expected()
    e['y'] += b'+'
    assert f.get(list(DATA)) == [e[k] for k in DATA]
    # nothing in the directory, everything on the servers, namespaced
    assert os.listdir(path) == []
    keys = server_keys(servers)
    assert len(keys) == len(DATA)
    assert all(k[0] == f.name for k in keys)
    # pickled by name and servers, unpickled as the same store
    g = pickle.loads(pickle.dumps(f))
    assert isinstance(g, cfan.ServerFile) and g.name == f.name
    assert g.get(list(DATA)) == [e[k] for k in DATA]
    assert b'curve' not in pickle.dumps(f)
    g.drop()                                     # dask: a task failed
    assert server_keys(servers) == []
    assert f.keys() == []


def test_server_store_in_another_process(servers, tmp_path):
    pd = pytest.importorskip('pandas')
    path = str(tmp_path / 'y.partd')
    os.mkdir(path)
    p = cpartd.PandasBlocks(File(path))
    df = pd.DataFrame({'k': range(100), 'v': [float(i) for i in range(100)]})
    p.append({0: df}, fsync=True)
    blob = pickle.dumps(p)
    # the other process has no such directory: it reads from the servers
    code = ('import pickle, sys; p = pickle.loads(sys.stdin.buffer.read()); '
            'd = p.get(0); print(len(d), float(d.v.sum()))')
    env = dict(os.environ, PYTHONPATH=os.path.dirname(
        os.path.dirname(cpartd.__file__)))
    out = subprocess.run([sys.executable, '-c', code], input=blob, env=env,
                         capture_output=True, timeout=60, check=True)
    assert out.stdout.split() == [b'100', b'4950.0']


def test_namespace_dropped_when_directory_disappears(servers, tmp_path,
                                                     monkeypatch):
    monkeypatch.setattr(cfan, 'POLL_SECONDS', 0.1)
    path = str(tmp_path / 'z.partd')
    os.mkdir(path)
    f = File(path)
    fill(f)
    assert server_keys(servers)
    shutil.rmtree(path)
    deadline = time.time() + 20
    while server_keys(servers) and time.time() < deadline:
        time.sleep(0.1)
    assert server_keys(servers) == []


def test_namespace_dropped_at_exit(servers, tmp_path):
    code = ('import cpartd, sys; f = cpartd.File(); sys.stdout.write(f.path);'
            'f.append({"a": b"1", "b": b"2"})')
    env = dict(os.environ, PYTHONPATH=os.path.dirname(
        os.path.dirname(cpartd.__file__)))
    out = subprocess.run([sys.executable, '-c', code], env=env,
                         capture_output=True, timeout=60, check=True)
    assert not os.path.exists(out.stdout.decode())
    assert server_keys(servers) == []


def test_two_creators_never_share(servers, tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    os.mkdir(a)
    os.mkdir(b)
    fa, fb = File(a), File(b)
    fa.append({'k': b'a'})
    fb.append({'k': b'b'})
    assert fa.get('k') == b'a' and fb.get('k') == b'b'
    fa.drop()
    assert fb.get('k') == b'b'
    fb.drop()


def test_server_keys_mismatch(monkeypatch, servers, tmp_path):
    monkeypatch.setenv('CPARTD_SERVER_KEYS', 'onlyone')
    with pytest.raises(ValueError, match='CPARTD_SERVER_KEYS'):
        File(str(tmp_path))


def test_curve_servers(monkeypatch, tmp_path):
    pub, sec = cpartd._cpartd.curve_keypair()
    with serving(monkeypatch, 2, '10', curve_secret=sec):
        monkeypatch.setenv('CPARTD_SERVER_KEYS', '%s,%s' % (pub, pub))
        f = File(str(tmp_path))
        fill(f)
        assert f.get('x') == expected()['x']
        g = pickle.loads(pickle.dumps(f))
        assert g.get('y') == DATA['y']
        _, csec = cpartd._cpartd.curve_keypair()
        monkeypatch.setenv('CPARTD_CLIENT_SECRET', csec)
        h = pickle.loads(pickle.dumps(f))
        assert h.get('y') == DATA['y']
        assert csec.encode() not in pickle.dumps(h)
        f.drop()


# ---------------------------------------- no servers: the missing directory

def test_file_unpickled_without_its_directory_fails_loudly(tmp_path,
                                                           monkeypatch):
    monkeypatch.delenv('CPARTD_SERVERS', raising=False)
    path = str(tmp_path / 'gone.partd')
    f = File(path)
    f.append({'x': b'1'})
    blob = pickle.dumps(cpartd.PandasBlocks(f))
    f.close()
    shutil.rmtree(path)
    here = cpartd.file._hostname()
    monkeypatch.setattr(cpartd.file, '_hostname', lambda: 'elsewhere')
    p = pickle.loads(blob)                     # a task fails, not a transfer
    for use in (lambda: p.partd.append({'x': b'1'}, fsync=True),
                lambda: p.get(0),
                lambda: p.partd.keys(), p.drop):
        with pytest.raises(FileNotFoundError) as e:
            use()
        assert 'missing on this host (elsewhere)' in str(e.value)
        assert 'made on %s' % here in str(e.value)
    assert 'CPARTD_SERVERS' in str(e.value) and path in str(e.value)
    assert not os.path.exists(path)
    assert isinstance(pickle.loads(pickle.dumps(p)).partd,
                      cpartd.file.MissingFile)
    # on its own host the directory is made again, as partd does (dask's
    # bag groupby: a child's temporary File is removed before any append)
    monkeypatch.setattr(cpartd.file, '_hostname', lambda: here)
    q = pickle.loads(blob)
    assert type(q.partd) is File and os.path.isdir(path)
    q.partd.close()
    # and a File made directly creates its directory, as partd's
    shutil.rmtree(path)
    g = File(path)
    assert os.path.isdir(path)
    g.close()


def test_file_unpickled_elsewhere_with_its_directory_is_a_file(tmp_path,
                                                               monkeypatch):
    path = str(tmp_path / 'shared.partd')
    File(path).append({'x': b'1'})
    blob = pickle.dumps(File(path))
    monkeypatch.setattr(cpartd.file, '_hostname', lambda: 'elsewhere')
    g = pickle.loads(blob)                   # a shared filesystem
    assert type(g) is File and g.get('x') == b'1'


def test_file_unpickled_with_its_directory_is_a_file(tmp_path, servers):
    # a File pickled before CPARTD_SERVERS was set stays a File
    path = str(tmp_path / 'here.partd')
    os.mkdir(path)
    blob = pickle.dumps(cpartd.file._restore_file(File, path))
    g = pickle.loads(blob)
    assert type(g) is File and g.path == path


def test_fsync_waits_for_the_servers_and_names_a_dead_one(tmp_path,
                                                           monkeypatch):
    with serving(monkeypatch, 2, '2') as srvs:
        f = File(str(tmp_path))
        batch = {i: b'x' for i in range(50)}
        f.append(batch, fsync=True)
        dead = srvs[1].address.decode()
        srvs[1].close()
        t0 = time.time()
        with pytest.raises(TimeoutError) as e:
            f.append(batch, fsync=True)
        assert time.time() - t0 < 30
        assert dead in str(e.value) and 'store 1 of 2' in str(e.value)
        with pytest.raises(TimeoutError, match=dead):
            f.get(list(batch))


def test_drop_with_a_dead_server_still_drops_the_others(tmp_path,
                                                        monkeypatch):
    with serving(monkeypatch, 3, '2') as srvs:
        f = File(str(tmp_path))
        f.append({i: b'x' for i in range(60)}, fsync=True)
        dead = srvs[2].address.decode()
        srvs[2].close()
        with pytest.raises(TimeoutError, match=dead):
            f.drop()
        assert server_keys(srvs[:2]) == []


def test_namespaced_fanout_of_clients_pickles(servers):
    addrs = [s.address for s in servers]
    p = Namespace(Fanout([cpartd.Client(a, timeout=10) for a in addrs]), 'n1')
    fill(p)
    q = pickle.loads(pickle.dumps(p))
    assert [c.address for c in q.partd.stores] == addrs
    assert q.get(list(DATA)) == [expected()[k] for k in DATA]
    q.drop()
    assert p.keys() == [] and server_keys(servers) == []
