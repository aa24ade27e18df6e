/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The ZeroMQ Server and Client: the packed forms of append and get
 * (append_packed, get_packed: docs/zmq.md, "Packed append and get"). */
#include "srvfix.h"

/* ------------------------------------------------------------ Helpers */

/* A packed index (or any frame) built byte by byte. */
typedef struct t_ix {
    unsigned char *b;
    size_t n, cap;
} t_ix;

static void t_ix_put(t_ix *x, const void *p, size_t n) {
    if (x->n + n > x->cap) {
        x->cap = (x->n + n) * 2 + 64;
        x->b = realloc(x->b, x->cap);
        ck_assert_ptr_nonnull(x->b);
    }
    if (n) memcpy(x->b + x->n, p, n);
    x->n += n;
}

static void t_ix_u32(t_ix *x, uint32_t v) {
    unsigned char b[4];
    pd__wire_put_u32(b, v);
    t_ix_put(x, b, 4);
}

static void t_ix_u64(t_ix *x, uint64_t v) {
    unsigned char b[8];
    pd__wire_put_u64(b, v);
    t_ix_put(x, b, 8);
}

/* An append entry: key length, value length, key. */
static void t_ix_entry(t_ix *x, const char *key, uint64_t vlen) {
    t_ix_u32(x, (uint32_t)strlen(key));
    t_ix_u64(x, vlen);
    t_ix_put(x, key, strlen(key));
}

/* Sends [cmd, a, b] raw. */
static void t_send3(t_raw *r, const char *cmd, const t_ix *a, const void *b,
                    size_t bl) {
    const char *f[3] = {cmd, a->n ? (const char *)a->b : "", b ? b : ""};
    size_t l[3] = {strlen(cmd), a->n, bl};
    t_raw_send(r, 3, f, l);
}

/* Asserts the next message on r is an error reply with `code` whose
 * message contains `has`. */
static void t_expect_refusal(t_raw *r, int code, const char *has) {
    char f[4][256];
    size_t n = t_raw_recv(r, 5000, f, 4);
    ck_assert_msg(n == 3 && strcmp(f[0], "error") == 0,
                  "%s: want an error reply, got %zu frames '%s'", has, n,
                  n ? f[0] : "");
    ck_assert_msg(atoi(f[1]) == code, "%s: code %s, want %d (%s)", has, f[1],
                  code, f[2]);
    ck_assert_msg(strstr(f[2], has), "message '%s' lacks '%s'", f[2], has);
}

static uint64_t t_stat(pd_store *c, size_t off) {
    pd_server_stats st = {.size = sizeof st};
    TU_OK(pd_client_stats(c, &st), c);
    uint64_t v;
    memcpy(&v, (const char *)&st + off, sizeof v);
    return v;
}
#define T_STAT(c, m) t_stat(c, offsetof(pd_server_stats, m))

/* The server logs a request after its reply: once the reply to a later
 * request of c is in, the log holds the line of every earlier one. */
static void t_logged(pd_store *c) {
    pd_server_stats st = {.size = sizeof st};
    TU_OK(pd_client_stats(c, &st), c);
}

/* A server at debug level (its log names every request's command). */
static pd_server *t_dbg_server(t_log *lg, uint64_t max_message) {
    pd_server_opts o = {0};
    o.log_level = PD_LOG_DEBUG;
    o.max_message = max_message;
    return t_server(NULL, &o, lg);
}

/* ------------------------------------------------------------ Round trips */

START_TEST(roundtrip) {
    t_log *lg = t_log_new();
    pd_server *srv = t_dbg_server(lg, 0);
    const char *addr = pd_server_address(srv, 0);
    pd_store *c = t_client(addr, 10000, 0);

    /* Empty values, binary and empty keys, tuples, a key twice. */
    pd_bytes tp[3] = {PD_BYTES("x", 1), PD_BYTES("", 0), PD_BYTES("z\0", 2)};
    pd_key keys[6] = {PD_KEY_STR("a"),     PD_KEY("b\0\xff", 3),
                      PD_KEY_TUPLE(tp, 3), PD_KEY("", 0),
                      PD_KEY_STR("e"),     PD_KEY_STR("a")};
    pd_bytes vals[6] = {PD_BYTES("1", 1), PD_BYTES("", 0), PD_BYTES("33", 2),
                        PD_BYTES("4", 1), PD_BYTES("", 0), PD_BYTES("5", 1)};
    TU_OK(pd_append(c, 6, keys, vals, 0), c);
    TU_OK(pd_append(c, 6, keys, vals, 0), c);
    pd_key g[7] = {keys[0], PD_KEY_STR("missing"), keys[1], keys[2], keys[3],
                   keys[4], PD_KEY_STR("nope")};
    pd_result *r = NULL;
    TU_OK(pd_get(c, 7, g, &r, 0), c);
    ck_assert_uint_eq(pd_result_count(r), 7);
    const char *want[7] = {"1515", "", "", "3333", "44", "", ""};
    for (size_t i = 0; i < 7; i++) {
        pd_bytes v = pd_result_value(r, i);
        ck_assert_uint_eq(v.size, strlen(want[i]));
        ck_assert_int_eq(memcmp(v.data, want[i], v.size), 0);
    }
    pd_result_free(&r);
    /* Only missing or empty keys: no data bytes at all. */
    pd_key none[2] = {PD_KEY_STR("e"), PD_KEY_STR("never")};
    TU_OK(pd_get(c, 2, none, &r, 0), c);
    ck_assert_uint_eq(pd_result_count(r), 2);
    ck_assert_uint_eq(pd_result_total(r), 0);
    pd_result_free(&r);
    /* pd_get_into: the values land in the caller's buffer. */
    char buf[64];
    TU_OK(pd_get_into(c, 7, g, buf, sizeof buf, &r, 0), c);
    ck_assert_int_eq(pd_result_in(r, buf), 1);
    ck_assert_int_eq(memcmp(pd_result_value(r, 3).data, "3333", 4), 0);
    pd_result_free(&r);
    /* Too small a buffer: the values still come, in memory of their own. */
    TU_OK(pd_get_into(c, 7, g, buf, 2, &r, 0), c);
    ck_assert_int_eq(memcmp(pd_result_value(r, 0).data, "1515", 4), 0);
    pd_result_free(&r);

    /* Counted as the requests they stand for. */
    ck_assert_uint_eq(T_STAT(c, req_append), 2);
    ck_assert_uint_eq(T_STAT(c, req_get), 4);
    ck_assert_uint_eq(T_STAT(c, req_other), 0);
    ck_assert_uint_eq(T_STAT(c, records), 12);
    ck_assert_uint_eq(T_STAT(c, appended_bytes), 10);
    t_close(&c);
    t_close_server(&srv);
    ck_assert_msg(t_log_has(lg, "'append_packed'") &&
                      t_log_has(lg, "'get_packed'") &&
                      !t_log_has(lg, "'append' (") && !t_log_has(lg, "'get' ("),
                  "log:\n%s", lg->buf);
    t_log_free(lg);
}
END_TEST

/* Many keys in one call, pipelined appends, then one get of them all. */
START_TEST(many_keys) {
    pd_server *srv = t_server(NULL, NULL, NULL);
    pd_store *c = t_client(pd_server_address(srv, 0), 30000, 0);
    size_t n = 50000;
    pd_key *k = calloc(n, sizeof *k);
    pd_bytes *v = calloc(n, sizeof *v);
    char(*names)[16] = calloc(n, sizeof *names);
    ck_assert(k && v && names);
    for (size_t i = 0; i < n; i++) {
        int l = snprintf(names[i], sizeof names[i], "k%zu", i);
        k[i] = PD_KEY(names[i], (size_t)l);
        v[i] = PD_BYTES(names[i], i % 7 == 0 ? 0 : (size_t)l);
    }
    for (int round = 0; round < 3; round++) TU_OK(pd_append(c, n, k, v, 0), c);
    pd_result *r = NULL;
    TU_OK(pd_get(c, n, k, &r, 0), c);
    ck_assert_uint_eq(pd_result_count(r), n);
    for (size_t i = 0; i < n; i++) {
        pd_bytes got = pd_result_value(r, i);
        ck_assert_uint_eq(got.size, 3 * v[i].size);
        for (int j = 0; j < 3; j++)
            ck_assert_int_eq(memcmp((const char *)got.data + j * v[i].size,
                                    names[i], v[i].size),
                             0);
    }
    pd_result_free(&r);
    ck_assert_uint_eq(T_STAT(c, records), 3 * n);
    free(k);
    free(v);
    free(names);
    t_close(&c);
    t_close_server(&srv);
}
END_TEST

/* Old-form and packed requests on one connection, raw, in order. */
START_TEST(mixed_forms) {
    pd_server *srv = t_server(NULL, NULL, NULL);
    const char *addr = pd_server_address(srv, 0);
    t_raw r = t_raw_open(addr);
    const char *app[] = {"append", "m", "old-"};
    t_raw_send(&r, 3, app, NULL);
    t_raw_expect_ack(&r, "append");
    t_ix ix = {0};
    t_ix_u32(&ix, 2);
    t_ix_entry(&ix, "m", 6);
    t_ix_entry(&ix, "t-|-u", 2);
    t_send3(&r, "append_packed", &ix, "packedtu", 8);
    t_raw_expect_ack(&r, "append_packed");
    const char *get[] = {"get", "m", "t-|-u"};
    t_raw_send(&r, 3, get, NULL);
    char f[4][256];
    ck_assert_uint_eq(t_raw_recv(&r, 5000, f, 4), 2);
    ck_assert_str_eq(f[0], "old-packed");
    ck_assert_str_eq(f[1], "tu");
    t_raw_expect_ack(&r, "get");
    /* get_packed: [LENGTHS, DATA], the data cut at the frame limit. */
    t_ix gx = {0};
    t_ix_u32(&gx, 3);
    const char *gk[3] = {"m", "absent", "t-|-u"};
    for (int i = 0; i < 3; i++) {
        t_ix_u32(&gx, (uint32_t)strlen(gk[i]));
        t_ix_put(&gx, gk[i], strlen(gk[i]));
    }
    unsigned char lim[8];
    pd__wire_put_u64(lim, 5);
    t_send3(&r, "get_packed", &gx, lim, 8);
    zmq_pollitem_t it = {r.sock, 0, ZMQ_POLLIN, 0};
    ck_assert_int_eq(zmq_poll(&it, 1, 5000), 1);
    const char *want[] = {NULL, "old-p", "acked", "tu"};
    for (int i = 0; i < 4; i++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        ck_assert_int_ge(zmq_msg_recv(&m, r.sock, 0), 0);
        const unsigned char *d = zmq_msg_data(&m);
        if (i == 0) {
            ck_assert_uint_eq(zmq_msg_size(&m), 4 + 3 * 8);
            ck_assert_uint_eq(pd__wire_get_u32(d), 3);
            ck_assert_uint_eq(pd__wire_get_u64(d + 4), 10);
            ck_assert_uint_eq(pd__wire_get_u64(d + 12), 0);
            ck_assert_uint_eq(pd__wire_get_u64(d + 20), 2);
        } else {
            ck_assert_uint_eq(zmq_msg_size(&m), strlen(want[i]));
            ck_assert_int_eq(memcmp(d, want[i], strlen(want[i])), 0);
        }
        ck_assert_int_eq(zmq_msg_more(&m), i < 3);
        zmq_msg_close(&m);
    }
    t_raw_expect_ack(&r, "get_packed");
    /* An empty append_packed is an empty batch, as [append] is. */
    t_ix e = {0};
    t_ix_u32(&e, 0);
    t_send3(&r, "append_packed", &e, NULL, 0);
    t_raw_expect_ack(&r, "empty append_packed");
    free(ix.b);
    free(gx.b);
    free(e.b);
    t_raw_close(&r);
    t_close_server(&srv);
}
END_TEST

/* ------------------------------------------------------------ Fallback */

/* Where the packed form does not fit max_message the client sends the
 * per-key form: an append whose per-key request fits but whose index
 * would not; a get with a max_message under PD__WIRE_PACKED_MIN_FRAME.  A
 * packed get's values cut into frames within the client's max_message. */
START_TEST(fallback) {
    t_log *lg = t_log_new();
    uint64_t max = 64 * 1024;
    pd_server *srv = t_dbg_server(lg, max);
    const char *addr = pd_server_address(srv, 0);
    pd_store *c = t_client_max(addr, max);

    /* 1000 keys "f000".."f999", values filling the request to within a few
     * bytes of max: the per-key form fits, the packed one (12 bytes more a
     * key) does not. */
    size_t n = 1000;
    pd_key k[1000];
    pd_bytes v[1000];
    char names[1000][8];
    uint64_t keybytes = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "f%03zu", i);
        k[i] = PD_KEY(names[i], 4);
        keybytes += 4;
    }
    size_t vsz = (size_t)(max - keybytes - strlen("append") - 8) / n;
    char *val = malloc(vsz);
    memset(val, 'v', vsz);
    for (size_t i = 0; i < n; i++) v[i] = PD_BYTES(val, vsz);
    TU_OK(pd_append(c, n, k, v, 0), c);
    t_logged(c);
    ck_assert_msg(t_log_has(lg, "'append' (2001 frames): ok"), "log:\n%s",
                  lg->buf);
    /* A small append on the same connection goes packed. */
    tu_append1(c, PD_KEY_STR("small"), "s", 1);
    t_logged(c);
    ck_assert_msg(t_log_has(lg, "'append_packed' (3 frames): ok"), "log:\n%s",
                  lg->buf);

    /* A get of them all: packed (its request fits). */
    pd_result *r = NULL;
    TU_OK(pd_get(c, n, k, &r, 0), c);
    ck_assert_uint_eq(pd_result_total(r), n * vsz);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(memcmp(pd_result_value(r, i).data, val, vsz), 0);
    pd_result_free(&r);
    t_logged(c);
    ck_assert_msg(t_log_has(lg, "'get_packed' (3 frames): ok"), "log:\n%s",
                  lg->buf);
    /* Values of more than max bytes: the data is cut in frames of at most
     * max bytes (libzmq drops a larger frame with the connection), so one
     * value larger than max reaches the client too, in pieces; the per-key
     * form could not carry it. */
    size_t bsz = 3 * max / 2;
    char *bigv = malloc(bsz);
    for (size_t i = 0; i < bsz; i++) bigv[i] = (char)(i % 253);
    pd_key bk[2] = {PD_KEY_STR("b"), PD_KEY_STR("small")};
    for (int h = 0; h < 2; h++)
        tu_append1(c, bk[0], bigv + h * bsz / 2, bsz / 2);
    TU_OK(pd_get(c, 2, bk, &r, 0), c);
    ck_assert_uint_eq(pd_result_value(r, 0).size, bsz);
    ck_assert_int_eq(memcmp(pd_result_value(r, 0).data, bigv, bsz), 0);
    ck_assert_int_eq(memcmp(pd_result_value(r, 1).data, "s", 1), 0);
    pd_result_free(&r);
    t_close(&c);

    /* A client whose max_message is under PD__WIRE_PACKED_MIN_FRAME gets
     * per key. */
    pthread_mutex_lock(&lg->mu);
    lg->len = 0;
    lg->buf[0] = 0;
    pthread_mutex_unlock(&lg->mu);
    pd_store *tiny = t_client_max(addr, 4096);
    tu_expect_str(tiny, PD_KEY_STR("small"), "s");
    t_logged(tiny);
    ck_assert_msg(t_log_has(lg, "'get' (2 frames): ok") &&
                      !t_log_has(lg, "get_packed"),
                  "log:\n%s", lg->buf);
    /* Its appends still go packed when they fit. */
    tu_append1(tiny, PD_KEY_STR("small"), "t", 1);
    tu_expect_str(tiny, PD_KEY_STR("small"), "st");
    t_logged(tiny);
    ck_assert_msg(t_log_has(lg, "'append_packed'"), "log:\n%s", lg->buf);
    t_close(&tiny);
    free(val);
    free(bigv);
    t_close_server(&srv);
    t_log_free(lg);
}
END_TEST

/* ------------------------------------------------------------ Malformed */

/* Packed requests that break the layout: each refused with a message that
 * names what was wrong, nothing of it applied, the server still serving. */
START_TEST(malformed) {
    t_log *lg = t_log_new();
    pd_server_opts o = {0};
    o.log_level = PD_LOG_WARN;
    pd_server *srv = t_server(NULL, &o, lg);
    const char *addr = pd_server_address(srv, 0);
    pd_store *good = t_client(addr, 5000, PD_CLIENT_SYNC);
    t_raw r = t_raw_open(addr);
    t_ix x = {0};
#define T_RESET() (x.n = 0)

    /* Frame counts. */
    const char *only[] = {"append_packed"};
    t_raw_send(&r, 1, only, NULL);
    t_expect_refusal(&r, PD_ERR_PROTOCOL, "0 payload frames");
    const char *four[] = {"get_packed", "a", "b", "c"};
    t_raw_send(&r, 4, four, NULL);
    t_expect_refusal(&r, PD_ERR_PROTOCOL, "3 payload frames");

    /* A truncated count. */
    T_RESET();
    t_ix_put(&x, "\1\0", 2);
    t_send3(&r, "append_packed", &x, NULL, 0);
    t_expect_refusal(&r, PD_ERR_PROTOCOL, "truncated before its 4-byte");
    /* A count over the limit. */
    T_RESET();
    t_ix_u32(&x, (uint32_t)PD__WIRE_MAX_KEYS + 1);
    t_send3(&r, "append_packed", &x, NULL, 0);
    t_expect_refusal(&r, PD_ERR_LIMIT, "524289 keys in one request");
    T_RESET();
    t_ix_u32(&x, 0xffffffffu);
    t_send3(&r, "get_packed", &x, "\0\0\1\0\0\0\0\0", 8);
    t_expect_refusal(&r, PD_ERR_LIMIT, "4294967295 keys");
    /* A count larger than the entries present. */
    T_RESET();
    t_ix_u32(&x, 1000);
    t_ix_entry(&x, "k", 1);
    t_send3(&r, "append_packed", &x, "v", 1);
    t_expect_refusal(&r, PD_ERR_PROTOCOL, "too short for 1000 entries");
    /* An entry cut inside its header, after a good one. */
    T_RESET();
    t_ix_u32(&x, 2);
    t_ix_entry(&x, "k", 1);
    t_ix_u32(&x, 1);
    t_ix_u32(&x, 0);
    t_ix_u32(&x, 0);
    t_send3(&r, "append_packed", &x, "vv", 2);
    t_expect_refusal(&r, PD_ERR_PROTOCOL, "key of 1 bytes runs past the end");
    T_RESET();
    t_ix_u32(&x, 2);
    t_ix_entry(&x, "kk", 1);
    t_ix_put(&x, "\1\0\0\0\1\0\0\0\0\0\0", 11); /* 11 of 12 header bytes */
    t_send3(&r, "append_packed", &x, "vv", 2);
    t_expect_refusal(&r, PD_ERR_PROTOCOL, "index entry 1 of 2 truncated");
    /* A key longer than what is left. */
    T_RESET();
    t_ix_u32(&x, 1);
    t_ix_u32(&x, 100);
    t_ix_u64(&x, 0);
    t_ix_put(&x, "short", 5);
    t_send3(&r, "append_packed", &x, NULL, 0);
    t_expect_refusal(&r, PD_ERR_PROTOCOL, "key of 100 bytes runs past");
    /* Value lengths past the data, short of it, overflowing. */
    T_RESET();
    t_ix_u32(&x, 2);
    t_ix_entry(&x, "k", 2);
    t_ix_entry(&x, "k2", 5);
    t_send3(&r, "append_packed", &x, "vvv", 3);
    t_expect_refusal(&r, PD_ERR_PROTOCOL, "value of 5 bytes runs past");
    t_send3(&r, "append_packed", &x, "vvvvvvvvvv", 10);
    t_expect_refusal(&r, PD_ERR_PROTOCOL,
                     "add up to 7 bytes, the data frame has 10");
    T_RESET();
    t_ix_u32(&x, 2);
    t_ix_entry(&x, "k", 1);
    t_ix_entry(&x, "k2", UINT64_MAX);
    t_send3(&r, "append_packed", &x, "vv", 2);
    t_expect_refusal(&r, PD_ERR_PROTOCOL, "runs past the end of the 2-byte");
    /* Trailing bytes after the entries. */
    T_RESET();
    t_ix_u32(&x, 1);
    t_ix_entry(&x, "k", 1);
    t_ix_put(&x, "zz", 2);
    t_send3(&r, "append_packed", &x, "v", 1);
    t_expect_refusal(&r, PD_ERR_PROTOCOL, "2 trailing bytes");
    /* A key of too many parts. */
    char many[T_MANY_PARTS_CAP];
    t_many_parts(many);
    T_RESET();
    t_ix_u32(&x, 2);
    t_ix_entry(&x, "k", 1);
    t_ix_entry(&x, many, 1);
    t_send3(&r, "append_packed", &x, "vw", 2);
    t_expect_refusal(&r, PD_ERR_LIMIT, "key 1");
    tu_expect_str(good, PD_KEY_STR("k"), ""); /* nothing of them applied */
    t_roundtrip(good, "g", "1");

    /* get_packed: the limit frame, no key, an index with value lengths. */
    T_RESET();
    t_ix_u32(&x, 1);
    t_ix_u32(&x, 1);
    t_ix_put(&x, "g", 1);
    t_send3(&r, "get_packed", &x, "\1\0\0\0", 4);
    t_expect_refusal(&r, PD_ERR_PROTOCOL, "the frame limit has 4 bytes");
    t_send3(&r, "get_packed", &x, "\0\0\0\0\0\0\0\0", 8);
    t_expect_refusal(&r, PD_ERR_PROTOCOL, "a frame limit of 0 bytes");
    /* A limit so small the values would need too many frames. */
    size_t gsz = PD__WIRE_MAX_FRAMES + 10;
    char *gv = malloc(gsz);
    memset(gv, 'g', gsz);
    tu_append1(good, PD_KEY_STR("g"), gv, gsz);
    free(gv);
    t_send3(&r, "get_packed", &x, "\1\0\0\0\0\0\0\0", 8);
    t_expect_refusal(&r, PD_ERR_LIMIT, "over 1048577 frames");
    T_RESET();
    t_ix_u32(&x, 0);
    t_send3(&r, "get_packed", &x, "\0\0\1\0\0\0\0\0", 8);
    t_expect_refusal(&r, PD_ERR_PROTOCOL, "get_packed: no key");
    T_RESET();
    t_ix_u32(&x, 1);
    t_ix_entry(&x, "g", 1); /* an append's entry: 8 bytes too many */
    t_send3(&r, "get_packed", &x, "\0\0\1\0\0\0\0\0", 8);
    t_expect_refusal(&r, PD_ERR_PROTOCOL, "8 trailing bytes");
    T_RESET();
    t_ix_u32(&x, 1);
    t_ix_u32(&x, (uint32_t)strlen(many));
    t_ix_put(&x, many, strlen(many));
    t_send3(&r, "get_packed", &x, "\0\0\1\0\0\0\0\0", 8);
    t_expect_refusal(&r, PD_ERR_LIMIT, "get_packed: key 0");

    /* Still serving, the raw socket too. */
    t_roundtrip(good, "g", "2");
    T_RESET();
    t_ix_u32(&x, 1);
    t_ix_entry(&x, "after", 2);
    t_send3(&r, "append_packed", &x, "ok", 2);
    t_raw_expect_ack(&r, "append_packed after the refusals");
    tu_expect_str(good, PD_KEY_STR("after"), "ok");
    ck_assert(pd_server_running(srv));
    /* Refused requests are counted as the requests they stand for. */
    pd_server_stats st = {.size = sizeof st};
    TU_OK(pd_client_stats(good, &st), good);
    ck_assert_uint_eq(st.req_other, 0);
    ck_assert_uint_ge(st.failed, 15);
    free(x.b);
    t_raw_close(&r);
    t_close(&good);
    t_close_server(&srv);
    ck_assert_msg(t_log_has(lg, "sent a bad request"), "log:\n%s", lg->buf);
    t_log_free(lg);
#undef T_RESET
}
END_TEST

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const tu_case cases[] = {
        {"roundtrip", roundtrip},     {"many_keys", many_keys},
        {"mixed_forms", mixed_forms}, {"fallback", fallback},
        {"malformed", malformed},
    };
    return TU_RUN_CASES("test_server_packed", cases, 300, 0);
}
