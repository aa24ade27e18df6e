#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""The workloads of bench/bench_zmq.c on the Python reference's
partd.Server / partd.Client (tcp: the only transport it has; it binds a
random port on all interfaces, and this script connects over loopback).

Prints a table, and a last line "RESULT <small appends/s> <gets/s> <big
MB/s>" (medians) that bench_zmq reads.  Run with /usr/bin/python3.

    ref_zmq.py [--runs N] [--nkeys N] [--nvals N] [--vsize N]
               [--per-call N] [--big-vals N] [--big-size N]
"""
import argparse
import statistics
import sys
import time

try:
    import partd
    from partd.zmq import Client, Server
except ImportError as exc:
    print("ref_zmq: Python partd not importable (%s): skipped" % exc)
    sys.exit(1)


def run_once(a, names, vals, big):
    server = Server()  # the default store, Buffer(Dict(), File()), as ours
    port = int(server.address.decode().rsplit(':', 1)[1])
    client = Client('tcp://127.0.0.1:%d' % port)
    t0 = time.perf_counter()
    for i in range(0, a.nvals, a.per_call):
        data = {}
        for j in range(i, min(i + a.per_call, a.nvals)):
            data[names[j % a.nkeys]] = vals[j]
        client.append(data)
    client.socket.recv_multipart()  # the last ack
    client.send(b'syn', [], ack_required=False)
    t_small = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in names:
        v = client.get(k)
        assert len(v) == a.nvals // a.nkeys * a.vsize, len(v)
    t_gets = time.perf_counter() - t0
    client.drop()
    t0 = time.perf_counter()
    for i in range(0, a.big_vals, a.per_call):
        data = {names[j % a.nkeys]: big
                for j in range(i, min(i + a.per_call, a.big_vals))}
        client.append(data)
    client.socket.recv_multipart()
    client.send(b'syn', [], ack_required=False)
    t_big = time.perf_counter() - t0
    client.close()
    server.close()
    return (a.nvals / t_small, a.nkeys / t_gets,
            a.big_vals * a.big_size / 1e6 / t_big)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--runs', type=int, default=5)
    p.add_argument('--nkeys', type=int, default=1000)
    p.add_argument('--nvals', type=int, default=200000)
    p.add_argument('--vsize', type=int, default=100)
    p.add_argument('--per-call', type=int, default=100)
    p.add_argument('--big-vals', type=int, default=20000)
    p.add_argument('--big-size', type=int, default=10240)
    a = p.parse_args()
    names = ['k%04d' % k for k in range(a.nkeys)]
    vals = [bytes([97 + (i % 26)]) * a.vsize for i in range(a.nvals)]
    big = b'B' * a.big_size
    rows = []
    run_once(a, names, vals, big)  # warm-up
    for _ in range(a.runs):
        rows.append(run_once(a, names, vals, big))
    med = [statistics.median(r[i] for r in rows) for i in range(3)]
    print('ref_zmq (Python partd %s, tcp): small appends %.0f/s, gets '
          '%.0f/s, 10 KB appends %.0f MB/s' % (partd.__version__, *med))
    print('RESULT %f %f %f' % tuple(med))
    return 0


if __name__ == '__main__':
    sys.exit(main())
