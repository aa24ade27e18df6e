/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The Fanout's atomicity over Clients (partd.h, "Atomicity"): a write to
 * several servers is checked store by store before anything is sent, so
 * what a Client refuses locally (keys the wire cannot carry, a batch past
 * a request's limits, PD_FSYNC, an earlier request's failure it reads
 * first) leaves nothing applied; what only a server finds is reported
 * naming the stores that applied their part.
 */
#include "testutil.h"
#include "zmq/zmq_internal.h" /* PD__WIRE_MAX_KEYS */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fanoutfix.h"

/* A server over a File in a temporary directory (its own store). */
typedef struct t_fsrv {
    pd_server *srv;
    char *dir;
    char addr[128];
} t_fsrv;

static void t_fsrv_open(t_fsrv *t) {
    t->dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(t->dir);
    pd_store *file = NULL;
    TU_OK(pd_file_open(&file, t->dir, 0), NULL);
    const char *bind[] = {"tcp://127.0.0.1:0"};
    pd_server_opts o = {0};
    o.bind = bind;
    o.nbind = 1;
    o.log = t_log;
    TU_OK(pd_server_open(&t->srv, &file, &o), NULL);
    TU_OK(pd_server_start(t->srv), NULL);
    snprintf(t->addr, sizeof t->addr, "%s", pd_server_address(t->srv, 0));
}

static void t_fsrv_close(t_fsrv *t) {
    TU_OK(pd_server_close(&t->srv), NULL);
    tu_rmtree(t->dir);
    free(t->dir);
}

/* A key "<prefix><i>" (into buf) that a Fanout of n stores routes to
 * store `want`. */
static pd_key t_routed(char *buf, size_t cap, const char *prefix, size_t want,
                       size_t n) {
    for (size_t i = 0; i < 10000; i++) {
        snprintf(buf, cap, "%s%zu", prefix, i);
        pd_key k = K(buf);
        if (pd_fanout_index(&k, n) == want) return k;
    }
    ck_abort_msg("no key %s... routed to store %zu", prefix, want);
    return K("");
}

/* The content of key k on server s, read through a client of its own (the
 * server holds its store while it serves). */
static void t_holds(t_srv *s, pd_key k, const char *want) {
    pd_store *c = t_client(s->addr, 10000);
    tu_expect_str(c, k, want);
    TU_OK(pd_close(&c), NULL);
}

static pd_store *t_async_client(const char *addr) {
    pd_client_opts co = {0};
    co.timeout_ms = 10000;
    pd_store *c = NULL;
    TU_OK(pd_client_open(&c, addr, &co), NULL);
    return c;
}

/* Keys the wire cannot carry, PD_FSYNC and an oversized batch: refused
 * before anything is sent, naming the store, whatever the write. */
START_TEST(refused_before_sent) {
    t_srv s[2];
    pd_store *in[2];
    for (int i = 0; i < 2; i++) {
        t_srv_open(&s[i]);
        in[i] = _i ? t_async_client(s[i].addr) : t_client(s[i].addr, 10000);
    }
    pd_store *f = t_fanout(in, 2);
    char b0[32], b1[32], bb[32];
    pd_key good = t_routed(b0, sizeof b0, "g", 0, 2);
    pd_key other = t_routed(b1, sizeof b1, "o", 1, 2);
    pd_key bad = t_routed(bb, sizeof bb, "a-|-b", 1, 2);
    tu_append1(f, other, "o", 1);
    TU_OK(pd_client_sync(in[1]), in[1]);
    pd_key batch[] = {good, other, bad};
    pd_bytes vals[] = {V("1"), V("2"), V("3")};
    char want[160], repr[64];
    snprintf(want, sizeof want, "store 1 of 2 (client %s)", s[1].addr);
    pd_key_repr(&bad, repr, sizeof repr);
    for (int op = 0; op < 3; op++) {
        int rc = op == 0   ? pd_append(f, 3, batch, vals, 0)
                 : op == 1 ? pd_iset(f, 3, batch, vals, 0)
                           : pd_delete(f, 3, batch, 0);
        ck_assert_int_eq(rc, PD_ERR_KEY);
        t_has(f, op == 0 ? "fanout: append: " : op == 1 ? "iset" : "delete");
        t_has(f, want);
        t_has(f, "refused before anything was sent");
        t_has(f, repr);
        t_has(f, "-|-");
    }
    /* Nothing of the batches reached either server. */
    for (int i = 0; i < 2; i++) TU_OK(pd_client_sync(in[i]), in[i]);
    t_holds(&s[0], good, "");
    t_holds(&s[1], other, "o");
    /* PD_FSYNC: a Client cannot forward it. */
    ck_assert_int_eq(pd_append(f, 2, batch, vals, PD_FSYNC),
                     PD_ERR_UNSUPPORTED);
    t_has(f, "store 0 of 2");
    t_has(f, "PD_FSYNC");
    t_has(f, "refused before anything was sent");
    /* One part past a request's key limit: the other part is not sent. */
    size_t nk = PD__WIRE_MAX_KEYS + 1;
    pd_key *lots = malloc((nk + 1) * sizeof *lots);
    pd_bytes *lv = malloc((nk + 1) * sizeof *lv);
    ck_assert(lots && lv);
    lots[0] = good;
    lv[0] = V("x");
    for (size_t i = 1; i <= nk; i++) {
        lots[i] = other;
        lv[i] = V("y");
    }
    ck_assert_int_eq(pd_append(f, nk + 1, lots, lv, 0), PD_ERR_LIMIT);
    t_has(f, want);
    t_has(f, "keys in one request");
    free(lots);
    free(lv);
    for (int i = 0; i < 2; i++) TU_OK(pd_client_sync(in[i]), in[i]);
    t_holds(&s[0], good, "");
    t_holds(&s[1], other, "o");
    /* And the Fanout goes on. */
    TU_OK(pd_append(f, 2, batch, vals, 0), f);
    for (int i = 0; i < 2; i++) TU_OK(pd_client_sync(in[i]), in[i]);
    t_holds(&s[0], good, "1");
    t_holds(&s[1], other, "o2");
    TU_OK(pd_close(&f), NULL);
    t_clients_close(s, in, 2);
}
END_TEST

/* Store 1 serves a File, whose names collide (flat p, tuple (p, q)): only
 * the server can tell.  `sync` clients report it with the batch, naming
 * the stores that applied theirs; pipelined clients report it on the next
 * call to that store, and a delete or iset, which reads it first, is then
 * refused before anything is sent. */
START_TEST(remote_failure) {
    bool sync = _i == 0;
    t_srv s0;
    t_fsrv s1;
    t_srv_open(&s0);
    t_fsrv_open(&s1);
    pd_store *in[2] = {
        sync ? t_client(s0.addr, 10000) : t_async_client(s0.addr),
        sync ? t_client(s1.addr, 10000) : t_async_client(s1.addr)};
    pd_store *f = t_fanout(in, 2);
    /* p: a flat key routed to store 1 whose tuple (p, q) goes there too. */
    char pb[32], gb[32];
    pd_bytes tp[2];
    pd_key p = K(""), tup = K("");
    for (size_t i = 0; i < 10000; i++) {
        snprintf(pb, sizeof pb, "p%zu", i);
        p = K(pb);
        tp[0] = PD_BYTES(pb, strlen(pb));
        tp[1] = V("q");
        tup = PD_KEY_TUPLE(tp, 2);
        if (pd_fanout_index(&p, 2) == 1 && pd_fanout_index(&tup, 2) == 1) break;
    }
    ck_assert_uint_eq(pd_fanout_index(&p, 2), 1);
    ck_assert_uint_eq(pd_fanout_index(&tup, 2), 1);
    pd_key good = t_routed(gb, sizeof gb, "g", 0, 2);
    tu_append1(f, p, "flat", 4);
    pd_key batch[] = {good, tup};
    pd_bytes vals[] = {V("g"), V("t")};
    char want[160];
    snprintf(want, sizeof want, "store 1 of 2 (client %s)", s1.addr);
    int rc = pd_append(f, 2, batch, vals, 0);
    if (sync) {
        ck_assert_int_eq(rc, PD_ERR_KEY);
        t_has(f, "fanout: append: ");
        t_has(f, want);
        t_has(f, "applied by store 0");
        t_has(f, "not atomic across stores");
        tu_expect_str(f, good, "g");
    } else {
        /* Sent to both; store 1's refusal is read by the next call. */
        TU_OK(rc, f);
        pd_key del[] = {good, p};
        ck_assert_int_eq(pd_delete(f, 2, del, 0), PD_ERR_KEY);
        t_has(f, "fanout: delete: ");
        t_has(f, want);
        t_has(f, "the previous request, append of 1 key");
        t_has(f, "refused before anything was sent");
        /* The delete reached neither server. */
        tu_expect_str(f, good, "g");
        tu_expect_str(f, p, "flat");
    }
    tu_expect_str(f, tup, "");
    TU_OK(pd_close(&f), NULL);
    for (int i = 0; i < 2; i++) TU_OK(pd_close(&in[i]), NULL);
    t_srv_close(&s0);
    t_fsrv_close(&s1);
}
END_TEST

/* A Fanout of Namespaces: each Namespace checks its key limits (and its
 * Client's) before the Fanout sends anything. */
START_TEST(namespaces_checked) {
    t_srv s[2];
    pd_store *in[2];
    for (int i = 0; i < 2; i++) {
        t_srv_open(&s[i]);
        pd_store *c = t_client(s[i].addr, 10000);
        TU_OK(pd_namespace_open(&in[i], &c, "ns", 2, 0), NULL);
    }
    pd_store *f = NULL;
    TU_OK(pd_fanout_open(&f, in, 2, 0), NULL);
    char gb[32];
    pd_key good = t_routed(gb, sizeof gb, "g", 0, 2);
    /* A key of PD_KEY_MAX - 1 bytes routed to store 1: too long with the
     * name's 2 bytes. */
    char *big = malloc(PD_KEY_MAX);
    pd_key lk = K("");
    for (int c = 'a'; c <= 'z'; c++) {
        memset(big, c, PD_KEY_MAX - 1);
        lk = PD_KEY(big, PD_KEY_MAX - 1);
        if (pd_fanout_index(&lk, 2) == 1) break;
    }
    ck_assert_uint_eq(pd_fanout_index(&lk, 2), 1);
    pd_key batch[] = {good, lk};
    pd_bytes vals[] = {V("g"), V("l")};
    ck_assert_int_eq(pd_append(f, 2, batch, vals, 0), PD_ERR_KEY);
    t_has(f, "store 1 of 2 (namespace)");
    t_has(f, "refused before anything was sent");
    t_has(f, "with the namespace part");
    tu_expect_str(f, good, "");
    free(big);
    /* A key the wire cannot carry, through the Namespace to its Client. */
    char bb[32];
    pd_key bad = t_routed(bb, sizeof bb, "x-|-", 1, 2);
    batch[1] = bad;
    ck_assert_int_eq(pd_iset(f, 2, batch, vals, 0), PD_ERR_KEY);
    t_has(f, "refused before anything was sent");
    t_has(f, "cannot cross the wire");
    tu_expect_str(f, good, "");
    TU_OK(pd_close(&f), NULL);
    for (int i = 0; i < 2; i++) {
        t_srv_close(&s[i]);
    }
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"refused_before_sent", refused_before_sent},
        {"remote_failure", remote_failure},
        {"namespaces_checked", namespaces_checked},
    };
    /* Each case twice: _i 0 with PD_CLIENT_SYNC clients, 1 pipelined. */
    return TU_RUN_CASES("test_fanout_check", cases, 120, 2);
}
