#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# Tests of `partd demo`, the multiprocess shuffle: small runs with each
# transport (a server over ipc, or --direct into a File under flock) and
# codecs, usage errors, the read phase's readers (1 and 3), and failures:
# a worker, a reader or the server killed mid-run, SIGINT, a foreign write
# into a partition (a reader's verify failure).  In every case: the
# exit status, the verification line, no process left behind and nothing
# left in $TMPDIR.
# Usage: bash tests/test_demo.sh /path/to/partd
# Prints one line per check and a last line "N passed, N failed"; exits
# non-zero if any check failed.
set -u

PARTD=${1:-}
if [ -z "$PARTD" ] || [ ! -x "$PARTD" ]; then
    echo "usage: bash tests/test_demo.sh /path/to/partd" >&2
    exit 2
fi
case $PARTD in /*) ;; *) PARTD=$PWD/$PARTD ;; esac

T=$(mktemp -d "${TMPDIR:-/tmp}/partd-demo-test.XXXXXX") || exit 1
BG=
trap '[ -n "$BG" ] && kill -9 $BG 2>/dev/null; rm -rf "$T"' EXIT
W=$T/work # the test's own files
mkdir -p "$W" "$T/tmp"
export TMPDIR=$T/tmp # the demo's temporary directories, checked empty

. "$(dirname "${BASH_SOURCE[0]}")/tap.sh"
# run ARGS...: partd demo ARGS..., output in $W/out and $W/err, status RC.
run() {
    "$PARTD" demo "$@" </dev/null >"$W/out" 2>"$W/err"
    RC=$?
}
# tmp_clean DESC: the demo left nothing in $TMPDIR.
tmp_clean() {
    local left
    left=$(ls -A "$TMPDIR")
    if [ -z "$left" ]; then
        ok "$1: nothing left in TMPDIR"
    else
        bad "$1: nothing left in TMPDIR" "left: $left"
        rm -rf "${TMPDIR:?}"/*
    fi
}
# good DESC ARGS...: a run that must verify.
good() {
    local d=$1
    shift
    run "$@"
    if [ "$RC" -eq 0 ] && grep -q '^verify:  OK: ' "$W/out" &&
        grep -q '^partd demo: OK$' "$W/out"; then
        ok "$d: exit 0, verified"
    else
        bad "$d: exit 0, verified" "exit $RC"
    fi
}
# usage DESC ARGS...: a usage error: exit 2, a message, nothing on stdout.
usage() {
    local d=$1
    shift
    run "$@"
    if [ "$RC" -eq 2 ] && grep -q '^partd: demo: ' "$W/err" && [ ! -s "$W/out" ]; then
        ok "usage error exits 2: $d"
    else
        bad "usage error exits 2: $d" "exit $RC"
    fi
}
# start_bg ARGS...: partd demo ARGS... in the background; BG its pid.  The
# last run's output goes first: wait_line must not see its lines.
start_bg() {
    rm -f "$W/out" "$W/err"
    "$PARTD" demo "$@" </dev/null >"$W/out" 2>"$W/err" &
    BG=$!
}
# wait_line REGEX: waits (30 s at most) for a line of $W/out to match.
wait_line() {
    for _ in $(seq 300); do
        grep -qsE "$1" "$W/out" && return 0
        kill -0 "$BG" 2>/dev/null || { grep -qsE "$1" "$W/out"; return; }
        sleep 0.1
    done
    return 1
}
# wait_bg: waits (60 s at most) for the background demo; RC its status,
# 999 if it had to be killed (it hung).
wait_bg() {
    for _ in $(seq 600); do
        kill -0 "$BG" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$BG" 2>/dev/null; then
        kill -9 "$BG"
        wait "$BG"
        RC=999
    else
        wait "$BG"
        RC=$?
    fi
    BG=
}
# gone DESC PID...: none of the processes is left.
gone() {
    local d=$1 p left=
    shift
    sleep 0.1
    for p in "$@"; do
        kill -0 "$p" 2>/dev/null && left="$left $p"
    done
    if [ -z "$left" ]; then ok "$d"; else bad "$d" "still running:$left"; fi
}
server_pid() { sed -n 's/^server:  .*(pid \([0-9]*\)) at .*/\1/p' "$W/out"; }
worker_pids() { sed -n 's/^workers: \(.*\) (pids)$/\1/p' "$W/out"; }
reader_pids() { sed -n 's/^readers: \(.*\) (pids)$/\1/p' "$W/out"; }

echo "# partd: $PARTD"

# ------------------------------------------------------------ help
run --help
if [ "$RC" -eq 0 ]; then ok "--help exits 0"; else bad "--help exits 0" "exit $RC"; fi
for word in --records --workers --partitions --record-size --codec --level \
    --memory --dir --keep --direct --store --seed --quiet 'default 10M' \
    'default 64' 'Exit status'; do
    check "--help mentions $word" grep -qF -- "$word" "$W/out"
done

"$PARTD" help demo </dev/null >"$W/out" 2>"$W/err"
RC=$?
if [ "$RC" -eq 0 ] && grep -q -- '--records N' "$W/out"; then
    ok "help demo shows the demo's help"
else
    bad "help demo shows the demo's help" "exit $RC"
fi

# ------------------------------------------------------------ usage errors
usage "--workers 0" --workers 0
usage "--workers 65" --workers 65
usage "--workers x" --workers x
usage "--records 0" --records 0
usage "--records abc" --records abc
usage "--records 10X" --records 10X
usage "--records past the limit" --records 2000G
usage "--records without a value" --records
usage "--partitions 0" --partitions 0
usage "--partitions 65537" --partitions 65537
usage "--record-size 15" --record-size 15
usage "--record-size 65537" --record-size 65537
usage "unknown codec" --codec nope
usage "--level without --codec" --level 3
usage "--level out of range" --codec zstd --level 99
usage "--memory 0" --memory 0
usage "--memory 1Q" --memory 1Q
usage "--memory with --direct" --direct --memory 1M
usage "--keep with --dir" --keep --dir "$W/d"
usage "--seed -1" --seed -1
usage "unknown option" --frob
usage "an argument" extra
tmp_clean "usage errors"

# The one option parser and size parser (shared with the other verbs).
usage "an argument after --" --records 1k -- extra
usage_msg "unknown option" "^partd: demo: unknown option '--frob'" --frob
usage_msg "unknown short option" "^partd: demo: unknown option '-z'" -qz
usage_msg "--records without a value" "^partd: demo: option '--records' needs a value: N" --records
usage_msg "--keep=1" "^partd: demo: option '--keep' takes no value" --keep=1
usage_msg "--memory 1Q" "^partd: demo: --memory '1Q': not a size" --memory 1Q
usage_msg "--memory=1KB" "^partd: demo: --memory '1KB': not a size" --memory=1KB
usage_msg "--record-size 64KB" "^partd: demo: --record-size '64KB': not a size" --record-size 64KB
usage_msg "--record-size 65KiB" "^partd: demo: --record-size '65KiB': must be from 16 to 65536" \
    --record-size 65KiB
usage_msg "--records 1KiB (a count, not a size)" "^partd: demo: --records '1KiB': not a count" \
    --records 1KiB
usage_msg "--workers 2k (a plain number)" "^partd: demo: --workers '2k': not a whole number" \
    --workers 2k
run -qh
if [ "$RC" -eq 0 ] && grep -q -- '--records N' "$W/out"; then
    ok "-qh (grouped short options) shows the help"
else
    bad "-qh (grouped short options) shows the help" "exit $RC"
fi
check "--help states the units of a size" grep -q 'powers of 1024' "$W/out"
check "--help states the units of a count" grep -q 'powers of 1000' "$W/out"
tmp_clean "option parsing"

# ------------------------------------------------------------ good runs
good "server over ipc" --records 200k
check "reports 64 keys and 200000 records" \
    grep -q '^verify:  OK: 64 keys, 200000 records' "$W/out"
for line in '^shuffle: 200000 records, 20.0 MB in .* MB/s, .* records/s$' \
    '^read:    64 partitions, 20.0 MB in .* MB/s' \
    '^server:  partd serve --path .*(pid [0-9]*) at ipc://' \
    '^workers: [0-9]* [0-9]* (pids)$' '^readers: [0-9]* [0-9]* (pids)$' \
    '^memory:  peak RSS: server [0-9.]* MB, workers [0-9.]* MB (largest), readers [0-9.]* MB' \
    '^disk:    [0-9.]* MB used .*(removed)$' '^close:   '; do
    check "report has /$line/" grep -q "$line" "$W/out"
done
check "stderr is empty (a small run shows no progress)" test ! -s "$W/err"
tmp_clean "server over ipc"

good "direct into a File under flock" --records 200k --direct
check "direct: no server" grep -q '^server:  none' "$W/out"
tmp_clean "direct"

good "server, zstd" --records 200k --codec zstd
check "zstd: compressed on disk" \
    grep -qE '^disk:    ([0-9]|1[0-9])\.[0-9] MB used' "$W/out"
good "direct, lz4 level 9" --records 100k --direct --codec lz4 --level 9
good "server, snappy, 3 workers, 7 partitions, 37-byte records" \
    --records 12345 --codec snappy --workers 3 --partitions 7 --record-size 37
check "7 keys" grep -q '^verify:  OK: 7 keys, 12345 records' "$W/out"
good "fewer records than workers" --records 1 --workers 4
check "... still 4 readers" grep -qE '^readers: [0-9]+ [0-9]+ [0-9]+ [0-9]+ \(pids\)$' "$W/out"
check "1 key, 1 record" grep -q '^verify:  OK: 1 keys, 1 records' "$W/out"
good "fewer partitions than workers: a reader per partition" --records 1000 \
    --workers 4 --partitions 2 --direct
check "... 2 readers" grep -qE '^readers: [0-9]+ [0-9]+ \(pids\)$' "$W/out"
good "server spills (64 KiB of memory)" --records 100k --memory 64k
# The read phase: as many readers as workers, each its own store handle.
for mode in served direct; do
    extra=()
    [ $mode = direct ] && extra=(--direct --store log)
    good "$mode: 1 worker, 1 reader" --records 20k --workers 1 "${extra[@]}"
    check "$mode: 1 reader" grep -qE '^readers: [0-9]+ \(pids\)$' "$W/out"
    good "$mode: 3 workers, 3 readers, 100 partitions" --records 30k --workers 3 \
        --partitions 100 "${extra[@]}"
    check "$mode: 3 readers" grep -qE '^readers: [0-9]+ [0-9]+ [0-9]+ \(pids\)$' "$W/out"
    check "$mode: 3 readers: 30000 records verified" \
        grep -q '^verify:  OK: 100 keys, 30000 records' "$W/out"
done
good "1 worker, 1 partition, big records" --records 2000 --workers 1 \
    --partitions 1 --record-size 65536
good "another seed, quiet" --records 50k --seed 7 -q
good "--opt=value, sizes with units, and --" --records=2k --workers=1 \
    --partitions=3 --record-size=1KiB --memory=1MiB --seed=7 -q --
check "1KiB records are 1024 bytes, 2k records are 2000" \
    grep -q '^partd demo: 2000 records of 1024 B' "$W/out"
check "--memory=1MiB is 1048576 bytes" grep -q -- '--memory 1048576 ' "$W/out"
good "--record-size 64k, --memory 1g" --records 100 --record-size 64k --memory 1g -q
check "64k records are 65536 bytes" grep -q '^partd demo: 100 records of 65536 B' "$W/out"
tmp_clean "codecs and shapes"

D=$W/store
good "--dir DIR, zlib" --records 50k --dir "$D" --codec zlib
check "--dir: the store is kept" test -f "$D/p00000"
n=$("$PARTD" keys "$D" | wc -l)
check "--dir: 64 keys in the store ($n)" test "$n" -eq 64
bytes=$("$PARTD" get --codec zlib "$D" p00000 | wc -c)
check "--dir: p00000 reads back as whole records ($bytes bytes)" \
    test $((bytes % 100)) -eq 0 -a "$bytes" -gt 0
run --records 10k --dir "$D"
if [ "$RC" -eq 1 ] && grep -q 'already holds 64 keys' "$W/err"; then
    ok "--dir holding keys: exit 1, refused"
else
    bad "--dir holding keys: exit 1, refused" "exit $RC"
fi
good "--dir DIR, direct" --records 20k --dir "$W/store2" --direct

# --store log: the Log store, direct (one segment per worker) and served
# (Buffer(Dict, Log)); a --dir that holds a Log is one without --store.
good "--store log, direct, 4 workers, 4096 partitions" --records 200k \
    --direct --store log --workers 4 --partitions 4096
check "log direct: the report names the Log" grep -q '^store:  .*temporary Log' "$W/out"
check "log direct: no server" grep -q '^server:  none: .*Log store' "$W/out"
good "--store log, through the server" --records 200k --store log
check "log served: the server spills to a Log" \
    grep -q '^server:  partd serve .*--store log' "$W/out"
good "--store log, served, spills (64 KiB), zstd" --records 100k --store log \
    --memory 64k --codec zstd
good "--store log, direct, 65536 partitions" --records 100k --direct \
    --store log --partitions 65536 -q
check "65536 partitions read, 100000 records" grep -q \
    '^read:    65536 partitions' "$W/out"
check "... 100000 records verified" grep -qE '^verify:  OK: [0-9]+ keys, 100000 records' "$W/out"
tmp_clean "--store log"
D=$W/store-log
good "--dir DIR --store log, direct" --records 20k --dir "$D" --store log --direct
check "--dir: a Log (its marker file)" test -f "$D/partd-log"
n=$("$PARTD" keys "$D" | wc -l)
check "--dir: partd keys reads the Log without --store ($n keys)" test "$n" -eq 64
run --records 10k --dir "$D"
if [ "$RC" -eq 1 ] && grep -q 'already holds 64 keys' "$W/err"; then
    ok "--dir holding a Log with keys: exit 1, refused"
else
    bad "--dir holding a Log with keys: exit 1, refused" "exit $RC"
fi
"$PARTD" drop "$D" </dev/null >/dev/null 2>&1
good "--dir holding an empty Log, served, without --store" --records 20k --dir "$D"
check "... the server used the Log" grep -q -- '--store log' "$W/out"
run --records 10k --dir "$W/store2" --store log
if [ "$RC" -eq 1 ] && grep -q 'not a Log' "$W/err"; then
    ok "--store log on a File's --dir: exit 1, refused"
else
    bad "--store log on a File's --dir: exit 1, refused" "exit $RC"
fi
usage "--store bogus" --store bogus
tmp_clean "--dir, log"

touch "$W/file"
run --records 10k --dir "$W/file"
if [ "$RC" -eq 1 ] && [ -s "$W/err" ]; then ok "--dir on a file: exit 1"; else bad "--dir on a file: exit 1" "exit $RC"; fi
tmp_clean "--dir"

# Several --dir: the store spread over them (serve --path A --path B, or a
# Fanout of Files with --direct): every partition in exactly one DIR.
fan_dirs() {
    local d=$1 a=$2 b=$3
    local na nb
    na=$("$PARTD" keys "$a" 2>/dev/null | wc -l)
    nb=$("$PARTD" keys "$b" 2>/dev/null | wc -l)
    check "$d: the 64 partitions are split over both DIRs ($na + $nb)" \
        test "$na" -ge 1 -a "$nb" -ge 1 -a "$((na + nb))" -eq 64
    check "$d: no partition in both" \
        test -z "$(sort <("$PARTD" keys "$a") <("$PARTD" keys "$b") | uniq -d)"
}
good "--dir A --dir B, through the server" --records 50k --dir "$W/fa1" \
    --dir "$W/fa2" --memory 64K
check "... the report names both" grep -q "^store:   $W/fa1, $W/fa2 (kept File)" "$W/out"
check "... and the server serves both" \
    grep -q "^server:  partd serve --path $W/fa1 --path $W/fa2 " "$W/out"
fan_dirs "server" "$W/fa1" "$W/fa2"
good "--dir A --dir B --direct, zstd" --records 50k --dir "$W/fb1" \
    --dir "$W/fb2" --direct --codec zstd
fan_dirs "direct" "$W/fb1" "$W/fb2"
"$PARTD" get --codec zstd "$W/fb1" p00000 >"$W/p0a" 2>/dev/null
"$PARTD" get --codec zstd "$W/fb2" p00000 >"$W/p0b" 2>/dev/null
check "direct: p00000 holds whole records in one DIR" \
    test "$(($(wc -c <"$W/p0a") + $(wc -c <"$W/p0b")))" -gt 0 -a \
    "$((($(wc -c <"$W/p0a") + $(wc -c <"$W/p0b")) % 100))" -eq 0
usage "--dir given twice" --dir "$W/same" --dir "$W/same"
mkdir -p "$W/same2"
run --records 1k --dir "$W/same2" --dir "$W/same2/."
if [ "$RC" -eq 1 ] && grep -q "are the same directory" "$W/err"; then
    ok "--dir A --dir A/.: exit 1, the same directory"
else
    bad "--dir A --dir A/.: exit 1, the same directory" "exit $RC"
fi
tmp_clean "--dir A --dir B"

good "--keep" --records 10k --keep
kept=$(sed -n 's/^kept:    \([^ ]*\) .*/\1/p' "$W/out")
check "--keep: the store (a Log by default) is kept at $kept" test -n "$kept" -a -f "$kept/partd-log"
rm -rf "${TMPDIR:?}"/*

TMPDIR=$W/no/such/dir run --records 10k
if [ "$RC" -eq 1 ] && grep -q 'mkdtemp' "$W/err"; then
    ok "missing TMPDIR: exit 1 naming mkdtemp"
else
    bad "missing TMPDIR: exit 1 naming mkdtemp" "exit $RC"
fi

if command -v script >/dev/null 2>&1; then
    # zlib in the worker: a shuffle of seconds, so the bar (drawn every
    # 0.2 s) shows however fast the store is.
    script -qec "'$PARTD' demo --records 500k --workers 1 --codec zlib" /dev/null \
        </dev/null >"$W/tty" 2>&1
    RC=$?
    if [ "$RC" -eq 0 ] && grep -q 'shuffle \[#*-*\] ' "$W/tty"; then
        ok "on a terminal: a progress bar"
    else
        bad "on a terminal: a progress bar" "exit $RC" \
            "tty: $(tr '\r' '\n' <"$W/tty" | head -c 400 | tr '\n' '|')"
    fi
    tmp_clean "tty"
fi

# ------------------------------------------------------------ failures
# A worker killed mid-run: exit 1 naming it, not a hang nor a success.
for mode in server direct; do
    extra=()
    [ $mode = direct ] && extra=(--direct)
    start_bg --records 100M "${extra[@]}"
    if wait_line '^workers: '; then
        srv=$(server_pid)
        read -r -a wp <<<"$(worker_pids)"
        kill -9 "${wp[0]}"
        wait_bg
        if [ "$RC" -eq 1 ] &&
            grep -q "worker 0 (pid ${wp[0]}) was killed by signal 9" "$W/err" &&
            grep -q '^partd demo: FAILED$' "$W/out" && ! grep -q '^verify:  OK' "$W/out"; then
            ok "$mode: worker killed: exit 1 naming it"
        else
            bad "$mode: worker killed: exit 1 naming it" "exit $RC"
        fi
        gone "$mode: worker killed: every process stopped" "${wp[@]}" ${srv:+"$srv"}
    else
        bad "$mode: worker killed: the demo started its workers"
        wait_bg
    fi
    tmp_clean "$mode: worker killed"
done

# The server killed: exit 1 naming it; the workers stopped.
start_bg --records 100M
if wait_line '^workers: '; then
    srv=$(server_pid)
    read -r -a wp <<<"$(worker_pids)"
    kill -9 "$srv"
    wait_bg
    if [ "$RC" -eq 1 ] && grep -q "server (pid $srv) was killed by signal 9" "$W/err"; then
        ok "server killed: exit 1 naming it"
    else
        bad "server killed: exit 1 naming it" "exit $RC"
    fi
    gone "server killed: every process stopped" "${wp[@]}"
else
    bad "server killed: the demo started"
    wait_bg
fi
tmp_clean "server killed"

# SIGINT and SIGTERM to the demo: exit 130, everything stopped and removed.
for sig in INT TERM; do
    start_bg --records 100M
    if wait_line '^workers: '; then
        srv=$(server_pid)
        read -r -a wp <<<"$(worker_pids)"
        kill -$sig "$BG"
        wait_bg
        if [ "$RC" -eq 130 ] && grep -q 'interrupted' "$W/err"; then
            ok "SIG$sig: exit 130"
        else
            bad "SIG$sig: exit 130" "exit $RC"
        fi
        gone "SIG$sig: every process stopped" "${wp[@]}" "$srv"
    else
        bad "SIG$sig: the demo started"
        wait_bg
    fi
    tmp_clean "SIG$sig"
done

# A full disk, as a file size limit (ulimit -f, 1 MiB per file; the
# children ignore SIGXFSZ, so a write fails with EFBIG): exit 1 naming the
# process and the reason.
fsize_case() {
    local d=$1 want=$2
    shift 2
    "$PARTD" demo --records 200k --partitions 4 "$@" </dev/null >"$W/out" 2>"$W/err" &
    BG=$!
    wait_bg
    if [ "$RC" -eq 1 ] && grep -qE "$want" "$W/err"; then
        ok "file size limit, $d: exit 1, /$want/"
    else
        bad "file size limit, $d: exit 1, /$want/" "exit $RC"
    fi
    tmp_clean "file size limit, $d"
}
(
    ulimit -f 1024
    fsize_case "direct, Log" '^partd: demo: worker [0-9] \(pid [0-9]*\) failed: append p0000[0-3](\.\.p0000[0-3] \([0-9]* partitions\))?: .*File too large' --direct
    fsize_case "direct, File" '^partd: demo: worker [0-9] \(pid [0-9]*\) failed: append p0000[0-3](\.\.p0000[0-3] \([0-9]* partitions\))?: .*File too large' --direct --store file
    fsize_case "server, spilling" '^partd: demo: worker [0-9] \(pid [0-9]*\) failed: .*failed on the server.*File too large' --memory 1M
    # (A File: a temporary Log is dropped before the server stops.)
    fsize_case "server, flush at close" '^partd: demo: server \(pid [0-9]*\) exited with status 1' --store file
    echo "$PASSED $FAILED" >"$W/counts"
)
read -r PASSED FAILED <"$W/counts"

# A record appended by someone else: the counts no longer match.  zlib in
# the workers makes the shuffle take seconds, time for the foreign append.
D=$W/store3
start_bg --records 1M --direct --codec zlib --dir "$D"
if wait_line '^workers: '; then
    head -c 100 /dev/zero | "$PARTD" append --codec zlib "$D" p00000
    wait_bg
    if [ "$RC" -eq 1 ] &&
        grep -q 'verify: partition p00000 holds [0-9]* records, [0-9]* were written' "$W/err"; then
        ok "foreign record: exit 1 naming the partition"
    else
        bad "foreign record: exit 1 naming the partition" "exit $RC"
    fi
else
    bad "foreign record: the demo started"
    wait_bg
fi
tmp_clean "foreign record"

# A foreign record of p00050 (its key 50: 50 % 64), in the last of 3
# readers' shares: that reader's message reaches the output as it is.
D=$W/store4
start_bg --records 1M --direct --codec zlib --dir "$D" --workers 3 -q
if wait_line '^workers: '; then
    { printf '\x32\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0'; head -c 84 /dev/zero | tr '\0' a; } |
        "$PARTD" append --codec zlib "$D" p00050
    wait_bg
    if [ "$RC" -eq 1 ] &&
        grep -qx 'partd: demo: verify: partition p00050 holds [0-9]* records, [0-9]* were written to it' "$W/err" &&
        [ "$(wc -l <"$W/err")" -eq 1 ] && grep -q '^partd demo: FAILED$' "$W/out"; then
        ok "a reader's verify failure: exit 1, its message alone, unchanged"
    else
        bad "a reader's verify failure: exit 1, its message alone, unchanged" "exit $RC"
    fi
    read -r -a rp <<<"$(reader_pids)"
    check "... 3 readers" test "${#rp[@]}" -eq 3
    gone "a reader's verify failure: every process stopped" "${rp[@]}"
else
    bad "a reader's verify failure: the demo started"
    wait_bg
fi
tmp_clean "a reader's verify failure"

# A reader killed, and SIGINT, in the read phase: bz2 makes it last (a
# second or more).  The killed reader is named with its partitions.
for what in kill INT; do
    start_bg --records 30k --record-size 1k --codec bz2 --direct
    if wait_line '^readers: '; then
        read -r -a rp <<<"$(reader_pids)"
        if [ $what = kill ]; then kill -9 "${rp[1]}"; else kill -INT "$BG"; fi
        wait_bg
        if [ $what = kill ]; then
            if [ "$RC" -eq 1 ] && grep -qx "partd: demo: reader 1 (pid ${rp[1]}), reading partitions p000[0-9][0-9]\.\.p00063, was killed by signal 9 (Killed)" "$W/err" &&
                grep -q '^partd demo: FAILED$' "$W/out" && ! grep -q '^verify:  OK' "$W/out"; then
                ok "reader killed: exit 1 naming it, its pid and partitions"
            else
                bad "reader killed: exit 1 naming it, its pid and partitions" "exit $RC"
            fi
        elif [ "$RC" -eq 130 ] && grep -q 'interrupted by signal 2' "$W/err"; then
            ok "SIGINT while reading: exit 130"
        else
            bad "SIGINT while reading: exit 130" "exit $RC"
        fi
        gone "read phase, $what: every process stopped" "${rp[@]}"
    else
        bad "read phase, $what: the readers started"
        wait_bg
    fi
    tmp_clean "read phase, $what"
done

tap_summary
