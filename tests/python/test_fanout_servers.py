# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""CPARTD_SERVERS against a real `partd serve` on tcp 127.0.0.1: a File
wrapped in a compressor (dask's bag groupby: Python(Snappy(File()))) is a
compressed ServerFile everywhere, its fsync=True waits for the servers; the
same wrapping fails loudly (at use, never in the unpickling) without
servers; and namespace leases: a creator killed with SIGKILL does not leave
its namespace on the servers."""
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

import cpartd
from cpartd import fanout as cfan

from conftest import build_python_dir


def partd_cli():
    """The partd command of the build tree (or PARTD_CLI, or on PATH)."""
    for path in (os.environ.get('PARTD_CLI'),
                 os.path.join(os.path.dirname(build_python_dir()), 'partd'),
                 shutil.which('partd')):
        if path and os.access(path, os.X_OK):
            return path
    pytest.skip('no partd command (set PARTD_CLI)')


@pytest.fixture
def serve(tmp_path):
    """Starts `partd serve` processes on tcp 127.0.0.1 (port 0), returns
    their addresses; stops them at the end."""
    procs = []

    def start(n=1, *extra):
        addrs = []
        for i in range(n):
            p = subprocess.Popen(
                [partd_cli(), 'serve', '--bind', 'tcp://127.0.0.1:0',
                 '--path', str(tmp_path / ('srv%d' % len(procs)))] +
                list(extra),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            procs.append(p)
            line = p.stdout.readline().decode().strip()
            assert line.startswith('tcp://127.0.0.1:'), \
                (line, p.stderr.read1(4000) if p.poll() is not None else '')
            addrs.append(line)
        return addrs
    yield start
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            p.kill()
            p.wait()


def env_with(**kw):
    env = dict(os.environ, PYTHONPATH=build_python_dir(),
               PYTHONDONTWRITEBYTECODE='1')
    env.update(kw)
    return env


def hide(directory):
    """The command prefix that runs a command with `directory` hidden
    under an empty tmpfs (unshare: a mount namespace; needs root)."""
    unshare = shutil.which('unshare')
    if os.geteuid() != 0 or not unshare:
        pytest.skip('hiding a directory needs root and unshare')
    probe = subprocess.run([unshare, '-m', '--propagation', 'private',
                            'true'], capture_output=True)
    if probe.returncode:
        pytest.skip('unshare -m: %s' % probe.stderr.decode().strip())
    return [unshare, '-m', '--propagation', 'private', 'sh', '-c',
            'mount -t tmpfs none "$0" && exec "$@"', directory]


def server_keys(addrs):
    out = []
    for a in addrs:
        c = cpartd.Client(a, timeout=10)
        out.extend(c.keys())
        c.close()
    return out


@contextmanager
def creator(addrs, code):
    """Runs `code` in a Python process using the servers at addrs with a
    1.2 s lease renewed every 0.1 s; kills it at the end."""
    env = env_with(CPARTD_SERVERS=','.join(addrs), CPARTD_TIMEOUT='10',
                   CPARTD_LEASE_SECONDS='1.2', CPARTD_WATCH_SECONDS='0.1')
    p = subprocess.Popen([sys.executable, '-c', code], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()


def wait_no_keys(addrs):
    """Waits (20 s at most) until the servers hold no key; the seconds it
    took."""
    t0 = time.time()
    while server_keys(addrs) and time.time() - t0 < 20:
        time.sleep(0.1)
    assert server_keys(addrs) == []
    return time.time() - t0


# --------------------------------------------- a compressed File, servers

def test_snappy_file_is_a_compressed_server_file(serve, tmp_path,
                                                monkeypatch):
    addrs = serve(2)
    monkeypatch.setenv('CPARTD_SERVERS', ','.join(addrs))
    monkeypatch.setenv('CPARTD_TIMEOUT', '10')
    from cpartd.compressed import CEncode, Snappy
    from cpartd.python import Python
    hidden = tmp_path / 'hidden'
    hidden.mkdir()
    path = str(hidden / 'x.partd')
    os.mkdir(path)
    p = Python(Snappy(cpartd.File(path)))        # dask's bag groupby
    assert type(p.partd) is CEncode
    assert isinstance(p.partd.partd, cfan.ServerFile)
    # dask's partition(): fsync=True, which waits for both servers
    p.append({0: [1, 2], 1: ['x'] * 1000}, fsync=True)
    p.append({0: [3]}, fsync=True)
    p.partd.iset('i', b'once', fsync=True)
    assert os.listdir(path) == []                # all on the servers
    blob = pickle.dumps(p)
    # Another host: another name, no such directory, servers from the
    # pickle (not the environment).
    code = ('import pickle, socket, sys\n'
            'socket.gethostname = lambda: "elsewhere"\n'
            'p = pickle.loads(sys.stdin.buffer.read())\n'
            'print(type(p.partd).__name__, type(p.partd.partd).__name__)\n'
            'p.append({1: ["y"]}, fsync=True)\n'
            'print(p.get(0), len(p.get(1)), p.get(1)[-1])\n')
    code = ('import os\n'
            'assert not os.path.exists(%r), "the directory is visible"\n'
            % path) + code
    env = env_with(CPARTD_TIMEOUT='10')
    env.pop('CPARTD_SERVERS')
    # The directory stays here (its creator would drop the namespace when
    # it went): the other process has it hidden under an empty tmpfs in a
    # mount namespace of its own, as on another host.
    out = subprocess.run(hide(str(hidden)) + [sys.executable, '-c', code],
                         input=blob, env=env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    assert out.stdout.decode().split('\n')[:2] == [
        'CEncode ServerFile', '[1, 2, 3] 1001 y']
    assert p.get(1)[-1] == 'y'
    p.drop()
    assert server_keys(addrs) == []


def test_dask_bag_groupby_through_servers(serve, tmp_path):
    pytest.importorskip('dask.bag')
    addrs = serve(2)
    shim = os.path.join(build_python_dir(), 'partd_shim')
    code = (
        'import dask, dask.bag as db\n'
        'b = db.from_sequence(range(20000), npartitions=6)\n'
        'with dask.config.set(scheduler="processes", num_workers=2):\n'
        '    g = dict(b.groupby(lambda x: x % 97, shuffle="disk").compute())\n'
        'assert sorted(g) == list(range(97)), sorted(g)\n'
        'assert all(sorted(v) == list(range(k, 20000, 97)) '
        'for k, v in g.items())\n'
        'print("exact", sum(len(v) for v in g.values()))\n')
    env = env_with(PYTHONPATH=shim + ':' + build_python_dir(),
                   CPARTD_SERVERS=','.join(addrs), CPARTD_TIMEOUT='20',
                   CPARTD_WATCH_SECONDS='0.1')
    out = subprocess.run([sys.executable, '-c', code], env=env, cwd=tmp_path,
                         capture_output=True, timeout=240)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    assert out.stdout.split() == [b'exact', b'20000']
    # the process exited: its namespaces are gone from the servers
    assert server_keys(addrs) == []


def test_compressed_file_without_its_directory_fails_at_use(tmp_path,
                                                            monkeypatch):
    monkeypatch.delenv('CPARTD_SERVERS', raising=False)
    from cpartd.compressed import Snappy
    from cpartd.python import Python
    path = str(tmp_path / 'gone.partd')
    p = Python(Snappy(cpartd.File(path)))
    p.append({'x': [1]})
    blob = pickle.dumps(p)
    shutil.rmtree(path)
    monkeypatch.setattr(cpartd.file, '_hostname', lambda: 'elsewhere')
    q = pickle.loads(blob)              # not here: dask would wait forever
    for use in (lambda: q.get('x'), lambda: q.append({'x': [2]}, fsync=True),
                q.drop):
        with pytest.raises(FileNotFoundError,
                           match='missing on this host .elsewhere.'):
            use()
    assert not os.path.exists(path)
    # pickled again, and back on a host with the directory: the real store
    blob2 = pickle.dumps(q)
    monkeypatch.undo()
    os.mkdir(path)
    r = pickle.loads(blob2)
    assert type(r.partd).__name__ == 'CEncode'
    assert type(r.partd.partd) is cpartd.File


# ------------------------------------------------------------------ Leases

def test_server_drops_a_namespace_nobody_renews(serve):
    addr, = serve(1)
    c = cpartd.Client(addr, timeout=10, sync=True)
    a = cpartd.Namespace(c, 'a')
    b = cpartd.Namespace(c, 'b')
    a.append({'x': b'1', ('t', 2): b'2'})
    b.append({'x': b'3'})
    c.append({'plain': b'4'})
    c.lease('a', 0.6)
    c.lease('b', 0.6)
    time.sleep(0.4)
    c.lease('b', 0.6)                       # renewed
    time.sleep(0.4)
    assert a.keys() == [] and a.get('x') == b''
    assert b.get('x') == b'3' and c.get('plain') == b'4'
    c.lease('b', 0)                         # released: the keys stay
    time.sleep(0.8)
    assert b.get('x') == b'3'
    with pytest.raises(ValueError, match='-|-'):
        c.lease('x-|-y', 1)
    with pytest.raises(ValueError):
        c.lease('a', -1)
    b.close()
    a.close()
    c.close()


def test_lease_against_a_python_server_is_unsupported(monkeypatch):
    ref = pytest.importorskip('partd.zmq')
    if 'cpartd' in getattr(ref, '__file__', ''):
        pytest.skip('the reference partd is not installed')
    srv = ref.Server(hostname='127.0.0.1')
    try:
        c = cpartd.Client(srv.address, timeout=10)
        c.append({'x': b'1'})
        with pytest.raises(NotImplementedError, match='no lease command'):
            c.lease('n', 1)
        c.close()
    finally:
        srv.close()


def test_sigkilled_creator_leaves_nothing(serve, tmp_path):
    addrs = serve(2)
    code = ('import cpartd, sys, time\n'
            'f = cpartd.File()\n'
            'f.append({i: b"x" * 100 for i in range(50)}, fsync=True)\n'
            'print(f.path, flush=True)\n'
            'time.sleep(600)\n')
    path = None
    try:
        with creator(addrs, code) as p:
            path = p.stdout.readline().decode().strip()
            assert path, p.stderr.read().decode()[-3000:]
            # alive: its thread renews the lease, well past the period
            time.sleep(3)
            assert len(server_keys(addrs)) == 50
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            # within the lease (1.2 s) plus a poll, not at some later
            # cleanup
            assert wait_no_keys(addrs) < 5
    finally:
        if path:
            shutil.rmtree(path, ignore_errors=True)


def test_unpickled_copy_keeps_the_lease_after_the_creator_dies(serve):
    addrs = serve(1)
    code = ('import cpartd, pickle, sys, time\n'
            'f = cpartd.File()\n'
            'f.append({"k": b"v"}, fsync=True)\n'
            'blob = pickle.dumps(f)\n'
            'sys.stdout.buffer.write(b"%d\\n" % len(blob) + blob)\n'
            'sys.stdout.flush()\n'
            'time.sleep(600)\n')
    with creator(addrs, code) as p:
        line = p.stdout.readline()
        assert line, p.stderr.read().decode()[-3000:]
        blob = p.stdout.read(int(line))
        os.environ['CPARTD_LEASE_SECONDS'] = '1.2'
        try:
            g = pickle.loads(blob)     # a worker's copy: renews the lease
            cfan.POLL_SECONDS = 0.1
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            time.sleep(3)
            assert g.get('k') == b'v'
            name = g.name
            del g                       # the last holder goes
            import gc
            gc.collect()
            wait_no_keys(addrs)
            assert name not in cfan._leased
        finally:
            del os.environ['CPARTD_LEASE_SECONDS']
            cfan.POLL_SECONDS = float(
                os.environ.get('CPARTD_WATCH_SECONDS', '1.0'))
