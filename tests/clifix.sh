#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# What the `partd` CLI suites share (sourced by tests/test_cli*.sh with the
# suite's arguments): PARTD (the binary, from $1), PY, a private scratch
# directory T (W: the suite's own files; A: stores, and the canaries beside
# them), removed on exit, tap.sh's counters, and the helpers below.

PARTD=${1:-}
if [ -z "$PARTD" ] || [ ! -x "$PARTD" ]; then
    echo "usage: bash tests/${0##*/} /path/to/partd" >&2
    exit 2
fi
case $PARTD in /*) ;; *) PARTD=$PWD/$PARTD ;; esac
PY=/usr/bin/python3

T=$(mktemp -d "${TMPDIR:-/tmp}/partd-cli.XXXXXX") || exit 1
trap 'chmod -R u+rwx "$T" 2>/dev/null; rm -rf "$T"' EXIT
W=$T/work            # the test's own scratch files
A=$T/arena           # stores, and the canaries beside them
mkdir -p "$W" "$A"

# ------------------------------------------------------------ helpers
. "$(dirname "${BASH_SOURCE[0]}")/tap.sh"
# first_line FILE: waits up to 10 s for FILE's first line (the address a
# server prints) and prints it.
first_line() {
    local l=
    for _ in $(seq 1 100); do
        l=$(head -n 1 "$1" 2>/dev/null)
        [ -n "$l" ] && break
        sleep 0.1
    done
    printf '%s' "$l"
}
# run ARGS...: runs partd with stdin from /dev/null; sets RC, output in
# $W/out and $W/err.
run() {
    "$PARTD" "$@" </dev/null >"$W/out" 2>"$W/err"
    RC=$?
}
# got DESC WANT ARGS...: `partd ARGS...` exits 0 and prints exactly WANT.
got() {
    local d=$1 want=$2
    shift 2
    run "$@"
    if [ "$RC" -eq 0 ] && [ "$(cat "$W/out")" = "$want" ]; then
        ok "$d"
    else
        bad "$d" "exit $RC, want '$want'"
    fi
}
# run_in FILE ARGS...: the same with stdin from FILE.
run_in() {
    local in=$1
    shift
    "$PARTD" "$@" <"$in" >"$W/out" 2>"$W/err"
    RC=$?
}
# same_bytes DESC WANTFILE GOTFILE
same_bytes() {
    if cmp -s "$2" "$3"; then
        ok "$1"
    else
        bad "$1" "bytes differ: $(cmp "$2" "$3" 2>&1 | head -c 200)" \
            "want $(wc -c <"$2") bytes, got $(wc -c <"$3") bytes"
    fi
}
# put DIR KEYARGS... < value: append, expecting success.
# roundtrip DESC DIR WANTFILE KEYARGS...: get must give WANTFILE's bytes.
roundtrip() {
    local d=$1 dir=$2 want=$3
    shift 3
    "$PARTD" get "$dir" "$@" >"$W/rt" 2>"$W/err" </dev/null
    local rc=$?
    if [ $rc -ne 0 ]; then
        bad "$d" "get exited $rc"
    elif cmp -s "$want" "$W/rt"; then
        ok "$d"
    else
        bad "$d" "got $(wc -c <"$W/rt") bytes, want $(wc -c <"$want")" \
            "got: $(head -c 80 "$W/rt" | od -An -c | head -2 | tr -s ' \n' ' ')"
    fi
}
# raw_status CMD...: prints the raw wait status of CMD run with SIGPIPE at
# its default and stdout a pipe closed after one byte was read: "exit N" or
# "signal N".  Uses perl to see a signal death that a shell would report
# as 128+N (indistinguishable from an exit code).
raw_status() {
    perl -e '
        $SIG{PIPE} = "DEFAULT";
        my $pid = open(my $fh, "-|") // die "fork: $!";
        if ($pid == 0) {
            open(STDERR, ">", shift @ARGV) or die;
            exec(@ARGV) or exit 127;
        }
        shift @ARGV;
        read($fh, my $b, 1);
        close($fh);
        my $s = $?;
        print(($s & 127) ? "signal " . ($s & 127) : "exit " . ($s >> 8));
    ' "$W/err" "$@"
}

echo "# partd: $PARTD"
echo "# tmp:   $T"
