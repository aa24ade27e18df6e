/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The ZeroMQ Server and Client: the protocol (commands, values, keys,
 * codecs, pipelining, errors). */
#include "srvfix.h"

/* ------------------------------------------------------------ Protocol */

START_TEST(commands) {
    pd_server *srv = t_server(NULL, NULL, NULL);
    const char *addr = pd_server_address(srv, 0);
    ck_assert_ptr_nonnull(addr);
    ck_assert_ptr_null(pd_server_address(srv, 1));
    pd_store *c = t_client(addr, 5000, 0);
    ck_assert_str_eq(pd_client_address(c), addr);

    /* Batches, a key repeated inside one batch, binary and empty keys. */
    pd_bytes tp[2] = {PD_BYTES("x", 1), PD_BYTES("y", 1)};
    pd_key keys[5] = {PD_KEY_STR("a"), PD_KEY("b\0\xff", 3),
                      PD_KEY_TUPLE(tp, 2), PD_KEY("", 0), PD_KEY_STR("a")};
    pd_bytes vals[5] = {PD_BYTES("1", 1), PD_BYTES("2", 1), PD_BYTES("3", 1),
                        PD_BYTES("4", 1), PD_BYTES("5", 1)};
    TU_OK(pd_append(c, 5, keys, vals, 0), c);
    TU_OK(pd_append(c, 5, keys, vals, 0), c);
    tu_expect_str(c, keys[0], "1515");
    tu_expect(c, keys[1], "22", 2);
    tu_expect_str(c, keys[2], "33");
    tu_expect_str(c, keys[3], "44");
    ck_assert_int_eq(pd_client_server_is_ours(c), 1);

    /* PD_FSYNC cannot cross the wire: refused, nothing sent. */
    ck_assert_int_eq(pd_append(c, 1, keys, vals, PD_FSYNC), PD_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(pd_errmsg(c), "PD_FSYNC") &&
                      strstr(pd_errmsg(c), addr),
                  "%s", pd_errmsg(c));
    ck_assert_int_eq(pd_iset(c, 1, keys, vals, PD_FSYNC), PD_ERR_UNSUPPORTED);
    tu_expect_str(c, keys[0], "1515");

    /* A get of several keys, some missing, in order. */
    pd_key g[4] = {PD_KEY_STR("missing"), keys[2], PD_KEY_STR("a"),
                   PD_KEY_STR("nope")};
    pd_result *r = NULL;
    TU_OK(pd_get(c, 4, g, &r, 0), c);
    ck_assert_uint_eq(pd_result_count(r), 4);
    ck_assert_uint_eq(pd_result_value(r, 0).size, 0);
    ck_assert_int_eq(memcmp(pd_result_value(r, 1).data, "33", 2), 0);
    ck_assert_int_eq(memcmp(pd_result_value(r, 2).data, "1515", 4), 0);
    ck_assert_uint_eq(pd_result_value(r, 3).size, 0);
    pd_result_free(&r);
    /* Zero keys: answered locally. */
    TU_OK(pd_get(c, 0, NULL, &r, 0), c);
    ck_assert_uint_eq(pd_result_count(r), 0);
    pd_result_free(&r);

    /* keys: every key and its size, tuple included. */
    ck_assert_uint_eq(tu_nkeys(c), 4);
    ck_assert_int_eq(tu_listed_size(c, keys[0]), 4);
    ck_assert_int_eq(tu_listed_size(c, keys[2]), 2);
    ck_assert_int_eq(tu_listed_size(c, keys[1]), 2);

    /* delete: present and missing keys. */
    pd_key d[2] = {PD_KEY_STR("a"), PD_KEY_STR("never")};
    TU_OK(pd_delete(c, 2, d, 0), c);
    tu_expect_str(c, d[0], "");
    ck_assert_uint_eq(tu_nkeys(c), 3);

    /* iset: idempotent for this handle, and across clients (the server's
     * store remembers too, as the reference's does). */
    pd_key ik[2] = {PD_KEY_STR("i1"), PD_KEY_STR("i2")};
    pd_bytes iv1[2] = {PD_BYTES("one", 3), PD_BYTES("two", 3)};
    pd_bytes iv2[2] = {PD_BYTES("uno", 3), PD_BYTES("dos", 3)};
    TU_OK(pd_iset(c, 2, ik, iv1, 0), c);
    TU_OK(pd_iset(c, 2, ik, iv2, 0), c);
    tu_expect_str(c, ik[0], "one");
    tu_expect_str(c, ik[1], "two");
    pd_store *c2 = t_client(addr, 5000, PD_CLIENT_SYNC);
    TU_OK(pd_iset(c2, 2, ik, iv2, 0), c2);
    tu_expect_str(c2, ik[1], "two");

    /* drop: everything gone, the store usable, iset memo forgotten.  (Its
     * reply is read by the next call on c: sync before asking c2.) */
    TU_OK(pd_drop(c, 0), c);
    TU_OK(pd_client_sync(c), c);
    ck_assert_uint_eq(tu_nkeys(c2), 0);
    tu_expect_str(c2, keys[2], "");
    TU_OK(pd_iset(c, 1, ik, iv2, 0), c);
    tu_expect_str(c, ik[0], "uno");
    TU_OK(pd_client_sync(c), c);
    t_close(&c2);
    t_close(&c);
    t_close_server(&srv);
}
END_TEST

START_TEST(large_values) {
    pd_server *srv = t_server(NULL, NULL, NULL);
    pd_store *c = t_client(pd_server_address(srv, 0), 20000, 0);
    size_t big = 10u << 20;
    unsigned char *v = malloc(big);
    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < big; i++) v[i] = (unsigned char)(i * 7 + (i >> 13));
    pd_key k[2] = {PD_KEY_STR("big"), PD_KEY_STR("small")};
    pd_bytes vals[2] = {PD_BYTES(v, big), PD_BYTES("s", 1)};
    TU_OK(pd_append(c, 2, k, vals, 0), c);
    TU_OK(pd_append(c, 1, k, vals, 0), c);
    pd_result *r = NULL;
    TU_OK(pd_get(c, 2, k, &r, 0), c);
    pd_bytes got = pd_result_value(r, 0);
    ck_assert_uint_eq(got.size, 2 * big);
    ck_assert_int_eq(memcmp(got.data, v, big), 0);
    ck_assert_int_eq(memcmp((const char *)got.data + big, v, big), 0);
    ck_assert_uint_eq(pd_result_value(r, 1).size, 1);
    pd_result_free(&r);
    free(v);
    t_close(&c);
    t_close_server(&srv);
}
END_TEST

/* Keys whose wire form would not decode to themselves are refused before
 * anything is sent; the others round-trip exactly. */
START_TEST(wire_keys) {
    pd_server *srv = t_server(NULL, NULL, NULL);
    pd_store *c = t_client(pd_server_address(srv, 0), 5000, PD_CLIENT_SYNC);
    pd_bytes v = PD_BYTES("v", 1);
    pd_bytes p1[2] = {PD_BYTES("a-|", 3), PD_BYTES("b", 1)};
    pd_bytes p2[1] = {PD_BYTES("x-|-y", 5)};
    pd_bytes p3[2] = {PD_BYTES("a", 1), PD_BYTES("-|-", 3)};
    pd_key bad[4] = {PD_KEY_STR("a-|-b"), PD_KEY_TUPLE(p1, 2),
                     PD_KEY_TUPLE(p2, 1), PD_KEY_TUPLE(p3, 2)};
    for (int i = 0; i < 4; i++) {
        pd_key two[2] = {PD_KEY_STR("fine"), bad[i]};
        pd_bytes vv[2] = {v, v};
        int rc = pd_append(c, 2, two, vv, 0);
        ck_assert_int_eq(rc, PD_ERR_KEY);
        ck_assert_msg(strstr(pd_errmsg(c), "-|-") &&
                          strstr(pd_errmsg(c), "cannot cross the wire"),
                      "%s", pd_errmsg(c));
        pd_result *r = NULL;
        ck_assert_int_eq(pd_get(c, 1, &bad[i], &r, 0), PD_ERR_KEY);
        ck_assert_int_eq(pd_delete(c, 1, &bad[i], 0), PD_ERR_KEY);
    }
    /* Nothing of the refused batches arrived. */
    ck_assert_uint_eq(tu_nkeys(c), 0);
    /* Look-alikes that do cross. */
    pd_bytes q1[2] = {PD_BYTES("a-", 2), PD_BYTES("|b", 2)};
    pd_bytes q2[3] = {PD_BYTES("", 0), PD_BYTES("|-", 2), PD_BYTES("-", 1)};
    pd_bytes q3[2] = {PD_BYTES("a", 1), PD_BYTES("|-b", 3)};
    pd_key good[5] = {PD_KEY_TUPLE(q1, 2), PD_KEY_TUPLE(q2, 3),
                      PD_KEY_TUPLE(q3, 2), PD_KEY_STR("-|"), PD_KEY_STR("|-|")};
    for (int i = 0; i < 5; i++) {
        TU_OK(pd_append(c, 1, &good[i], &v, 0), c);
        ck_assert_int_eq(tu_listed_size(c, good[i]), 1);
    }
    ck_assert_uint_eq(tu_nkeys(c), 5);
    t_close(&c);
    t_close_server(&srv);
}
END_TEST

/* The wire codec alone: every key accepted decodes back to itself. */
START_TEST(wire_codec) {
    unsigned seed = 12345;
    const char alpha[] = "-|ab";
    pd__buf wb = {0};
    pd__wkeys wk = {0};
    int accepted = 0, refused = 0;
    for (int iter = 0; iter < 20000; iter++) {
        char store[8][8];
        pd_bytes parts[8];
        size_t np = 1 + (size_t)(rand_r(&seed) % 4);
        for (size_t i = 0; i < np; i++) {
            size_t len = (size_t)(rand_r(&seed) % 6);
            for (size_t j = 0; j < len; j++)
                store[i][j] = alpha[rand_r(&seed) % 4];
            parts[i] = (pd_bytes){store[i], len};
        }
        pd_key k =
            np == 1 ? PD_KEY(store[0], parts[0].size) : PD_KEY_TUPLE(parts, np);
        char why[64];
        wb.len = 0;
        size_t off, len;
        int rc = pd__wire_key_put(&wb, &k, &off, &len, why);
        if (rc) {
            ck_assert_int_eq(rc, PD_ERR_KEY);
            ck_assert_uint_eq(wb.len, 0);
            refused++;
            continue;
        }
        accepted++;
        pd_bytes f = {wb.p + off, len};
        size_t bad;
        ck_assert_int_eq(pd__wire_keys_decode(&wk, 1, &f, 1, &bad), 0);
        pd__pkey a, b;
        ck_assert_int_eq(pd__pkey_set(&a, &k), 0);
        ck_assert_int_eq(pd__pkey_set(&b, &wk.keys[0]), 0);
        ck_assert_msg(a.len == b.len && memcmp(a.p, b.p, a.len) == 0,
                      "key %d changed on the wire", iter);
        pd__pkey_free(&a);
        pd__pkey_free(&b);
    }
    ck_assert_int_gt(accepted, 1000);
    ck_assert_int_gt(refused, 1000);
    /* 65 parts: refused by the decoder. */
    char many[T_MANY_PARTS_CAP];
    size_t l = t_many_parts(many);
    pd_bytes f[2] = {{"ok", 2}, {many, l}};
    size_t bad = 0;
    ck_assert_int_eq(pd__wire_keys_decode(&wk, 2, f, 1, &bad), PD_ERR_LIMIT);
    ck_assert_uint_eq(bad, 1);
    /* 64 parts: fine. */
    f[1].size = l - 4;
    ck_assert_int_eq(pd__wire_keys_decode(&wk, 2, f, 1, &bad), 0);
    ck_assert_uint_eq(wk.keys[1].nparts, 64);
    pd__wkeys_free(&wk);
    pd__buf_free(&wb);

    /* Final replies. */
    int code = 0;
    pd_bytes msg;
    pd_bytes ack = {"ack", 3};
    ck_assert_int_eq(pd__wire_final(1, &ack, &code, &msg), 0);
    pd_bytes er[3] = {{"error", 5}, {"-4", 2}, {"why", 3}};
    ck_assert_int_eq(pd__wire_final(3, er, &code, &msg), 1);
    ck_assert_int_eq(code, PD_ERR_KEY);
    er[1] = (pd_bytes){"-999", 4};
    ck_assert_int_eq(pd__wire_final(3, er, &code, &msg), 1);
    ck_assert_int_eq(code, PD_ERR_PROTOCOL);
    er[1] = (pd_bytes){"4", 1};
    ck_assert_int_eq(pd__wire_final(3, er, &code, &msg), -1);
    er[1] = (pd_bytes){"-4x", 3};
    ck_assert_int_eq(pd__wire_final(3, er, &code, &msg), -1);
    ck_assert_int_eq(pd__wire_final(2, er, &code, &msg), -1);
    pd_bytes nack = {"ack!", 4};
    ck_assert_int_eq(pd__wire_final(1, &nack, &code, &msg), -1);
}
END_TEST

/* A started server of a File in a new directory, *dir. */
static pd_server *t_file_server(char **dir) {
    *dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(*dir);
    pd_store *file = NULL;
    TU_OK(pd_file_open(&file, *dir, 0), NULL);
    pd_server *srv = t_server(&file, NULL, NULL);
    ck_assert_ptr_null(file);
    return srv;
}

/* Appends to our server are pipelined: up to `window` in flight, applied in
 * the order sent; an error is reported by the append `window` calls later or
 * by the next call that is not an append, the appends behind it applied. */
START_TEST(server_pipeline) {
    char *dir;
    pd_server *srv = t_file_server(&dir);
    const char *addr = pd_server_address(srv, 0);
    pd_client_opts bad = {0};
    bad.window = PD_CLIENT_WINDOW_MAX + 1;
    pd_store *none = NULL;
    ck_assert_int_eq(pd_client_open(&none, addr, &bad), PD_ERR_MISUSE);
    ck_assert_msg(strstr(pd_errmsg(NULL), "window"), "%s", pd_errmsg(NULL));
    ck_assert_ptr_null(none);

    /* Order: 2000 pipelined appends to one key read back in order. */
    pd_store *c = t_client_w(addr, 5000, 0, 4);
    pd_key k = PD_KEY_STR("k");
    char want[2000 * 6 + 1], *w = want;
    for (int i = 0; i < 2000; i++) {
        char num[8];
        int len = snprintf(num, sizeof num, "%d,", i);
        pd_bytes v = PD_BYTES(num, (size_t)len);
        TU_OK(pd_append(c, 1, &k, &v, 0), c);
        memcpy(w, num, (size_t)len);
        w += len;
    }
    *w = 0;
    ck_assert_int_eq(pd_client_server_is_ours(c), 1);
    tu_expect_str(c, k, want);

    /* Errors: File cannot hold ('a', 'b') beside 'a'. */
    pd_bytes tp[2] = {PD_BYTES("a", 1), PD_BYTES("b", 1)};
    pd_key flat = PD_KEY_STR("a"), tuple = PD_KEY_TUPLE(tp, 2);
    pd_bytes x = PD_BYTES("x", 1);
    TU_OK(pd_append(c, 1, &flat, &x, 0), c);
    TU_OK(pd_client_sync(c), c);
    TU_OK(pd_append(c, 1, &tuple, &x, 0), c); /* fails on the server */
    pd_key after[3] = {PD_KEY_STR("p1"), PD_KEY_STR("p2"), PD_KEY_STR("p3")};
    for (int i = 0; i < 3; i++) TU_OK(pd_append(c, 1, &after[i], &x, 0), c);
    /* Four in flight: the next append reads the failed one's reply. */
    pd_key p4 = PD_KEY_STR("p4");
    ck_assert_int_eq(pd_append(c, 1, &p4, &x, 0), PD_ERR_KEY);
    ck_assert_msg(strstr(pd_errmsg(c), "previous request, append of 1 key") &&
                      strstr(pd_errmsg(c), "not sent") &&
                      strstr(pd_errmsg(c), addr),
                  "%s", pd_errmsg(c));
    TU_OK(pd_client_sync(c), c);
    for (int i = 0; i < 3; i++) tu_expect_str(c, after[i], "x");
    tu_expect_str(c, p4, ""); /* not sent */

    /* Several failures: the first reported, the count of the others. */
    for (int i = 0; i < 3; i++) TU_OK(pd_append(c, 1, &tuple, &x, 0), c);
    ck_assert_int_eq(pd_client_sync(c), PD_ERR_KEY);
    ck_assert_msg(strstr(pd_errmsg(c), "and 2 later requests failed too"), "%s",
                  pd_errmsg(c));
    TU_OK(pd_client_sync(c), c);
    /* A get reads the failed append's reply first, and is not sent. */
    TU_OK(pd_append(c, 1, &tuple, &x, 0), c);
    pd_result *r = NULL;
    ck_assert_int_eq(pd_get(c, 1, &flat, &r, 0), PD_ERR_KEY);
    ck_assert_ptr_null(r);
    tu_expect_str(c, flat, "x");

    /* pd_close waits for every append in flight. */
    pd_key last = PD_KEY_STR("last");
    for (int i = 0; i < 4; i++) TU_OK(pd_append(c, 1, &last, &x, 0), c);
    TU_OK(pd_close(&c), NULL);
    /* A long timeout: under valgrind the big get below is slow. */
    pd_store *c2 = t_client(addr, 120000, 0);
    tu_expect_str(c2, last, "xxxx");

    /* The byte bound: appends of 12 MiB, at most 32 MiB in flight. */
    size_t big = (size_t)12 << 20;
    int nbig = tu_under_valgrind() ? 3 : 5;
    char *buf = malloc(big);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 'b', big);
    pd_bytes bv = PD_BYTES(buf, big);
    pd_key bk = PD_KEY_STR("big");
    for (int i = 0; i < nbig; i++) TU_OK(pd_append(c2, 1, &bk, &bv, 0), c2);
    TU_OK(pd_client_sync(c2), c2);
    r = NULL;
    TU_OK(pd_get(c2, 1, &bk, &r, 0), c2);
    ck_assert_uint_eq(pd_result_value(r, 0).size, (size_t)nbig * big);
    pd_result_free(&r);
    free(buf);
    t_close(&c2);
    t_close_server(&srv);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* Errors the server reports: immediately with PD_CLIENT_SYNC, by the next
 * call with window 1 (the reference's pacing), and the handle stays
 * usable.  (Pipelined appends: server_pipeline.) */
START_TEST(server_errors) {
    char *dir;
    pd_server *srv = t_file_server(&dir);
    const char *addr = pd_server_address(srv, 0);
    pd_bytes tp[2] = {PD_BYTES("a", 1), PD_BYTES("b", 1)};
    pd_key flat = PD_KEY_STR("a"), tuple = PD_KEY_TUPLE(tp, 2);

    pd_store *s = t_client(addr, 5000, PD_CLIENT_SYNC);
    tu_append1(s, flat, "x", 1);
    /* File cannot hold ('a', 'b') beside 'a': PD_ERR_KEY from the server. */
    pd_bytes v = PD_BYTES("y", 1);
    ck_assert_int_eq(pd_append(s, 1, &tuple, &v, 0), PD_ERR_KEY);
    ck_assert_msg(strstr(pd_errmsg(s), addr), "%s", pd_errmsg(s));
    tu_expect_str(s, flat, "x");

    pd_store *l = t_client_w(addr, 5000, 0, 1);
    TU_OK(pd_append(l, 1, &tuple, &v, 0), l); /* reply still in flight */
    pd_key other = PD_KEY_STR("other");
    ck_assert_int_eq(pd_append(l, 1, &other, &v, 0), PD_ERR_KEY);
    ck_assert_msg(strstr(pd_errmsg(l), "previous request, append of 1 key") &&
                      strstr(pd_errmsg(l), "not sent"),
                  "%s", pd_errmsg(l));
    tu_expect_str(l, other, ""); /* the second append was not sent */
    TU_OK(pd_append(l, 1, &tuple, &v, 0), l);
    ck_assert_int_eq(pd_client_sync(l), PD_ERR_KEY);
    ck_assert_msg(strstr(pd_errmsg(l), "sync: the previous request") &&
                      !strstr(pd_errmsg(l), "not sent"),
                  "%s", pd_errmsg(l));
    TU_OK(pd_client_sync(l), l); /* nothing in flight any more */
    /* A get that fails on the server reports its own failure. */

    /* pd_close reports the last reply too. */
    TU_OK(pd_append(l, 1, &tuple, &v, 0), l);
    ck_assert_int_eq(pd_close(&l), PD_ERR_KEY);
    ck_assert_ptr_null(l);
    t_close(&s);
    t_close_server(&srv);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* "failget": a Dict whose get fails for the key "boom" (PD_ERR_IO). */
typedef struct t_fg {
    pd_store base;
    pd_store *inner;
} t_fg;

/* What a call rc of the inner Dict of s returns through s. */
static int t_fg_passed(pd_store *s, int rc) {
    return rc ? pd__err_inner(s, ((t_fg *)s)->inner, rc) : 0;
}

static int t_fg_append(pd_store *s, size_t n, const pd_key *k,
                       const pd_bytes *v, unsigned f) {
    (void)f;
    return t_fg_passed(s, pd_append(((t_fg *)s)->inner, n, k, v, 0));
}

static int t_fg_get(pd_store *s, size_t n, const pd_key *k, pd_result *r,
                    unsigned f) {
    (void)f;
    t_fg *g = (t_fg *)s;
    for (size_t i = 0; i < n; i++)
        if (k[i].nparts == 0 && k[i].size == 4 && !memcmp(k[i].data, "boom", 4))
            return pd__err(s, PD_ERR_IO, EIO, "get 'boom': read(/fake)");
    pd_result *ir = NULL;
    int rc = pd_get(g->inner, n, k, &ir, 0);
    if (rc) return pd__err_inner(s, g->inner, rc);
    for (size_t i = 0; i < n && rc == 0; i++) {
        pd_bytes v = pd_result_value(ir, i);
        if (pd__result_put(r, v.data, v.size) || pd__result_next(r))
            rc = pd__err(s, PD_ERR_NOMEM, ENOMEM, "get");
    }
    pd_result_free(&ir);
    return rc;
}

static int t_fg_del(pd_store *s, size_t n, const pd_key *k, unsigned f) {
    (void)f;
    return t_fg_passed(s, pd_delete(((t_fg *)s)->inner, n, k, 0));
}

static int t_fg_drop(pd_store *s, unsigned f) {
    (void)f;
    return t_fg_passed(s, pd_drop(((t_fg *)s)->inner, 0));
}

static int t_fg_set(pd_store *s, size_t n, const pd_key *k, const pd_bytes *v,
                    unsigned f) {
    (void)f;
    return t_fg_passed(s, pd__set_inner(((t_fg *)s)->inner, n, k, v, 0));
}

static int t_fg_keys(pd_store *s, pd_keylist *kl, unsigned f) {
    (void)kl;
    (void)f;
    return pd__err(s, PD_ERR_IO, EIO, "keys: readdir(/fake)");
}

static int t_fg_destroy(pd_store *s) {
    t_fg *g = (t_fg *)s;
    return pd_close(&g->inner);
}

static const pd_store_ops t_fg_ops = {.kind = "failget",
                                      .append = t_fg_append,
                                      .get = t_fg_get,
                                      .del = t_fg_del,
                                      .set = t_fg_set,
                                      .drop = t_fg_drop,
                                      .keys = t_fg_keys,
                                      .destroy = t_fg_destroy};

static pd_store *t_failget(void) {
    t_fg *g = calloc(1, sizeof *g);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(pd__store_init(&g->base, &t_fg_ops), 0);
    TU_OK(pd_dict_open(&g->inner), NULL);
    return &g->base;
}

/* A get that fails on the server: its own error, named; the connection
 * stays in step (later calls work). */
START_TEST(failed_get) {
    pd_store *fg = t_failget();
    pd_server *srv = t_server(&fg, NULL, NULL);
    pd_store *c = t_client(pd_server_address(srv, 0), 5000, 0);
    tu_append1(c, PD_KEY_STR("ok"), "fine", 4);
    pd_key k[2] = {PD_KEY_STR("ok"), PD_KEY_STR("boom")};
    pd_result *r = NULL;
    ck_assert_int_eq(pd_get(c, 2, k, &r, 0), PD_ERR_IO);
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(pd_errmsg(c), "get: the server at ") &&
                      strstr(pd_errmsg(c), "read(/fake)") &&
                      !strstr(pd_errmsg(c), "previous"),
                  "%s", pd_errmsg(c));
    tu_expect_str(c, k[0], "fine");
    ck_assert_int_eq(pd_keys(c, &(pd_keylist *){NULL}, 0), PD_ERR_IO);
    ck_assert_msg(strstr(pd_errmsg(c), "keys: the server at") &&
                      strstr(pd_errmsg(c), "readdir(/fake)"),
                  "%s", pd_errmsg(c));
    tu_append1(c, PD_KEY_STR("ok"), "!", 1);
    tu_expect_str(c, k[0], "fine!");
    t_close(&c);
    t_close_server(&srv);
}
END_TEST

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const tu_case cases[] = {
        {"commands", commands},           {"large_values", large_values},
        {"wire_keys", wire_keys},         {"wire_codec", wire_codec},
        {"server_errors", server_errors}, {"server_pipeline", server_pipeline},
        {"failed_get", failed_get},
    };
    return TU_RUN_CASES("test_server_protocol", cases, 120, 0);
}
