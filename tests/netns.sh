# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# tests/netns.sh: simulated hosts for the test suite, sourced by a test.
#
# Each "host" is a Linux network namespace with one interface (eth0) on a
# private LAN 10.213.N.0/24: a veth pair whose other end is enslaved to a
# bridge living in a namespace of its own.  Nothing is created in the
# caller's network namespace, so no traffic can leave the namespaces made
# here.  Commands run on a host (netns_run) also get a mount namespace in
# which $TMPDIR is the host's own directory (one path on every host, shared
# by that host's processes, invisible to the others) and a UTS namespace
# with the host's name: hosts share no filesystem for temporary files, as
# separate machines.  The rest of the filesystem (the build tree, even
# under /tmp) stays visible.
#
#   . tests/netns.sh
#   netns_check || exit 77                  # needs root and `ip netns`
#   netns_setup 3 "$scratch"                # hosts h1..h3
#   netns_run h1 cmd args... &              # on h1
#   netns_addr h1                           # 10.213.N.11
#   netns_spawn h2 LOG cmd args...          # in the background, tracked
#   netns_cleanup                           # kills what runs, removes all
#
# Requires root, iproute2 (`ip netns`), util-linux (`unshare`) and bridge
# support in the kernel.

NETNS_PREFIX=${NETNS_PREFIX:-pdt$$}
NETNS_SUBNET=${NETNS_SUBNET:-10.213.77}
NETNS_NAMES=()   # every namespace made here, the bridge's included
NETNS_PIDS=()    # every process started with netns_spawn
NETNS_ROOT=      # the hosts' temporary directories, and their mount point

# netns_check: 0 when simulated hosts can be made here, else prints why.
netns_check() {
    if [ "$(id -u)" != 0 ]; then
        echo "netns: not root: network namespaces need root"
        return 1
    fi
    local t
    for t in ip unshare mount hostname; do
        command -v "$t" >/dev/null 2>&1 || {
            echo "netns: $t is not installed"
            return 1
        }
    done
    if ! ip netns list >/dev/null 2>&1; then
        echo "netns: 'ip netns' is not available"
        return 1
    fi
    local probe=${NETNS_PREFIX}-probe
    if ! ip netns add "$probe" 2>/dev/null; then
        echo "netns: cannot create a network namespace here"
        return 1
    fi
    local ok=0
    ip -n "$probe" link add br0 type bridge 2>/dev/null || ok=1
    ip netns exec "$probe" unshare --mount --uts --propagation private \
        true 2>/dev/null || ok=1
    ip netns del "$probe" 2>/dev/null
    [ $ok = 0 ] || echo "netns: bridges or mount/UTS namespaces unavailable"
    return $ok
}

_netns_ns() { echo "${NETNS_PREFIX}-$1"; }

# netns_addr HOST: HOST's address (h1 -> .11, h2 -> .12, ...).
netns_addr() { echo "$NETNS_SUBNET.$((${1#h} + 10))"; }

# netns_setup N DIR: hosts h1..hN on one bridge; their temporary
# directories under DIR, each mounted at DIR/hosts/tmp ($TMPDIR) on its
# host.
netns_setup() {
    local n=$1 i ns br
    NETNS_ROOT=$2/hosts
    mkdir -p "$NETNS_ROOT/tmp" && chmod 1777 "$NETNS_ROOT/tmp" || return 1
    br=$(_netns_ns br)
    ip netns add "$br" || return 1
    NETNS_NAMES+=("$br")
    ip -n "$br" link set lo up &&
        ip -n "$br" link add br0 type bridge &&
        ip -n "$br" link set br0 up || return 1
    for i in $(seq 1 "$n"); do
        ns=$(_netns_ns "h$i")
        ip netns add "$ns" || return 1
        NETNS_NAMES+=("$ns")
        # Both ends are made inside the namespaces, never in the caller's.
        ip -n "$ns" link add eth0 type veth peer name "h$i" netns "$br" &&
            ip -n "$br" link set "h$i" master br0 &&
            ip -n "$br" link set "h$i" up &&
            ip -n "$ns" addr add "$(netns_addr "h$i")/24" dev eth0 &&
            ip -n "$ns" link set eth0 up &&
            ip -n "$ns" link set lo up || return 1
        mkdir -p "$NETNS_ROOT/h$i" && chmod 1777 "$NETNS_ROOT/h$i" || return 1
    done
}

# _netns_cmd HOST CMD...: sets NETNS_CMD to the command line that runs CMD
# on HOST (its network, its $TMPDIR, its name); each step execs the next, so
# the process started keeps its pid down to CMD.
_netns_cmd() {
    local host=$1
    shift
    NETNS_CMD=(ip netns exec "$(_netns_ns "$host")"
        unshare --mount --uts --propagation private
        sh -c 'mount --bind "$1" "$2" && export TMPDIR="$2" &&
               hostname "$3" && shift 3 && exec "$@"' sh \
        "$NETNS_ROOT/$host" "$NETNS_ROOT/tmp" "$NETNS_PREFIX-$host" "$@")
}

# netns_run HOST CMD...: runs CMD on HOST and waits for it.
netns_run() {
    _netns_cmd "$@"
    "${NETNS_CMD[@]}"
}

# netns_spawn HOST LOG CMD...: CMD on HOST in the background, output to
# LOG; its pid (CMD's own) is in NETNS_LAST and killed by netns_cleanup.
netns_spawn() {
    local host=$1 log=$2
    shift 2
    _netns_cmd "$host" "$@"
    "${NETNS_CMD[@]}" >"$log" 2>&1 &
    NETNS_LAST=$!
    NETNS_PIDS+=("$NETNS_LAST")
}

# netns_kill PID [SECONDS]: SIGTERM, then SIGKILL after SECONDS (5); waits
# for it.
netns_kill() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 $((${2:-5} * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

# netns_cleanup: stops every process started here and any left in the
# namespaces (by pid), then removes the namespaces.  Idempotent.
netns_cleanup() {
    local pid ns
    for pid in "${NETNS_PIDS[@]}"; do netns_kill "$pid"; done
    NETNS_PIDS=()
    for ns in "${NETNS_NAMES[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null
        done
    done
    for ns in "${NETNS_NAMES[@]}"; do
        ip netns del "$ns" 2>/dev/null
    done
    NETNS_NAMES=()
}
