#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# Tests of `partd serve` and `--connect`: one server, several servers
# (a Fanout), stats, and CURVE.
# Usage: bash tests/test_cli_serve.sh /path/to/partd
# Prints one line per check and a last line "N passed, N failed"; exits
# non-zero if any check failed.
set -u

. "$(dirname "${BASH_SOURCE[0]}")/clifix.sh" "$@"

# The values the round trips through servers send.
head -c 300000 /dev/urandom >"$W/rnd"
seq 1 40000 >"$W/seq"

# ------------------------------------------------------------ serve, --connect
S=$A/served
"$PARTD" serve --path "$S" >"$W/serve.out" 2>"$W/serve.err" </dev/null &
SPID=$!
ADDR=$(first_line "$W/serve.out")
case $ADDR in
ipc://*) ok "serve prints its ipc address first: $ADDR" ;;
*) bad "serve prints its ipc address first" "got '$ADDR'" ;;
esac
SOCK=${ADDR#ipc://}
check "... a socket in a private 0700 directory" \
    test "$(stat -c %a "$(dirname "$SOCK")")" = 700
run_in "$W/seq" append --connect "$ADDR" k
expect_rc "append --connect" 0
run_in "$W/rnd" append --connect "$ADDR" -r "('t', 'u')"
cat "$W/seq" >"$W/want-srv"
"$PARTD" get --connect "$ADDR" k >"$W/rt" 2>"$W/err" </dev/null
same_bytes "get --connect" "$W/want-srv" "$W/rt"
"$PARTD" get --connect "$ADDR" -r "('t', 'u')" >"$W/rt" 2>"$W/err" </dev/null
same_bytes "get --connect, a tuple key" "$W/rnd" "$W/rt"
run keys --connect "$ADDR"
check "keys --connect lists both keys" grep -qx "('t', 'u')" "$W/out"
run delete --connect "$ADDR" k
expect_rc "delete --connect" 0
run get --connect "$ADDR" k
check "... the key is gone" test ! -s "$W/out"
if "$PY" -c 'import partd, zmq' 2>/dev/null; then
    "$PY" -c '
import sys, partd
c = partd.Client(sys.argv[1])
c.append({"py": b"from-python"})
assert c.get("py") == b"from-python", c.get("py")
assert c.get(("t", "u"))[:10] == open(sys.argv[2], "rb").read()[:10]
c.close()' "$ADDR" "$W/rnd" 2>"$W/err"
    check "Python partd.Client talks to partd serve" test $? -eq 0
    "$PARTD" get --connect "$ADDR" py >"$W/rt" 2>"$W/err" </dev/null
    check "... and we read what it appended" grep -qx from-python "$W/rt"
fi
kill -TERM "$SPID"
wait "$SPID"
RC=$?
expect_rc "serve exits 0 on SIGTERM" 0
check "... the socket and its directory are removed" test ! -e "$(dirname "$SOCK")"
printf 'from-python' >"$W/fp"
roundtrip "... and the store was flushed to --path" "$S" "$W/rnd" -r "('t', 'u')"
run get --connect "$ADDR" --timeout 0.5 k
expect_rc "get --connect to a dead server fails" 1
check "... naming the address" grep -qF "$ADDR" "$W/err"
run get --connect "$ADDR" "$S" k
expect_rc "--connect with a DIR too is a usage error" 2
run get --timeout 1 "$S" k
expect_rc "--timeout without --connect is a usage error" 2
run serve --no-such-option
expect_rc "serve: an unknown option is a usage error" 2

# ------------------------------------------- the default store, no --path
# Buffer(Dict, Log): an append of 1 MiB or more goes straight to the Log, so
# the Buffer's memory stays 0; with --store file it stays in memory.
head -c 2000000 /dev/urandom >"$W/big"
for kind in default file; do
    opt=()
    [ "$kind" = file ] && opt=(--store file)
    "$PARTD" serve -q "${opt[@]}" >"$W/serve.out" 2>"$W/serve.err" </dev/null &
    SPID=$!
    ADDR=$(first_line "$W/serve.out")
    run_in "$W/big" append --connect "$ADDR" big
    run stats --connect "$ADDR"
    if [ "$kind" = default ]; then
        check "serve without --path: the Buffer spills to a Log (2 MB append bypasses memory)" \
            grep -qx "memory 0" "$W/out"
    else
        check "serve --store file without --path: a File (the 2 MB append stays in memory)" \
            grep -qx "memory 2000000" "$W/out"
    fi
    "$PARTD" get --connect "$ADDR" big >"$W/rt" 2>"$W/err" </dev/null
    same_bytes "... and reads back ($kind)" "$W/big" "$W/rt"
    kill -TERM "$SPID"
    wait "$SPID"
    RC=$?
    expect_rc "... serve exits 0 ($kind)" 0
done

# ------------------------------------------- several servers, stats, --path x2
# --connect A,B is one store spread over both servers (a Fanout): the same
# list in the same order reads everything back, and each server holds only
# the keys that list maps to it.
"$PARTD" serve -q >"$W/sa.out" 2>"$W/sa.err" </dev/null &
SAPID=$!
"$PARTD" serve --path "$A/fan1" --path "$A/fan2" --memory 4 \
    >"$W/sb.out" 2>"$W/sb.err" </dev/null &
SBPID=$!
SA=$(first_line "$W/sa.out")
SB=$(first_line "$W/sb.out")
for i in 1 2 3 4 5 6 7 8; do
    printf 'val-%s' "$i" >"$W/fv$i"
    run_in "$W/fv$i" append --connect "$SA,$SB" "fk$i"
done
expect_rc "append --connect A,B" 0
allback=0
for i in 1 2 3 4 5 6 7 8; do
    "$PARTD" get --connect "$SA,$SB" "fk$i" >"$W/rt" 2>"$W/err" </dev/null
    cmp -s "$W/fv$i" "$W/rt" || allback=1
done
check "get --connect A,B reads every key back" test "$allback" = 0
run keys --connect "$SA,$SB"
check "keys --connect A,B lists all 8 keys" test "$(wc -l <"$W/out")" = 8
"$PARTD" keys --connect "$SA" >"$W/ka" 2>"$W/err" </dev/null
"$PARTD" keys --connect "$SB" >"$W/kb" 2>"$W/err" </dev/null
check "each server holds some keys, and none twice" \
    test "$(wc -l <"$W/ka")" -ge 1 -a "$(wc -l <"$W/kb")" -ge 1 -a \
    "$(sort "$W/ka" "$W/kb" | uniq -d | wc -l)" = 0
check "... together all 8" test "$(cat "$W/ka" "$W/kb" | wc -l)" = 8
run delete --connect "$SA,$SB" fk1 fk2
run keys --connect "$SA,$SB"
check "delete --connect A,B removes from whichever server" \
    test "$(wc -l <"$W/out")" = 6
"$PARTD" keys --connect "$SA" >"$W/ka" 2>"$W/err" </dev/null
"$PARTD" keys --connect "$SB" >"$W/kb" 2>"$W/err" </dev/null
run stats --connect "$SA"
expect_rc "stats --connect A" 0
check "stats prints a block headed by the address" grep -qx "server $SA" "$W/out"
check "... with its keys" grep -qx "keys $(wc -l <"$W/ka")" "$W/out"
check "... and the requests it served per command" grep -qx "req_stats 1" "$W/out"
run stats --connect "$SA,$SB" --json
expect_rc "stats --connect A,B --json" 0
"$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert isinstance(d, list) and len(d) == 2, d
a, b = d
assert a["address"] == sys.argv[2] and b["address"] == sys.argv[3]
assert a["keys"] + b["keys"] == 6, (a["keys"], b["keys"])
assert a["records"] + b["records"] == 8
assert a["req_append"] + b["req_append"] == 8
assert a["keys"] == int(sys.argv[4]) and b["keys"] == int(sys.argv[5])
assert a["req_stats"] == 2 and b["req_stats"] == 1, (a["req_stats"], b["req_stats"])
assert a["req_delete"] == 1 and b["req_delete"] == 1
assert a["buffer"] == 1 and b["memory_limit"] == 4
assert a["spills"] == 0 and (b["spills"] >= 1 or b["records"] < 2)
assert a["rss"] > 0 and a["failed"] == 0
print("ok")' "$W/out" "$SA" "$SB" "$(wc -l <"$W/ka")" "$(wc -l <"$W/kb")" \
    >"$W/py" 2>&1
check "stats --json: one object per server, the counts add up" grep -qx ok "$W/py"
run stats --connect "$SB" --json
"$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert isinstance(d, dict) and d["keys"] == int(sys.argv[2]), d
print("ok")' "$W/out" "$(wc -l <"$W/kb")" >"$W/py" 2>&1
check "stats --json of one server: one object" grep -qx ok "$W/py"
run help stats
expect_rc "help stats exits 0" 0
check "... shows its usage with --connect and --json" \
    grep -q '^  partd stats --connect ADDR\[,ADDR\]\.\.\. .*--json' "$W/out"
run --help
check "--help lists the stats verb" grep -q '^  stats ' "$W/out"
run help serve
check "help serve: --path is repeatable" grep -q '\[--path DIR\]\.\.\.' "$W/out"
run serve --path "$A/twice" --path "$A/twice/." --timeout 1 -q
expect_rc "serve --path A --path A/. is refused" 1
check "... as the same directory" grep -q "are the same directory" "$W/err"
run stats
expect_rc "stats without --connect is a usage error" 2
run stats --connect "$SA,"
expect_rc "--connect with an empty address is a usage error" 2
kill -TERM "$SAPID" "$SBPID"
wait "$SBPID"
RC=$?
expect_rc "serve --path A --path B exits 0" 0
wait "$SAPID"
check "serve logs a stats line at exit" grep -q "stats: keys .*requests .*uptime" \
    "$W/sb.err"
check "serve -q does not" test -z "$(grep 'stats:' "$W/sa.err")"
fankeys=$(("$("$PARTD" keys "$A/fan1" | wc -l)" + "$("$PARTD" keys "$A/fan2" | wc -l)"))
check "the Fanout's keys were flushed over both --path DIRs" \
    test "$fankeys" = "$(wc -l <"$W/kb")"
"$PARTD" keys "$A/fan1" >"$W/f1"
"$PARTD" keys "$A/fan2" >"$W/f2"
check "... no key in both DIRs" test -z "$(sort "$W/f1" "$W/f2" | uniq -d)"

# ------------------------------------------------------------ serve: CURVE
printf '# allowed\n\n' >"$W/clients-empty"
printf 'not-a-key\n' >"$W/clients-junk"
run serve --curve-clients "$W/clients-empty"
expect_rc "serve: --curve-clients without --curve-secret is a usage error" 2
SEC=$("$PY" -c 'import zmq; print(zmq.curve_keypair()[1].decode())' 2>/dev/null)
if [ -n "$SEC" ]; then
    run serve --curve-secret "$SEC" --curve-clients "$W/clients-junk"
    expect_rc "serve: a junk key in --curve-clients is a usage error" 2
    check "... naming the file and line" grep -qF "clients-junk:1" "$W/err"
    run serve --curve-secret "$SEC" --curve-clients "$W/clients-empty"
    expect_rc "serve: --curve-clients with no keys is a usage error" 2
    run serve --curve-secret "$SEC" --curve-clients "$W/no-such-file"
    expect_rc "serve: a missing --curve-clients file fails" 1
    "$PY" - "$W" <<'EOF'
import sys, zmq
w = sys.argv[1]
spub, ssec = zmq.curve_keypair()
cpub, csec = zmq.curve_keypair()
opub, osec = zmq.curve_keypair()
open(w + '/srv.key', 'wb').write(ssec + b'\n')
open(w + '/srv.pub', 'wb').write(spub)
open(w + '/clients', 'wb').write(b'# the listed client\n' + cpub + b'\n')
for name, pub, sec in (('in', cpub, csec), ('out', opub, osec)):
    open(w + '/' + name + '.pub', 'wb').write(pub)
    open(w + '/' + name + '.sec', 'wb').write(sec)
EOF
    "$PARTD" serve --bind tcp://127.0.0.1:0 --curve-secret "@$W/srv.key" \
        --curve-clients "$W/clients" >"$W/cs.out" 2>"$W/cs.err" </dev/null &
    SPID=$!
    ADDR=$(first_line "$W/cs.out")
    cat >"$W/curve_client.py" <<'EOF'
import sys, zmq
addr, w, who = sys.argv[1:4]
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.linger = 0
s.curve_serverkey = open(w + '/srv.pub', 'rb').read()
s.curve_publickey = open(w + '/' + who + '.pub', 'rb').read()
s.curve_secretkey = open(w + '/' + who + '.sec', 'rb').read()
s.connect(addr)
s.send(b'syn')
s.send_multipart([b'append', b'curve', b'listed'])
s.send_multipart([b'get', b'curve'])
got = []
while len(got) < 4 and s.poll(3000 if who == 'in' else 500):
    got.append(s.recv_multipart())
print(got)
sys.exit(0 if got == [[b'ack'], [b'ack'], [b'listed'], [b'ack']] else 3)
EOF
    "$PY" "$W/curve_client.py" "$ADDR" "$W" in >"$W/out" 2>"$W/err"
    RC=$?
    expect_rc "serve --curve-clients: a listed client key gets in" 0
    "$PY" "$W/curve_client.py" "$ADDR" "$W" out >"$W/out" 2>"$W/err"
    RC=$?
    expect_rc "... a key not on the list is refused (no reply)" 3
    check "... and logged with its key" grep -qF "$(cat "$W/out.pub")" "$W/cs.err"
    kill -TERM "$SPID"
    wait "$SPID"
    RC=$?
    expect_rc "... serve exits 0 on SIGTERM" 0
else
    echo "SKIP - serve --curve-clients: $PY has no pyzmq with CURVE"
fi


tap_summary
