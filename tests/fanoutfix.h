/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * What test_fanout.c and test_namespace.c share: key and value shorthands,
 * a Dict, servers over borrowed Dicts on tcp loopback and their clients, a
 * borrowed Fanout, and a message check.
 */
#ifndef PARTD_TESTS_FANOUTFIX_H
#define PARTD_TESTS_FANOUTFIX_H

#include "testutil.h"

#include <stdio.h>
#include <string.h>

#define K(s) PD_KEY_STR(s)
#define V(s) PD_BYTES((s), strlen(s))

static pd_store *t_dict(void) {
    pd_store *d = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    return d;
}

/* The key "k<i>" into buf. */
static inline pd_key t_ki(char *buf, size_t cap, size_t i) {
    snprintf(buf, cap, "k%zu", i);
    return K(buf);
}

/* A server over a borrowed Dict on tcp loopback, and a client of it. */
typedef struct t_srv {
    pd_server *srv;
    pd_store *dict;
    char addr[128];
} t_srv;

/* The servers' log: errors only (the tests stop servers on purpose). */
static void t_log(void *arg, int level, const char *line) {
    (void)arg;
    if (level == PD_LOG_ERROR) fprintf(stderr, "server: %s\n", line);
}

static void t_srv_open(t_srv *t) {
    t->dict = t_dict();
    const char *bind[] = {"tcp://127.0.0.1:0"};
    pd_server_opts o = {0};
    o.bind = bind;
    o.nbind = 1;
    o.flags = PD_BORROW;
    o.log = t_log;
    pd_store *d = t->dict;
    TU_OK(pd_server_open(&t->srv, &d, &o), NULL);
    TU_OK(pd_server_start(t->srv), NULL);
    snprintf(t->addr, sizeof t->addr, "%s", pd_server_address(t->srv, 0));
}

static void t_srv_close(t_srv *t) {
    TU_OK(pd_server_close(&t->srv), NULL);
    TU_OK(pd_close(&t->dict), NULL);
}

static pd_store *t_client(const char *addr, int timeout_ms) {
    pd_client_opts co = {0};
    co.timeout_ms = timeout_ms;
    co.flags = PD_CLIENT_SYNC;
    pd_store *c = NULL;
    TU_OK(pd_client_open(&c, addr, &co), NULL);
    return c;
}

/* n servers (t_srv_open) into s and a client of each (t_client, 10 s)
 * into in. */
static PD__UNUSED void t_clients(t_srv *s, pd_store **in, size_t n) {
    for (size_t i = 0; i < n; i++) {
        t_srv_open(&s[i]);
        in[i] = t_client(s[i].addr, 10000);
    }
}

/* Closes what t_clients opened: each client, then its server. */
static PD__UNUSED void t_clients_close(t_srv *s, pd_store **in, size_t n) {
    for (size_t i = 0; i < n; i++) {
        TU_OK(pd_close(&in[i]), NULL);
        t_srv_close(&s[i]);
    }
}

/* A Fanout over inner[0..n), borrowed. */
static pd_store *t_fanout(pd_store **inner, size_t n) {
    pd_store *f = NULL;
    TU_OK(pd_fanout_open(&f, inner, n, PD_BORROW), NULL);
    ck_assert_str_eq(pd_store_kind(f), "fanout");
    ck_assert_uint_eq(pd_fanout_count(f), n);
    for (size_t i = 0; i < n; i++)
        ck_assert_ptr_eq(pd_fanout_inner(f, i), inner[i]);
    return f;
}

/* t_clients, and a borrowed Fanout over the clients (t_fanout). */
static PD__UNUSED pd_store *t_clients_fanout(t_srv *s, pd_store **in,
                                             size_t n) {
    t_clients(s, in, n);
    return t_fanout(in, n);
}

static void t_has(pd_store *s, const char *what) {
    ck_assert_msg(strstr(pd_errmsg(s), what) != NULL,
                  "message does not say '%s': %s", what, pd_errmsg(s));
}

#endif /* PARTD_TESTS_FANOUTFIX_H */
