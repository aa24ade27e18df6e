# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""cpartd: libpartd for Python, a drop-in for the `partd` package.

    import cpartd as partd            # or: cpartd.install_as_partd()
    p = partd.Buffer(partd.Dict(), partd.File())
    p.append({'x': b'hello', ('y', 1): b'world'})
    p.get('x')                        # b'hello'

The classes and submodules have partd's names and behaviour (see
bindings/README.md for the differences, all deliberate): File, Dict, Buffer,
Encode, the compressors, Pickle, Python, Numpy, PandasColumns, PandasBlocks,
Fanout and Namespace (cpartd.fanout: one store over several servers),
and Server and Client (cpartd.zmq, libpartd's ZeroMQ layer: no pyzmq
needed).  Errors from the C library: OSError (with errno) for I/O,
TimeoutError, MemoryError, ValueError for bad keys/limits/misuse,
CorruptError (a ValueError) for malformed stored data, ProtocolError (a
ConnectionError) for a peer breaking the wire protocol, AttemptConflict (a
RuntimeError) for a commit that another attempt of its writer beat.

Retried writers: ``with store.attempt(writer, n) as w: w.append({...})``
makes the appends visible only when the block ends normally, and only if no
other attempt of `writer` committed first (bindings/README.md).
"""
from contextlib import suppress

from . import _cpartd
from ._cpartd import CorruptError, ProtocolError, AttemptConflict, Attempt
from .file import File
from .log import Log
from .dict import Dict
from .buffer import Buffer
from .encode import Encode
from .pickle import Pickle
from .python import Python
from .compressed import *  # noqa: F401,F403
from .fanout import Fanout, Namespace
from . import core, utils, file, log, dict, buffer, encode, compressed  # noqa
from . import fanout  # noqa: F401
from ._shim import install_as_partd

try:
    from ._version import version as __version__  # written by the build
except ImportError:  # pragma: no cover - a source tree without a build
    __version__ = _cpartd.libpartd_version
libpartd_version = _cpartd.libpartd_version
# The version of Python partd whose API and behaviour cpartd follows.
PARTD_API_VERSION = '1.4'

# Numpy, PandasColumns, PandasBlocks, Client, Server are loaded on first use
# (numpy and pandas take half a second to import; zmq is C, but its module
# registers an atexit hook only when used).
_LAZY = {'Numpy': 'numpy', 'PandasColumns': 'pandas',
         'PandasBlocks': 'pandas', 'Client': 'zmq', 'Server': 'zmq'}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError("module 'cpartd' has no attribute %r" % name)
    import importlib
    try:
        m = importlib.import_module('.' + mod, __name__)
    except ImportError as e:
        raise AttributeError("cpartd.%s is not available: %s" % (name, e)) \
            from e
    value = getattr(m, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
