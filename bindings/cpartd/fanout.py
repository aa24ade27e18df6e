# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""cpartd.fanout: Fanout (one store spread over several, e.g. Clients of
several servers) and Namespace (one shuffle's key space on a shared store),
libpartd's pd_fanout and pd_namespace; and the server-backed store that
cpartd's File becomes when CPARTD_SERVERS is set (see bindings/README.md,
"Across machines").

    p = Namespace(Fanout([Client('tcp://a:5000'), Client('tcp://b:5000')]),
                  'my-shuffle')
    p.append({'x': b'1'})

A Fanout takes its stores over (they read as closed afterwards) and pickles
to its stores' pickles; a Namespace borrows its store and pickles to
(store, name).
"""
import atexit
from contextlib import suppress
import os
import socket
import threading
import time
import weakref

from . import _cpartd
from .core import Interface

__all__ = ['Fanout', 'Namespace', 'ServerFile', 'servers_from_env',
           'fanout_index']

fanout_index = _cpartd.fanout_index


class _DropOnExit:
    """Fanout's and Namespace's end of a ``with`` block: drop, then close."""

    def __enter__(self):
        return self

    def __exit__(self, *args):
        if not self.closed:
            self.drop()
            self.close()


class Fanout(_DropOnExit, _cpartd.Fanout, Interface):
    """Fanout(stores): each key lives in one of `stores` (a list of cpartd
    stores: Client, File, Dict...), chosen by a hash of the key, so every
    process opening a Fanout over the same stores in the same order finds
    the same key in the same store.  The stores are taken over."""

    def __init__(self, stores):
        stores = list(stores)
        _cpartd.Fanout.__init__(self, stores)
        self.stores = stores
        Interface.__init__(self)

    def __reduce__(self):
        return (Fanout, (self.stores,))


class Namespace(_DropOnExit, _cpartd.Namespace, Interface):
    """Namespace(store, name): the keys of `store` under `name` (str or
    bytes; not containing "-|-" nor ending in "-|").  keys() lists only
    those, drop() deletes only those.  Borrows store (it stays open)."""

    def __init__(self, store, name):
        _cpartd.Namespace.__init__(self, store, name)
        self.name = name
        Interface.__init__(self)

    def __reduce__(self):
        return (Namespace, (self.partd, self.name))


# ---------------------------------------------- CPARTD_SERVERS: File(path)

def _split(value):
    return [v.strip() for v in (value or '').split(',') if v.strip()]


def servers_from_env(environ=None):
    """(addresses, server_keys) from CPARTD_SERVERS and CPARTD_SERVER_KEYS,
    or None when CPARTD_SERVERS is unset or empty."""
    env = os.environ if environ is None else environ
    addresses = _split(env.get('CPARTD_SERVERS'))
    if not addresses:
        return None
    keys = _split(env.get('CPARTD_SERVER_KEYS'))
    if keys and len(keys) != len(addresses):
        raise ValueError(
            'cpartd: CPARTD_SERVER_KEYS has %d keys but CPARTD_SERVERS has '
            '%d addresses (%s); give one z85 public key per server, in the '
            'same order' % (len(keys), len(addresses), ','.join(addresses)))
    return tuple(addresses), tuple(keys) or None


def _client_options(server_key):
    """The Client keyword arguments for one server: CURVE when the server
    has a key (CPARTD_CLIENT_SECRET: this process's secret key, else a new
    keypair), CPARTD_TIMEOUT (seconds) for every wait."""
    opts = {}
    timeout = os.environ.get('CPARTD_TIMEOUT')
    if timeout:
        opts['timeout'] = float(timeout)
    if server_key:
        opts['curve_server_key'] = server_key
        secret = os.environ.get('CPARTD_CLIENT_SECRET')
        if secret:
            opts['curve_secret'] = secret
            opts['curve_public'] = _cpartd.curve_public(secret)
    return opts


def _open(addresses, server_keys, name):
    from .zmq import Client
    keys = server_keys or (None,) * len(addresses)
    clients = [Client(a, **_client_options(k))
               for a, k in zip(addresses, keys)]
    return Fanout(clients), name


class ServerFile(Namespace):
    """What File(path) gives when CPARTD_SERVERS is set: a Namespace named
    after the creating host and path over a Fanout of Clients of the
    servers.  Pickles to (name, addresses, server keys), never to the
    client's secret key: the process unpickling it connects to the same
    servers in the same order (the order decides where each key lives).

    fsync=True (dask's shuffle appends with it) waits until every server
    has answered the appends in flight (Fanout.sync), so a failed append
    raises there and then; the Clients cannot forward PD_FSYNC, and how
    durable the data is on a server is its own store's business (a
    server over a File with --fsync for disk durability).  drop() deletes
    the namespace's keys on every server."""

    def __init__(self, addresses, server_keys, name, path=None):
        fan, name = _open(addresses, server_keys, name)
        Namespace.__init__(self, fan, name)
        self.addresses = tuple(addresses)
        self.server_keys = tuple(server_keys) if server_keys else None
        self.path = path

    def __reduce__(self):
        return (_restore_server_file,
                (self.addresses, self.server_keys, self.name, self.path))

    def append(self, data, **kwargs):
        fsync = kwargs.pop('fsync', False)
        Namespace.append(self, data, **kwargs)
        if fsync:
            self.partd.sync()

    def _append_framed(self, data, **kwargs):
        fsync = kwargs.pop('fsync', False)
        Namespace._append_framed(self, data, **kwargs)
        if fsync:
            self.partd.sync()

    def iset(self, key, value, **kwargs):
        fsync = kwargs.pop('fsync', False)
        Namespace.iset(self, key, value, **kwargs)
        if fsync:
            self.partd.sync()

    def server_sync(self):
        """Waits for every server's reply to the requests in flight (what
        fsync=True means here); a layer over this store (a C compressor)
        calls it for its own fsync=True."""
        self.partd.sync()

    def drop(self):
        try:
            return Namespace.drop(self)
        except Exception:
            # A server is gone: still drop the namespace on the others.
            with suppress(Exception):
                _drop_namespace(self.addresses, self.server_keys, self.name)
            raise

    def __exit__(self, *args):
        # partd's File: drop, then remove the directory (if this host has it)
        Namespace.__exit__(self, *args)
        if self.path:
            with suppress(OSError):
                import shutil
                shutil.rmtree(self.path)


def _restore_server_file(addresses, server_keys, name, path):
    f = ServerFile(addresses, server_keys, name, path)
    _hold(f)
    return f


def namespace_name(path):
    """The namespace of File(path) on the servers: the creating host's name
    and the absolute path, unique across hosts."""
    return '%s:%s' % (socket.gethostname(), os.path.abspath(path))


def server_file(path, servers):
    """File(path) under CPARTD_SERVERS: the ServerFile named after this host
    and path, whose namespace is dropped when the directory disappears
    (watched by this, the creating, process) or at exit when the path is in
    partd.file.cleanup_files."""
    addresses, keys = servers
    f = ServerFile(addresses, keys, namespace_name(path), path)
    _watch(f)
    _hold(f)
    return f


# The creator drops a namespace when its directory disappears: dask removes
# the shuffle's directory (or the creating worker exits, removing it with
# cleanup_files).  One daemon thread polls the directories of the live
# namespaces; each drop goes through connections of its own.
#
# Leases: every process holding a ServerFile (its creator, while the
# directory exists, and every unpickled copy while it lives) renews the
# namespace's lease on every server, every third of CPARTD_LEASE_SECONDS
# (default 600); a server drops a namespace nobody renewed in time
# (pd_client_lease), so a shuffle whose processes were all killed does not
# leave its data there.  The same thread renews them.
_watched = {}  # path -> (addresses, server keys, name, creator's pid)
_leased = {}   # name -> [addresses, server keys, holders, next renewal, pid]
_live = weakref.WeakSet()  # this process's ServerFiles
_watch_lock = threading.Lock()
_watch_cond = threading.Condition(_watch_lock)
_watcher = None
POLL_SECONDS = float(os.environ.get('CPARTD_WATCH_SECONDS', '1.0'))


def lease_seconds():
    """The lease of a ServerFile's namespace on its servers, in seconds
    (CPARTD_LEASE_SECONDS, default 600)."""
    value = os.environ.get('CPARTD_LEASE_SECONDS', '600')
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1
    if not 0 < seconds <= 2147483:
        raise ValueError('cpartd: CPARTD_LEASE_SECONDS=%r: want seconds, '
                         'more than 0 and at most 2147483' % value)
    return seconds


def _each_server(addresses, keys, work, wait=None):
    """Runs work(client) on each server, through a Client of its own
    (closed after it; each call waits at most `wait` seconds when given).
    Raises the first failure, which names its server, after trying every
    server."""
    from .zmq import Client
    first = None
    for address, key in zip(addresses, keys or (None,) * len(addresses)):
        try:
            opts = _client_options(key)
            if wait is not None:
                opts['timeout'] = min(opts.get('timeout', 60.0), wait)
            c = Client(address, **opts)
            try:
                work(c)
            finally:
                c.close()
        except Exception as e:
            first = first or e
    if first is not None:
        raise first


def _lease(addresses, keys, name, seconds, wait=None):
    """Leases (renews; 0: releases) namespace `name` on each server, as
    _each_server.  A server that is not libpartd's has no leases:
    skipped."""
    def lease(c):
        with suppress(NotImplementedError):  # Python partd's server
            c.lease(name, seconds)

    _each_server(addresses, keys, lease, wait)


def _start_watcher():
    global _watcher
    if _watcher is None or not _watcher.is_alive():
        _watcher = threading.Thread(target=_watch_loop, daemon=True,
                                    name='cpartd-namespace-watch')
        _watcher.start()


def _hold(f):
    """f's process holds f's namespace: lease it now (a failure raises:
    the store is unusable), renew it while f lives."""
    seconds = lease_seconds()
    with _watch_lock:
        entry = _leased.get(f.name)
        if entry is not None and entry[4] != os.getpid():
            entry = None  # a forked child: the parent's count is not ours
        fresh = entry is None
        if fresh:
            entry = _leased[f.name] = [f.addresses, f.server_keys, 0, 0.0,
                                       os.getpid()]
        entry[2] += 1
        entry[3] = time.monotonic() + seconds / 3
        _live.add(f)
        _start_watcher()
    weakref.finalize(f, _unhold, f.name, os.getpid())
    if fresh:
        _lease(f.addresses, f.server_keys, f.name, seconds)


def _unhold(name, pid):
    with _watch_lock:
        entry = _leased.get(name)
        if entry is not None and entry[4] == pid:
            entry[2] -= 1


def _renew_due(now):
    """(name, addresses, keys) of the leases to renew now; forgets those
    nobody in this process holds (the creator holds its own while the
    directory is watched)."""
    watched = {v[2] for v in _watched.values() if v[3] == os.getpid()}
    due = []
    for name, entry in list(_leased.items()):
        if entry[4] != os.getpid():
            continue
        if entry[2] <= 0 and name not in watched:
            del _leased[name]
            continue
        if now >= entry[3]:
            due.append((name, entry[0], entry[1]))
    return due


def _drop_namespace(addresses, keys, name):
    """Drops the namespace on each server on its own, through a connection
    of its own (_each_server), and releases its lease there: a server that
    is gone (whose Client times out) does not keep the others' keys alive,
    as one Namespace drop over the Fanout would (it lists the keys on every
    server first).  Raises the first failure, which names its server."""
    with _watch_lock:
        _leased.pop(name, None)

    def drop(c):
        ns = Namespace(c, name)
        try:
            ns.drop()
        finally:
            ns.close()
        with suppress(NotImplementedError):
            c.lease(name, 0)

    _each_server(addresses, keys, drop)


def _watch(f):
    with _watch_lock:
        _watched[os.path.abspath(f.path)] = (f.addresses, f.server_keys,
                                             f.name, os.getpid())
        _start_watcher()


def _watch_loop():
    while True:
        with _watch_lock:
            _watch_cond.wait(POLL_SECONDS)
            gone = [p for p, v in _watched.items()
                    if v[3] == os.getpid() and not os.path.isdir(p)]
            items = [(p, _watched.pop(p)) for p in gone]
            now = time.monotonic()
            renew = _renew_due(now)
            try:
                seconds = lease_seconds()
            except ValueError:
                seconds = 600.0
            for name, _, _ in renew:
                _leased[name][3] = now + seconds / 3
        for name, addresses, keys in renew:
            try:
                # A dead server must not hold up the other renewals: each
                # wait is short beside the lease.
                _lease(addresses, keys, name, seconds,
                       wait=max(seconds / 4, 0.25))
            except Exception as e:  # a server down: it is renewed later
                import warnings
                warnings.warn('cpartd: could not renew the lease of '
                              'namespace %r on %s: %s'
                              % (name, ','.join(addresses), e))
        for path, (addresses, keys, name, _) in items:
            # Each drop in a thread of its own: a dead server (a wait of
            # CPARTD_TIMEOUT) must not hold up the renewals.
            threading.Thread(target=_drop_in_thread,
                             args=(addresses, keys, name), daemon=True,
                             name='cpartd-namespace-drop').start()


def _drop_in_thread(addresses, keys, name):
    try:
        _drop_namespace(addresses, keys, name)
    except Exception as e:  # the servers may be gone already
        import warnings
        warnings.warn('cpartd: could not drop namespace %r on %s: %s'
                      % (name, ','.join(addresses), e))


def drop_watched(paths=None):
    """Drops now the namespaces of the watched paths (all when None),
    whether their directories exist or not; used at exit."""
    with _watch_lock:
        todo = [p for p in list(_watched)
                if paths is None or p in paths]
        items = [(p, _watched.pop(p)) for p in todo]
    for path, (addresses, keys, name, pid) in items:
        if pid != os.getpid():
            continue  # a forked child: the store is its parent's
        with suppress(Exception):
            _drop_namespace(addresses, keys, name)


@atexit.register
def _drop_at_exit():
    from . import file
    # The appends still in flight first: the drop's own connections could
    # overtake them, and what they add after the drop would stay.
    for f in list(_live):
        with suppress(Exception):
            if not f.closed:
                f.partd.sync()
    drop_watched({os.path.abspath(p) for p in file.cleanup_files})

