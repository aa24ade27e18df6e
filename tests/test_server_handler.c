/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The ZeroMQ Server: the socket-free request handler and the stats. */
#include "srvfix.h"

/* ------------------------------------------------------------ Handler */

static int t_handle(pd__handler *h, t_cap *cap, size_t n,
                    const char *const *f) {
    pd_bytes fr[16];
    for (size_t i = 0; i < n; i++) fr[i] = (pd_bytes){f[i], strlen(f[i])};
    memset(cap, 0, sizeof *cap);
    return pd__handle(h, n, fr);
}

/* A handler over a new, locked Dict, capturing its replies in cap;
 * returns the Dict. */
static pd_store *t_handler_dict(pd__handler *h, t_cap *cap) {
    pd_store *d = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    TU_OK(pd_lock(d), d);
    *h = (pd__handler){0};
    h->store = d;
    h->emit = t_cap_emit;
    h->emit_arg = cap;
    return d;
}

START_TEST(handler) {
    t_cap cap;
    pd__handler h;
    pd_store *d = t_handler_dict(&h, &cap);
    const char *app[] = {"append", "k", "v", "k2", "w"};
    ck_assert_int_eq(t_handle(&h, &cap, 5, app), 0);
    ck_assert_uint_eq(cap.nmsg, 1);
    ck_assert_str_eq(cap.first[0], "ack");
    const char *get[] = {"get", "k", "zz", "k2"};
    ck_assert_int_eq(t_handle(&h, &cap, 4, get), 0);
    ck_assert_uint_eq(cap.nmsg, 2);
    ck_assert_uint_eq(cap.nframes[0], 3);
    ck_assert_str_eq(cap.first[0], "v");
    ck_assert_str_eq(cap.first[1], "ack");
    /* Refusals: exactly one error message. */
    const char *const bad[][4] = {
        {"append", "k"}, {"bogus", "x"},  {"", ""},    {"iset", "k"},
        {"iset", NULL},  {"APPEND", "k"}, {"GET", "k"}};
    size_t nb[] = {2, 2, 1, 2, 1, 2, 2};
    for (size_t i = 0; i < sizeof nb / sizeof nb[0]; i++) {
        int rc = t_handle(&h, &cap, nb[i], bad[i]);
        ck_assert_msg(rc < 0, "bad request %zu accepted", i);
        ck_assert_int_eq(h.malformed, 1);
        ck_assert_uint_eq(cap.nmsg, 1);
        ck_assert_uint_eq(cap.nframes[0], 3);
        ck_assert_str_eq(cap.first[0], "error");
    }
    ck_assert_int_lt(pd__handle(&h, 0, NULL), 0);
    ck_assert_str_eq(cap.first[0], "error");
    /* A get that fails still sends its results first. */
    char many[T_MANY_PARTS_CAP];
    t_many_parts(many);
    const char *g2[] = {"get", "k", many};
    ck_assert_int_eq(t_handle(&h, &cap, 3, g2), PD_ERR_LIMIT);
    ck_assert_uint_eq(cap.nmsg, 2);
    ck_assert_uint_eq(cap.nframes[0], 2);
    ck_assert_str_eq(cap.first[1], "error");
    const char *g0[] = {"get"};
    ck_assert_int_lt(t_handle(&h, &cap, 1, g0), 0);
    ck_assert_str_eq(cap.first[cap.nmsg - 1], "error");
    /* close: acknowledged, or refused with PD_SERVER_NO_CLOSE. */
    const char *cl[] = {"close"};
    ck_assert_int_eq(t_handle(&h, &cap, 1, cl), PD__HANDLE_CLOSE);
    ck_assert_str_eq(cap.first[0], "ack");
    h.flags = PD_SERVER_NO_CLOSE;
    ck_assert_int_eq(t_handle(&h, &cap, 1, cl), PD_ERR_UNSUPPORTED);
    ck_assert_str_eq(cap.first[0], "error");
    /* The store is unharmed. */
    tu_expect_str(d, PD_KEY_STR("k"), "v");
    pd__handler_fini(&h);
    TU_OK(pd_unlock(d), d);
    t_close(&d);
}
END_TEST

/* The counts of what was stored and asked of got are those of want: keys,
 * bytes, records, appended bytes, requests, failures and each command's. */
static void t_counts_are(const pd_server_stats *got, pd_server_stats want) {
    ck_assert_uint_eq(got->keys, want.keys);
    ck_assert_uint_eq(got->bytes, want.bytes);
    ck_assert_uint_eq(got->records, want.records);
    ck_assert_uint_eq(got->appended_bytes, want.appended_bytes);
    ck_assert_uint_eq(got->requests, want.requests);
    ck_assert_uint_eq(got->failed, want.failed);
    ck_assert_uint_eq(got->req_syn, want.req_syn);
    ck_assert_uint_eq(got->req_append, want.req_append);
    ck_assert_uint_eq(got->req_get, want.req_get);
    ck_assert_uint_eq(got->req_iset, want.req_iset);
    ck_assert_uint_eq(got->req_delete, want.req_delete);
    ck_assert_uint_eq(got->req_drop, want.req_drop);
    ck_assert_uint_eq(got->req_keys, want.req_keys);
    ck_assert_uint_eq(got->req_stats, want.req_stats);
    ck_assert_uint_eq(got->req_close, want.req_close);
    ck_assert_uint_eq(got->req_other, want.req_other);
}

/* The stats command through the handler: exact counts, refusals
 * included, and the reply's [name, 8-byte value] frames. */
START_TEST(handler_stats) {
    t_cap cap;
    pd__handler h;
    pd_store *d = t_handler_dict(&h, &cap);
    const char *syn[] = {"syn"};
    const char *app[] = {"append", "k", "vv", "k2", "www"};
    const char *get[] = {"get", "k"};
    const char *bogus[] = {"bogus"};
    const char *odd[] = {"append", "k"};
    const char *st[] = {"stats"};
    ck_assert_int_eq(t_handle(&h, &cap, 1, syn), 0);
    ck_assert_int_eq(t_handle(&h, &cap, 5, app), 0);
    ck_assert_int_eq(t_handle(&h, &cap, 5, app), 0);
    ck_assert_int_eq(t_handle(&h, &cap, 2, get), 0);
    ck_assert_int_lt(t_handle(&h, &cap, 1, bogus), 0);
    ck_assert_int_lt(t_handle(&h, &cap, 2, odd), 0);
    ck_assert_int_lt(pd__handle(&h, 0, NULL), 0);
    ck_assert_int_eq(t_handle(&h, &cap, 1, st), 0);
    ck_assert_uint_eq(cap.nmsg, 2);
    ck_assert_uint_eq(cap.nframes[0], 2 * pd__nstat_fields);
    ck_assert_str_eq(cap.first[0], "keys");
    ck_assert_str_eq(cap.first[1], "ack");
    pd_server_stats s = {.size = sizeof s};
    TU_OK(pd__handler_stats(&h, &s, PD_NOLOCK), d);
    /* req_append: the odd append counts too. */
    pd_server_stats want = {.keys = 2,
                            .bytes = 10,
                            .records = 4,
                            .appended_bytes = 10,
                            .requests = 8,
                            .failed = 3,
                            .req_syn = 1,
                            .req_append = 3,
                            .req_get = 1,
                            .req_stats = 1,
                            .req_other = 2};
    t_counts_are(&s, want);
    ck_assert_uint_eq(s.clients, 1);
    ck_assert_uint_eq(s.buffer, 0);    /* a Dict */
    ck_assert_uint_eq(s.uptime_ms, 0); /* never served */
    /* A request refused before the handler saw it counts too. */
    ck_assert_int_eq(pd__handle_fail(&h, PD_ERR_LIMIT, 1, "too large"),
                     PD_ERR_LIMIT);
    TU_OK(pd__handler_stats(&h, &s, PD_NOLOCK), d);
    ck_assert_uint_eq(s.requests, 9);
    ck_assert_uint_eq(s.failed, 4);
    ck_assert_uint_eq(s.req_other, 3);
    pd__handler_fini(&h);
    TU_OK(pd_unlock(d), d);
    t_close(&d);
}
END_TEST

/* pd_client_stats: a round trip with exact counts after known requests,
 * the size member, misuse; pd_server_get_stats before and after a run. */
START_TEST(stats) {
    pd_server_opts o = {0};
    o.memory = 8; /* the default Buffer spills at once */
    pd_server *srv = NULL;
    o.log = t_log_fn;
    t_log *lg = t_log_new();
    o.log_arg = lg;
    TU_OK(pd_server_open(&srv, NULL, &o), NULL);
    pd_server_stats s = {.size = sizeof s};
    TU_OK(pd_server_get_stats(srv, &s), NULL);
    ck_assert_uint_eq(s.requests, 0);
    ck_assert_uint_eq(s.keys, 0);
    ck_assert_uint_eq(s.buffer, 1);
    ck_assert_uint_eq(s.memory_limit, 8);
    TU_OK(pd_server_start(srv), NULL);
    ck_assert_int_eq(pd_server_get_stats(srv, &s), PD_ERR_MISUSE);
    pd_store *c = t_client(pd_server_address(srv, 0), 10000, PD_CLIENT_SYNC);
    pd_key k[3] = {PD_KEY_STR("a"), PD_KEY_STR("b"), PD_KEY_STR("c")};
    pd_bytes v[3] = {PD_BYTES("12345", 5), PD_BYTES("67890", 5),
                     PD_BYTES("xyz", 3)};
    TU_OK(pd_append(c, 2, k, v, 0), c);
    TU_OK(pd_append(c, 1, &k[2], &v[2], 0), c);
    TU_OK(pd_append(c, 1, &k[0], &v[0], 0), c);
    pd_result *r = NULL;
    TU_OK(pd_get(c, 3, k, &r, 0), c);
    pd_result_free(&r);
    pd_key zz = PD_KEY_STR("zz");
    TU_OK(pd_delete(c, 1, &zz, 0), c);
    memset(&s, 0xff, sizeof s);
    s.size = sizeof s;
    TU_OK(pd_client_stats(c, &s), c);
    ck_assert_uint_eq(s.size, sizeof s);
    pd_server_stats want = {.keys = 3,
                            .bytes = 18,
                            .records = 4,
                            .appended_bytes = 18,
                            .requests = 7,
                            .req_syn = 1,
                            .req_append = 3,
                            .req_get = 1,
                            .req_delete = 1,
                            .req_stats = 1};
    t_counts_are(&s, want);
    ck_assert_uint_eq(s.buffer, 1);
    ck_assert_uint_eq(s.memory_limit, 8);
    ck_assert_uint_le(s.memory, 18);
    ck_assert_uint_ge(s.spills, 1);
    ck_assert_uint_gt(s.rss, 0);
    ck_assert_uint_eq(s.clients, 1);
    ck_assert_uint_le(s.connections, 1);
    ck_assert_uint_lt(s.uptime_ms, 600000);
    /* A second client; a second stats counts the first. */
    pd_store *c2 = t_client(pd_server_address(srv, 0), 10000, 0);
    TU_OK(pd_client_stats(c2, &s), c2);
    ck_assert_uint_eq(s.clients, 2);
    ck_assert_uint_eq(s.req_stats, 2);
    ck_assert_uint_eq(s.requests, 9);
    /* A smaller size: the members past it are left alone. */
    pd_server_stats small;
    memset(&small, 0xab, sizeof small);
    small.size = offsetof(pd_server_stats, bytes);
    TU_OK(pd_client_stats(c, &small), c);
    ck_assert_uint_eq(small.keys, 3);
    ck_assert_uint_eq(small.bytes, 0xababababababababull);
    small.size = sizeof(size_t);
    ck_assert_int_eq(pd_client_stats(c, &small), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_client_stats(c, NULL), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_client_stats(NULL, &s), PD_ERR_MISUSE);
    pd_store *d = NULL;
    TU_OK(pd_dict_open(&d), NULL);
    ck_assert_int_eq(pd_client_stats(d, &s), PD_ERR_MISUSE);
    t_close(&d);
    /* The client still works after the refusals. */
    tu_expect_str(c, k[2], "xyz");
    t_close(&c2);
    t_close(&c);
    /* After the run: the same counts, read from the server itself. */
    pd_server_stop(srv);
    while (pd_server_running(srv)) usleep(1000);
    s.size = sizeof s;
    TU_OK(pd_server_get_stats(srv, &s), NULL);
    ck_assert_uint_eq(s.keys, 3);
    ck_assert_uint_eq(s.req_stats, 3);
    ck_assert_uint_eq(s.req_get, 2);
    ck_assert_uint_eq(s.clients, 2);
    ck_assert_uint_eq(s.connections, 0);
    t_close_server(&srv);
    t_log_free(lg);
}
END_TEST

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const tu_case cases[] = {
        {"handler", handler},
        {"handler_stats", handler_stats},
        {"stats", stats},
    };
    return TU_RUN_CASES("test_server_handler", cases, 120, 0);
}
