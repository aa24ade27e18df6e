# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""A Python partd.Server for the interop tests (tests/test_server_interop.c).

usage: zmq_server.py [dict]

Starts partd.Server (over partd.Dict() with "dict", else the default
Buffer(Dict(), File())), prints the address to connect to on the first line
of stdout ("tcp://127.0.0.1:PORT": the reference binds a random port on all
interfaces and names the host; the tests connect over loopback), then serves
until standard input reaches end of file or the server gets `close`.
"""
import os
import sys
import threading

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__

import partd  # noqa: E402
from partd.zmq import Server  # noqa: E402


def main():
    store = partd.Dict() if sys.argv[1:2] == ['dict'] else None
    server = Server(store)
    port = int(server.address.decode().rsplit(':', 1)[1])
    sys.stdout.write('tcp://127.0.0.1:%d\n' % port)
    sys.stdout.flush()

    def watch_stdin():
        while os.read(0, 4096):
            pass
        server.status = 'closed'  # ends the listening loop within 100 ms

    threading.Thread(target=watch_stdin, daemon=True).start()
    server.block()
    server.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
