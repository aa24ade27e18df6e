/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Namespace leases (docs/zmq.md, "Leases"): a namespace nobody renews is
 * dropped by the server, with a log line; renewals keep it; a release keeps
 * the keys; other namespaces and plain keys are never touched; bad names,
 * malformed requests and a full table are refused.
 */
#include "srvfix.h"

#define K(s) PD_KEY_STR(s)

/* Keys of namespace `ns` (name, k) for k in a, b and a tuple (name, t, 2). */
static void t_fill(pd_store *c, const char *ns) {
    pd_bytes p1[] = {PD_BYTES(ns, strlen(ns)), PD_BYTES("a", 1)};
    pd_bytes p2[] = {PD_BYTES(ns, strlen(ns)), PD_BYTES("b", 1)};
    pd_bytes p3[] = {PD_BYTES(ns, strlen(ns)), PD_BYTES("t", 1),
                     PD_BYTES("2", 1)};
    pd_key ks[] = {PD_KEY_TUPLE(p1, 2), PD_KEY_TUPLE(p2, 2),
                   PD_KEY_TUPLE(p3, 3)};
    pd_bytes vs[] = {PD_BYTES("1", 1), PD_BYTES("2", 1), PD_BYTES("3", 1)};
    TU_OK(pd_append(c, 3, ks, vs, 0), c);
}

/* How many keys of the store have first part `ns` (or are flat, ns NULL). */
static size_t t_count(pd_store *c, const char *ns) {
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(c, &kl, 0), c);
    size_t n = 0;
    for (size_t i = 0; i < pd_keylist_count(kl); i++) {
        pd_key k;
        TU_OK(pd_keylist_key(kl, i, &k), NULL);
        if (!ns)
            n += k.nparts == 0;
        else
            n += k.nparts >= 2 && k.parts[0].size == strlen(ns) &&
                 memcmp(k.parts[0].data, ns, k.parts[0].size) == 0;
    }
    pd_keylist_free(&kl);
    return n;
}

static void t_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

START_TEST(expires_unless_renewed) {
    t_log *lg = t_log_new();
    const char *bind[] = {"tcp://127.0.0.1:0"};
    pd_server_opts o = {0};
    o.bind = bind;
    o.nbind = 1;
    o.log_level = PD_LOG_INFO; /* debug lines would use up the rate limit */
    pd_store *d = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    pd_server *srv = t_server(&d, &o, lg);
    pd_store *c = t_client(pd_server_address(srv, 0), 10000, PD_CLIENT_SYNC);
    t_fill(c, "a");
    t_fill(c, "b");
    t_fill(c, "a-"); /* a name that starts like "a": not "a"'s */
    tu_append1(c, K("plain"), "p", 1);
    pd_bytes ap[] = {PD_BYTES("a", 1)};
    pd_key flat_a = PD_KEY_TUPLE(ap, 1); /* the flat key "a": not a namespace */
    tu_append1(c, flat_a, "f", 1);
    int slack = tu_under_valgrind() ? 2000 : 0;
    uint32_t ms = (uint32_t)(400 + slack);
    TU_OK(pd_client_lease(c, "a", 1, ms), c);
    TU_OK(pd_client_lease(c, "b", 1, ms), c);
    TU_OK(pd_client_lease(c, "a-", 2, ms), c);
    TU_OK(pd_client_lease(c, "a-", 2, 0), c); /* released */
    /* b renewed every tenth of the lease until a, not renewed, is gone. */
    int64_t t0 = t_ms();
    while (t_count(c, "a") && t_ms() - t0 < 10000) {
        TU_OK(pd_client_lease(c, "b", 1, ms), c);
        t_sleep_ms((int)ms / 10);
    }
    ck_assert_int_ge(t_ms() - t0, (int64_t)ms - 50);
    ck_assert_uint_eq(t_count(c, "a"), 0);
    ck_assert_uint_eq(t_count(c, "b"), 3);
    ck_assert_uint_eq(t_count(c, "a-"), 3);
    ck_assert_uint_eq(t_count(c, NULL), 2);
    tu_expect_str(c, K("plain"), "p");
    tu_expect_str(c, K("a"), "f");
    ck_assert_msg(t_log_has(lg, "lease of namespace 'a' expired (not renewed "
                                "within"),
                  "log:\n%s", lg->buf);
    ck_assert(t_log_has(lg, "dropped its 3 keys"));
    /* b, renewed no more, goes in its turn; a-, released, stays. */
    t0 = t_ms();
    while (t_count(c, "b") && t_ms() - t0 < 5000) t_sleep_ms(20);
    ck_assert_uint_eq(t_count(c, "b"), 0);
    t_sleep_ms((int)ms);
    ck_assert_uint_eq(t_count(c, "a-"), 3);
    /* A lease of a namespace with no keys, expiring: nothing to drop. */
    TU_OK(pd_client_lease(c, "none", 4, 1), c);
    t_sleep_ms(100);
    tu_expect_str(c, K("plain"), "p");
    t_close(&c);
    t_close_server(&srv);
    TU_OK(pd_close(&d), NULL);
    t_log_free(lg);
}
END_TEST

START_TEST(refusals) {
    const char *bind[] = {"tcp://127.0.0.1:0"};
    pd_server_opts o = {0};
    o.bind = bind;
    o.nbind = 1;
    pd_server *srv = t_server(NULL, &o, NULL);
    const char *addr = pd_server_address(srv, 0);
    pd_store *c = t_client(addr, 10000, PD_CLIENT_SYNC);
    /* Names that cannot be a Namespace's first part on the wire. */
    ck_assert_int_eq(pd_client_lease(c, "x-|-y", 5, 100), PD_ERR_KEY);
    ck_assert_int_eq(pd_client_lease(c, "x-|", 3, 100), PD_ERR_KEY);
    ck_assert_msg(strstr(pd_errmsg(c), "lease") != NULL, "%s", pd_errmsg(c));
    ck_assert_int_eq(pd_client_lease(c, NULL, 3, 100), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_client_lease(NULL, "a", 1, 100), PD_ERR_MISUSE);
    pd_store *d = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    ck_assert_int_eq(pd_client_lease(d, "a", 1, 100), PD_ERR_MISUSE);
    ck_assert(strstr(pd_errmsg(d), "not a client") != NULL);
    TU_OK(pd_close(&d), NULL);
    /* Malformed requests, straight on the wire. */
    t_raw r = t_raw_open(addr);
    static const struct {
        size_t n;
        const char *f[3];
        int code; /* 0: acknowledged */
        const char *what;
    } bad[] = {
        {2, {"lease", "n"}, PD_ERR_PROTOCOL, "lease without ms"},
        {3, {"lease", "n", "12x"}, PD_ERR_PROTOCOL, "lease ms not decimal"},
        {3,
         {"lease", "n", "2147483648"},
         PD_ERR_PROTOCOL,
         "lease ms too large"},
        {3, {"lease", "n", ""}, PD_ERR_PROTOCOL, "lease ms empty"},
        {3, {"lease", "a-|-b", "10"}, PD_ERR_KEY, "lease of a bad name"},
        {3, {"lease", "n", "2147483647"}, 0, "the longest lease"},
        {3, {"lease", "", "0"}, 0, "releasing an unknown lease"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t_raw_send(&r, bad[i].n, bad[i].f, NULL);
        if (bad[i].code)
            t_raw_expect_error(&r, bad[i].code, bad[i].what);
        else
            t_raw_expect_ack(&r, bad[i].what);
    }
    /* The table is bounded. */
    char name[32];
    for (int i = 0; i < PD__LEASES_MAX - 1; i++) {
        snprintf(name, sizeof name, "ns%d", i);
        TU_OK(pd_client_lease(c, name, strlen(name), 3600000), c);
    }
    ck_assert_int_eq(pd_client_lease(c, "one-more", 8, 1000), PD_ERR_LIMIT);
    ck_assert(strstr(pd_errmsg(c), "4096") != NULL);
    TU_OK(pd_client_lease(c, "ns0", 3, 1000), c); /* a renewal: fine */
    TU_OK(pd_client_lease(c, "n", 1, 0), c);
    TU_OK(pd_client_lease(c, "one-more", 8, 1000), c);
    /* The server still serves. */
    t_roundtrip(c, "k", "v");
    t_raw_close(&r);
    t_close(&c);
    t_close_server(&srv);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"expires_unless_renewed", expires_unless_renewed},
        {"refusals", refusals},
    };
    return TU_RUN_CASES("test_server_lease", cases, 120, 0);
}
