#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# dask's disk shuffle across hosts that share no filesystem, through cpartd
# and `partd serve` (bindings/README.md, "Across machines").  Five simulated
# hosts (tests/netns.sh: network namespaces on a private bridge, each with
# its own $TMPDIR): h1-h3 run `partd serve`, h4 the dask scheduler, a worker
# and the client, h5 a second worker.  Every Python process imports cpartd
# as partd (PYTHONPATH=<build>/python/partd_shim:<build>/python).
#
#   bash tests/test_multihost.sh /path/to/partd <build-dir>
#
# Checks: a 1,000,000-row ddf.shuffle("k", shuffle="disk") with
# CPARTD_SERVERS gives pandas' rows exactly; the same shuffle without
# CPARTD_SERVERS fails with the missing-directory error (never short data);
# a server killed mid-shuffle gives an error naming its address within the
# clients' timeout; after the workers exit the servers hold no keys.  Also
# times the shuffle on one host (a LocalCluster, local disk).
# Exits 77 (reported as skipped by CTest) without root, `ip netns` or
# dask.distributed.  Every namespace and process is removed on exit.
set -u

PARTD=${1:-}
BUILD=${2:-}
if [ -z "$PARTD" ] || [ ! -x "$PARTD" ] || [ ! -d "$BUILD/python/cpartd" ]; then
    echo "usage: bash tests/test_multihost.sh /path/to/partd <build-dir>" >&2
    exit 2
fi
case $PARTD in /*) ;; *) PARTD=$PWD/$PARTD ;; esac
BUILD=$(cd "$BUILD" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3
ROWS=${MULTIHOST_ROWS:-1000000}

. "$HERE/netns.sh"
if ! why=$(netns_check); then
    echo "SKIP: $why"
    exit 77
fi
for t in dask-scheduler dask-worker; do
    if ! command -v $t >/dev/null; then
        echo "SKIP: $t is missing (apt-get install python3-distributed)"
        exit 77
    fi
done

# Scratch space in the build tree (each host mounts its own $TMPDIR there).
T=$(mktemp -d "$BUILD/multihost.XXXXXX") || exit 1
W=$T/work
mkdir -p "$W"
cleanup() {
    netns_cleanup
    if [ -n "${MULTIHOST_KEEP:-}" ]; then
        echo "# logs kept in $W"
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
. "$HERE/tap.sh"

netns_setup 5 "$T" || {
    echo "FAIL - could not make the simulated hosts"
    exit 1
}

PORT=7411
SERVERS=""
for h in h1 h2 h3; do
    SERVERS="${SERVERS:+$SERVERS,}tcp://$(netns_addr $h):$PORT"
done
SCHED=tcp://$(netns_addr h4):8786
export PYTHONPATH=$BUILD/python/partd_shim:$BUILD/python
export PYTHONDONTWRITEBYTECODE=1
export CPARTD_TIMEOUT=5 # seconds: a dead server is an error, not a hang
export DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=10s

# wait_for FILE REGEX SECONDS: until FILE has a line matching REGEX.
wait_for() {
    local i
    for i in $(seq 1 $(($3 * 10))); do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

declare -A SRV_PID
for h in h1 h2 h3; do
    netns_spawn $h "$W/serve-$h.log" "$PARTD" serve \
        --bind "tcp://$(netns_addr $h):$PORT"
    SRV_PID[$h]=$NETNS_LAST
done
for h in h1 h2 h3; do
    wait_for "$W/serve-$h.log" "^tcp://" 10 ||
        bad "server on $h did not start" "$(cat "$W/serve-$h.log")"
done

netns_spawn h4 "$W/scheduler.log" env CPARTD_SERVERS="$SERVERS" \
    dask-scheduler --host "$(netns_addr h4)" --port 8786 --no-dashboard
wait_for "$W/scheduler.log" "Scheduler at" 60 ||
    bad "the scheduler did not start" "$(tail -5 "$W/scheduler.log")"
for h in h4 h5; do
    netns_spawn $h "$W/worker-$h.log" env CPARTD_SERVERS="$SERVERS" \
        dask-worker "$SCHED" --host "$(netns_addr $h)" --nthreads 2 \
        --no-nanny --no-dashboard --name "worker-$h"
    eval "WORKER_$h=\$NETNS_LAST"
done

# The client (on h4).  MODE: servers (check exactly), noservers (expect the
# missing-directory error), kill (print SHUFFLING, expect an error naming
# the killed server), local (a LocalCluster on one host, timed).
cat >"$W/client.py" <<'EOF'
import os
import sys
import time

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import partd

def main():
    assert 'cpartd' in partd.__file__, partd.__file__
    mode, rows = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(42)
    df = pd.DataFrame({'k': rng.integers(0, 50000, rows),
                       'v': np.arange(rows),
                       'x': rng.random(rows)})

    if mode == 'local':
        from distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=2, threads_per_worker=2,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        from distributed import Client
        client = Client(os.environ['SCHED'], timeout=30)
        client.wait_for_workers(2, timeout=60)

        def setenv(servers):
            if servers:
                os.environ['CPARTD_SERVERS'] = servers
            else:
                os.environ.pop('CPARTD_SERVERS', None)
        client.run(setenv, os.environ['CPARTD_SERVERS']
                   if mode != 'noservers' else None)

    if mode == 'kill':
        # Slow input partitions, so that the shuffle lasts while a server dies.
        # (each made on its worker: the task does not carry df along)
        n = rows // 24

        def make(i):
            time.sleep(0.5)
            r = np.random.default_rng(i)
            return pd.DataFrame({'k': r.integers(0, 50000, n),
                                 'v': np.arange(i * n, (i + 1) * n),
                                 'x': r.random(n)})
        ddf = dd.from_delayed([dask.delayed(make)(i) for i in range(24)],
                              meta=df.iloc[:0])
    else:
        from distributed import wait
        ddf = client.persist(dd.from_pandas(df, npartitions=16))
        wait(ddf)
        held = [w for w, keys in client.has_what().items() if keys]
        assert mode == 'local' or len(held) == 2, held  # both hosts take part

    t0 = time.time()
    out = ddf.shuffle('k', shuffle='disk', npartitions=16)
    print('SHUFFLING', flush=True)
    try:
        parts = client.gather(client.compute(out.to_delayed()))
    except Exception as e:
        print('ERROR %s: %s' % (type(e).__name__, e), flush=True)
        sys.exit(3)
    elapsed = time.time() - t0
    got = pd.concat(parts)
    nrows = len(got)
    print('ROWS %d' % nrows, flush=True)
    if mode == 'kill':
        sys.exit(5)  # want an error
    if nrows != rows:
        sys.exit(4)
    # each key in one partition only, and pandas' rows exactly
    owners = pd.concat([p[['k']].drop_duplicates().assign(part=i)
                        for i, p in enumerate(parts)])
    assert owners.k.is_unique, 'a key is in several partitions'
    got = got.sort_values('v').reset_index(drop=True)
    want = df.sort_values('v').reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    checksum = int(pd.util.hash_pandas_object(got, index=False).sum())
    assert checksum == int(pd.util.hash_pandas_object(want, index=False).sum())
    print('CHECKSUM %d' % (checksum & 0xffffffffffffffff), flush=True)
    print('SECONDS %.2f' % elapsed, flush=True)
    client.close()


if __name__ == '__main__':  # LocalCluster's workers import this file
    main()
EOF

client() { # client MODE LOG: the client on h4, bounded in time
    netns_run h4 env SCHED="$SCHED" CPARTD_SERVERS="$SERVERS" \
        timeout 120 "$PY" "$W/client.py" "$1" "$ROWS" >"$2" 2>&1
}

# 1. the shuffle across two hosts, through the servers
client servers "$W/c1.log"
RC=$?
if [ $RC = 0 ] && grep -q "^ROWS $ROWS$" "$W/c1.log"; then
    ok "2-host disk shuffle of $ROWS rows through 3 servers is exact ($(grep SECONDS "$W/c1.log"))"
else
    bad "2-host disk shuffle through the servers (exit $RC)" \
        "$(tail -20 "$W/c1.log" | tr '\n' '|')"
fi
T2=$(sed -n 's/^SECONDS //p' "$W/c1.log")

# 2. the same without CPARTD_SERVERS: the clear error, never short data
client noservers "$W/c2.log"
RC=$?
if [ $RC = 3 ] && grep -q "missing on this host" "$W/c2.log" &&
    grep -q "CPARTD_SERVERS" "$W/c2.log"; then
    ok "without CPARTD_SERVERS the shuffle fails: $(grep -o 'missing on this host[^;]*' "$W/c2.log" | head -1)"
else
    bad "without CPARTD_SERVERS: want the missing-directory error (exit $RC)" \
        "$(tail -20 "$W/c2.log" | tr '\n' '|')"
fi

# 3. a server killed mid-shuffle: an error naming it, no hang
DEAD=tcp://$(netns_addr h3):$PORT
SECONDS=0
client kill "$W/c3.log" &
CPID=$!
wait_for "$W/c3.log" "^SHUFFLING" 60
sleep 1
kill -KILL "${SRV_PID[h3]}" # a crash: nothing is flushed, nothing said
wait "${SRV_PID[h3]}" 2>/dev/null
wait $CPID
RC=$?
took=$SECONDS
if [ $RC = 3 ] && grep "^ERROR" "$W/c3.log" | grep -qF "$DEAD"; then
    ok "a server killed mid-shuffle: error naming $DEAD after ${took}s"
else
    bad "a server killed mid-shuffle: want an error naming $DEAD (exit $RC, ${took}s)" \
        "$(tail -20 "$W/c3.log" | tr '\n' '|')"
fi

# 4. the workers exit: the namespaces they created are dropped
# (shuffle 1's is still there: its creator's directory still exists)
server_keys() { # the number of keys on h1 and h2
    local h n left=0
    for h in h1 h2; do
        n=$(netns_run h4 "$PARTD" keys --connect "tcp://$(netns_addr $h):$PORT" \
            --timeout 10 2>"$W/err" | wc -l)
        left=$((left + n))
    done
    echo $left
}
before=$(server_keys)
if [ "$before" -gt 0 ]; then
    ok "while the workers live the servers hold the shuffles' keys ($before)"
else
    bad "the servers hold no keys before the workers exit"
fi
# (their exit drops each namespace on every server: give them time for
# the dead server's timeout)
for h in h4 h5; do
    eval "netns_kill \$WORKER_$h 30"
done
left=$(server_keys)
if [ "$left" = 0 ]; then
    ok "after the workers exit the servers hold no keys"
else
    bad "after the workers exit the servers still hold $left keys"
fi

# 5. the same shuffle on one host (a LocalCluster, local disk), timed
netns_run h4 env -u CPARTD_SERVERS timeout 120 "$PY" "$W/client.py" local \
    "$ROWS" >"$W/c5.log" 2>&1
RC=$?
T1=$(sed -n 's/^SECONDS //p' "$W/c5.log")
if [ $RC = 0 ]; then
    ok "1-host disk shuffle (LocalCluster, 2 workers): ${T1}s"
else
    bad "1-host disk shuffle (exit $RC)" "$(tail -20 "$W/c5.log" | tr '\n' '|')"
fi
echo "# timing: $ROWS rows, 2 hosts through 3 servers ${T2:-?}s; 1 host, local disk ${T1:-?}s"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
