# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""partd.zmq: Server and Client over libpartd's ZeroMQ layer.

The wire protocol is partd's, so a cpartd Client talks to a partd Server and
a partd Client to a cpartd Server.  Both run in C: the server in its own
thread (no GIL while it serves), each client call with the GIL released.

Differences from partd 1.3 (all deliberate):

- ``Server()`` without ``bind`` listens on an ipc socket in a new private
  (0700) directory, so only this user on this machine can connect (partd
  binds every network interface).  ``bind`` takes any ZeroMQ address
  (``'tcp://127.0.0.1:0'``, ``'ipc:///path'``, a list of them), which
  partd 1.3 cannot (its explicit binds fail under Python 3); ``hostname=``
  without ``bind`` gives partd's ``tcp://*`` on a free port.
- A bad request (unknown command, malformed payload) is refused and logged;
  the server keeps serving (partd's listening thread dies on one).
- ``Client(address, timeout=seconds)``: every wait is bounded and a server
  that does not answer raises ``TimeoutError`` (default: 60 s; partd waits
  forever).  An error on the server is raised by the client as it would be
  by the store (``ValueError``, ``OSError``...), by the call that reads its
  reply: a get at once, an append or delete by a later call (as partd,
  which leaves one reply in flight; against our server up to 8 appends are
  in flight; ``sync()`` waits for them all).
- The served store must be a cpartd store (File, Dict, Buffer, ZLib(...)
  over them...): the server runs it in C.
- ``Server.address`` is ``bytes``, as partd's; ``addresses`` lists them all.
"""
import atexit
import logging
import socket
import weakref
from contextlib import suppress

from . import _cpartd
from .buffer import Buffer
from .core import Interface
from .dict import Dict
from .file import File
from .buffer import keys_to_flush  # noqa: F401  (partd.zmq.keys_to_flush)

__all__ = ['Server', 'Client', 'serialize_key', 'deserialize_key',
           'tuple_sep', 'keys_to_flush', 'NotALock', 'curve_keypair']

tuple_sep = b'-|-'
logger = logging.getLogger(__name__)
curve_keypair = _cpartd.curve_keypair

_LEVELS = {_cpartd.LOG_ERROR: logging.ERROR, _cpartd.LOG_WARN: logging.WARNING,
           _cpartd.LOG_INFO: logging.INFO, _cpartd.LOG_DEBUG: logging.DEBUG}


def _log(level, line):
    """The servers' log sink (called from their threads)."""
    logger.log(_LEVELS.get(level, logging.ERROR), 'partd server: %s', line)


_servers = weakref.WeakSet()


@atexit.register
def _shutdown():
    # Stop the serving threads while Python can still run their log calls.
    for s in list(_servers):
        with suppress(Exception):
            s.close()
    _cpartd._shutdown()


def serialize_key(key):
    """A key as partd sends it.

    >>> serialize_key('x')
    b'x'
    >>> serialize_key(('a', 'b', 1))
    b'a-|-b-|-1'
    """
    if isinstance(key, tuple):
        return tuple_sep.join(map(serialize_key, key))
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    return str(key).encode()


def deserialize_key(text):
    """A key as partd's server reads it.

    >>> deserialize_key(b'x')
    b'x'
    >>> deserialize_key(b'a-|-b-|-1')
    (b'a', b'b', b'1')
    """
    if tuple_sep in text:
        return tuple(text.split(tuple_sep))
    return text


class NotALock:
    def acquire(self, *args, **kwargs):
        return True

    def release(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *args):
        pass


def _wildcard(address):
    host = address[len('tcp://'):].rsplit(':', 1)[0]
    return address.startswith('tcp://') and host in ('*', '0.0.0.0', '[::]',
                                                     '::', '')


class Server:
    """Server(partd=None, bind=None, start=True, block=False, hostname=None)

    Serves one cpartd store (default ``Buffer(Dict(), File())``) to Clients.
    bind: None (a private ipc socket; with ``hostname``, ``tcp://*`` on a
    free port as partd), an address (``'tcp://127.0.0.1:0'``: port 0 picks
    a free one; ``'ipc:///path'``), or a list of them.  ``address`` is the
    first one clients connect to (bytes, as partd's), with a wildcard host
    replaced by ``hostname`` (default: this machine's name).

    Keyword-only extras: ``timeout`` (of the server's own client, used by
    ``Server.append``/``get``...), ``max_message`` (bytes per request),
    ``idle_timeout`` (seconds without a request after which it stops),
    ``curve_secret`` (CurveZMQ: clients need the public key),
    ``no_close`` (refuse clients' ``close``).
    """

    def __init__(self, partd=None, bind=None, start=True, block=False,
                 hostname=None, *, timeout=None, max_message=0,
                 idle_timeout=0, curve_secret=None, no_close=False):
        if partd is None:
            partd = Buffer(Dict(), File())
        if not isinstance(partd, _cpartd.Store):
            raise TypeError('cpartd.Server serves a cpartd store (File, Dict, '
                            'Buffer, ZLib(...) over them...), not %s'
                            % type(partd).__name__)
        self.partd = partd
        if isinstance(bind, (str, bytes)):
            bind = [bind]
        elif bind is None and hostname is not None:
            bind = ['tcp://*:0']       # partd's: every interface, free port
        self._timeout = timeout
        self._client = None
        self._started = False
        level = (_cpartd.LOG_DEBUG if logger.isEnabledFor(logging.DEBUG)
                 else _cpartd.LOG_INFO)
        self._srv = _cpartd.Server(partd, bind, max_message=max_message,
                                   idle_timeout=idle_timeout,
                                   curve_secret=curve_secret,
                                   no_close=no_close, log=_log,
                                   log_level=level)
        _servers.add(self)
        addresses = []
        for a in self._srv.addresses:
            if _wildcard(a):
                host = hostname or socket.gethostname()
                a = 'tcp://%s:%s' % (host, a.rsplit(':', 1)[1])
            addresses.append(a.encode())
        self.addresses = addresses
        # The server's own client connects to the socket itself (a wildcard
        # host through loopback), not through a name that may not resolve.
        first = self._srv.addresses[0]
        self._own = ('tcp://127.0.0.1:' + first.rsplit(':', 1)[1]
                     if _wildcard(first) else first)
        self.address = addresses[0]
        #: The CURVE public key clients need (None without CURVE).
        self.curve_public_key = (None if curve_secret is None
                                 else _cpartd.curve_public(curve_secret))
        if start:
            self.start()
        if block:
            self.block()

    @property
    def status(self):
        """'created', 'run' (serving), or 'closed' (as partd's)."""
        if self._srv.running:
            return 'run'
        return 'closed' if self._started or self._srv.closed else 'created'

    def start(self):
        """Serve in a thread (once; a no-op while it serves)."""
        if self._srv.running:
            return
        self._srv.start()
        self._started = True

    def block(self):
        """Wait until the server stops (a client's close_server(), close()
        from another thread, the idle timeout).  Starts it if needed."""
        if not self._started:
            self.start()
        if not self._srv.closed:
            self._srv.wait()

    def stop(self):
        self._srv.stop()

    def _local(self):
        """The server's own client: Server.append/get go through the
        socket while it serves (the serving thread holds the store's
        lock); before it runs they go to the store directly."""
        if not self._srv.running:
            return None
        if self._client is None:
            self._client = Client(self._own, timeout=self._timeout)
        return self._client

    def append(self, data):
        c = self._local()
        (c or self.partd).append(data)
        if c:
            c.sync()

    def get(self, keys):
        return (self._local() or self.partd).get(keys)

    def delete(self, keys):
        c = self._local()
        (c or self.partd).delete(keys)
        if c:
            c.sync()

    def iset(self, key, value):
        c = self._local()
        (c or self.partd).iset(key, value)
        if c:
            c.sync()

    def drop(self):
        c = self._local()
        (c or self.partd).drop()
        if c:
            c.sync()

    def close(self):
        """Stop serving, flush the store into its inner stores, release its
        lock, close the sockets.  Idempotent.  The store stays open."""
        if self._client is not None:
            c, self._client = self._client, None
            with suppress(Exception):
                c.close()
        self._srv.close()
        _servers.discard(self)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *args):
        self.close()
        self.partd.__exit__(*args)

    def __del__(self):
        with suppress(Exception):
            self.close()


class Client(_cpartd.Client, Interface):
    """Client(address, timeout=None): a store whose calls run on a Server
    (cpartd's or partd's) at address (str or bytes).

    timeout: seconds each wait may take (None: 60 s); a server that does
    not answer in time raises TimeoutError (the request may or may not have
    been applied), and the client reconnects for the next call.
    window: appends in flight at once to a cpartd server (default 8; 1:
    partd's pacing, one request in flight).
    Pickles to its address and timeout.
    """

    _OPTIONS = ('sync', 'curve_server_key', 'curve_public', 'curve_secret',
                'max_message', 'window')

    def __init__(self, address=None, create_server=False, timeout=None,
                 **kwargs):
        if address is None:
            raise TypeError('cpartd: Client needs the address of a Server')
        # partd ignores unknown keyword arguments; so do we.
        opts = {k: v for k, v in kwargs.items() if k in self._OPTIONS}
        _cpartd.Client.__init__(self, address, timeout=timeout, **opts)
        self.address = address
        self.timeout = timeout
        self._options = opts

    def __reduce__(self):
        return (_restore_client, (type(self), self.address, self.timeout,
                                  self._options))

    def __enter__(self):
        return self

    def __exit__(self, *args):
        with suppress(Exception):
            self.drop()
        self.close()


def _restore_client(cls, address, timeout, options=None):
    return cls(address, timeout=timeout, **(options or {}))
