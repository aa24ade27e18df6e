/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The ZeroMQ Server and Client: gets whose values span many reply frames
 * (docs/zmq.md, "Packed append and get"): reassembled into an owned result
 * and into a pd_get_into buffer, the server's frames sent from the store's
 * result, and a client facing malformed replies (a scripted server). */
#include "srvfix.h"

#include <stdatomic.h>

/* ------------------------------------------------------------ Helpers */

static unsigned char t_byte(size_t key, size_t i) {
    return (unsigned char)(key * 31 + i * 7 + (i >> 9));
}

/* The size of key i's value in the mixed set: empty, small, or larger
 * than a 64 KiB frame. */
static size_t t_size(size_t i) {
    if (i % 7 == 0) return 0;
    if (i % 5 == 0) return 200000 + i;
    return (i * 37) % 3000 + 1;
}

static void t_name(size_t i, char out[16]) { snprintf(out, 16, "m%05zu", i); }

/* Appends the n mixed values in one call (through a client of the
 * default max_message); returns their total. */
static uint64_t t_fill(const char *addr, size_t n) {
    pd_store *w = t_client(addr, 10000, PD_CLIENT_SYNC);
    pd_key *keys = calloc(n, sizeof *keys);
    pd_bytes *vals = calloc(n, sizeof *vals);
    char(*names)[16] = calloc(n, sizeof *names);
    ck_assert(keys && vals && names);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t sz = t_size(i);
        unsigned char *v = malloc(sz + 1);
        ck_assert_ptr_nonnull(v);
        for (size_t j = 0; j < sz; j++) v[j] = t_byte(i, j);
        t_name(i, names[i]);
        keys[i] = PD_KEY_STR(names[i]);
        vals[i] = (pd_bytes){v, sz};
        total += sz;
    }
    TU_OK(pd_append(w, n, keys, vals, 0), w);
    for (size_t i = 0; i < n; i++) free((void *)vals[i].data);
    free(keys);
    free(vals);
    free(names);
    t_close(&w);
    return total;
}

/* Asserts that r holds the n mixed values in order. */
static void t_check_mixed(const pd_result *r, size_t n) {
    ck_assert_uint_eq(pd_result_count(r), n);
    for (size_t i = 0; i < n; i++) {
        pd_bytes v = pd_result_value(r, i);
        ck_assert_msg(v.size == t_size(i), "value %zu: %zu bytes, want %zu", i,
                      v.size, t_size(i));
        const unsigned char *p = v.data;
        for (size_t j = 0; j < v.size; j++)
            if (p[j] != t_byte(i, j))
                ck_abort_msg("value %zu: byte %zu differs", i, j);
    }
}

/* ------------------------------------------------------------ Reassembly */

/* Values of 0 to 200 KB under a 64 KiB frame limit: a packed get's values
 * arrive in many frames, values cut across them, and land whole in an
 * owned result, in a pd_get_into buffer that holds them, and in one too
 * small (then memory of the result's own). */
START_TEST(multi_frame) {
    t_log *lg = t_log_new();
    pd_server *srv = t_server(NULL, NULL, lg);
    const char *addr = pd_server_address(srv, 0);
    const size_t n = 300;
    uint64_t total = t_fill(addr, n);
    ck_assert_uint_gt(total, 40 * PD__WIRE_PACKED_MIN_FRAME);
    pd_key *keys = calloc(n, sizeof *keys);
    char(*names)[16] = calloc(n, sizeof *names);
    ck_assert(keys && names);
    for (size_t i = 0; i < n; i++) {
        t_name(i, names[i]);
        keys[i] = PD_KEY_STR(names[i]);
    }
    pd_store *c = t_client_max(addr, PD__WIRE_PACKED_MIN_FRAME);
    t_roundtrip(c, "warm", "1"); /* the server is known to be ours */
    pd_result *r = NULL;
    TU_OK(pd_get(c, n, keys, &r, 0), c);
    t_check_mixed(r, n);
    pd_result_free(&r);
    char *buf = malloc((size_t)total);
    ck_assert_ptr_nonnull(buf);
    TU_OK(pd_get_into(c, n, keys, buf, (size_t)total, &r, 0), c);
    ck_assert(pd_result_in(r, buf));
    t_check_mixed(r, n);
    pd_result_free(&r);
    TU_OK(pd_get_into(c, n, keys, buf, (size_t)total / 2, &r, 0), c);
    ck_assert(!pd_result_in(r, buf));
    t_check_mixed(r, n);
    pd_result_free(&r);
    /* One key at a time: single values of several frames. */
    for (size_t i = 0; i < 12; i++) {
        TU_OK(pd_get_into(c, 1, &keys[i], buf, (size_t)total, &r, 0), c);
        pd_bytes v = pd_result_value(r, 0);
        ck_assert_uint_eq(v.size, t_size(i));
        ck_assert(v.size == 0 || pd_result_in(r, buf));
        for (size_t j = 0; j < v.size; j++)
            ck_assert(((const unsigned char *)v.data)[j] == t_byte(i, j));
        pd_result_free(&r);
    }
    /* The server logs a request after its reply: once a later reply is
     * in, the log holds the gets. */
    pd_server_stats st = {.size = sizeof st};
    TU_OK(pd_client_stats(c, &st), c);
    ck_assert_msg(t_log_has(lg, "get_packed"), "log:\n%s", lg->buf);
    free(buf);
    free(keys);
    free(names);
    t_close(&c);
    t_close_server(&srv);
    t_log_free(lg);
}
END_TEST

/* Every value empty or missing: one empty data frame; and a value over
 * the client's frame cap (PD__CLIENT_GET_FRAME) with the default
 * max_message, in two frames, beside an empty one and a small one. */
START_TEST(empty_and_capped) {
    pd_server *srv = t_server(NULL, NULL, NULL);
    const char *addr = pd_server_address(srv, 0);
    pd_store *c = t_client(addr, 20000, PD_CLIENT_SYNC);
    t_roundtrip(c, "warm", "1");
    pd_key none[3] = {PD_KEY_STR("no1"), PD_KEY_STR("no2"), PD_KEY_STR("no3")};
    pd_result *r = NULL;
    char tiny[4];
    TU_OK(pd_get_into(c, 3, none, tiny, sizeof tiny, &r, 0), c);
    ck_assert_uint_eq(pd_result_count(r), 3);
    for (size_t i = 0; i < 3; i++)
        ck_assert_uint_eq(pd_result_value(r, i).size, 0);
    pd_result_free(&r);

    size_t big =
        (size_t)PD__CLIENT_GET_FRAME + (size_t)PD__CLIENT_GET_FRAME / 4;
    unsigned char *v = malloc(big);
    ck_assert_ptr_nonnull(v);
    for (size_t j = 0; j < big; j++) v[j] = t_byte(9, j);
    /* Appended in pieces, each well under max_message. */
    for (size_t at = 0; at < big; at += 8u << 20) {
        size_t sz = big - at < (8u << 20) ? big - at : (8u << 20);
        tu_append1(c, PD_KEY_STR("big"), v + at, sz);
    }
    tu_append1(c, PD_KEY_STR("small"), "xyz", 3);
    pd_key ks[3] = {PD_KEY_STR("none"), PD_KEY_STR("big"), PD_KEY_STR("small")};
    TU_OK(pd_get(c, 3, ks, &r, 0), c);
    ck_assert_uint_eq(pd_result_value(r, 0).size, 0);
    ck_assert_uint_eq(pd_result_value(r, 1).size, big);
    ck_assert(memcmp(pd_result_value(r, 1).data, v, big) == 0);
    ck_assert_uint_eq(pd_result_value(r, 2).size, 3);
    ck_assert(memcmp(pd_result_value(r, 2).data, "xyz", 3) == 0);
    pd_result_free(&r);
    char *buf = malloc(big + 3);
    ck_assert_ptr_nonnull(buf);
    TU_OK(pd_get_into(c, 3, ks, buf, big + 3, &r, 0), c);
    ck_assert(pd_result_in(r, buf));
    ck_assert(memcmp(buf, v, big) == 0 && memcmp(buf + big, "xyz", 3) == 0);
    pd_result_free(&r);
    free(buf);
    free(v);
    t_close(&c);
    t_close_server(&srv);
}
END_TEST

/* Reads one whole message from a raw socket: its frames, malloc'd. */
static size_t t_raw_recv_all(t_raw *r, pd_bytes *out, size_t cap) {
    zmq_pollitem_t it = {r->sock, 0, ZMQ_POLLIN, 0};
    ck_assert_int_gt(zmq_poll(&it, 1, 10000), 0);
    size_t n = 0;
    for (int more = 1; more;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        ck_assert_int_ge(zmq_msg_recv(&m, r->sock, 0), 0);
        ck_assert_uint_lt(n, cap);
        void *d = malloc(zmq_msg_size(&m) + 1);
        ck_assert_ptr_nonnull(d);
        memcpy(d, zmq_msg_data(&m), zmq_msg_size(&m));
        out[n++] = (pd_bytes){d, zmq_msg_size(&m)};
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    return n;
}

/* The per-key get (Python's clients) of large values: one frame each,
 * sent from the store's result; small and empty ones beside them. */
START_TEST(per_key_large) {
    pd_server *srv = t_server(NULL, NULL, NULL);
    const char *addr = pd_server_address(srv, 0);
    t_fill(addr, 11);
    t_raw r = t_raw_open(addr);
    int big = 1 << 30;
    zmq_setsockopt(r.sock, ZMQ_RCVHWM, &big, sizeof big);
    const char *f[12] = {"get"};
    char names[11][16];
    for (size_t i = 0; i < 11; i++) {
        t_name(i, names[i]);
        f[i + 1] = names[i];
    }
    t_raw_send(&r, 12, f, NULL);
    pd_bytes got[16];
    size_t n = t_raw_recv_all(&r, got, 16);
    ck_assert_uint_eq(n, 11);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(got[i].size, t_size(i));
        for (size_t j = 0; j < got[i].size; j++)
            if (((const unsigned char *)got[i].data)[j] != t_byte(i, j))
                ck_abort_msg("value %zu: byte %zu differs", i, j);
        free((void *)got[i].data);
    }
    t_raw_expect_ack(&r, "per-key get");
    t_raw_close(&r);
    t_close_server(&srv);
}
END_TEST

/* ------------------------------------------------------------ Malformed */

/* A scripted server: a ROUTER with our server's routing id that answers
 * syn with [ack] and each get_packed with the reply of the current mode,
 * then [ack]. */
enum {
    T_GOOD,     /* [LENGTHS(5), "hello"] */
    T_COUNT,    /* LENGTHS counting 2 values for 1 key */
    T_SHORT,    /* lengths 5, data 3 bytes */
    T_LONG,     /* lengths 5, data 4 + 4 bytes */
    T_NODATA,   /* LENGTHS alone */
    T_WIDTH,    /* a first frame of 7 bytes, not an error reply */
    T_ERROR,    /* the error reply alone */
    T_OVERFLOW, /* two lengths adding up past 2^64 */
};

typedef struct t_fake {
    void *ctx, *sock;
    char addr[128];
    char *dir;
    pthread_t th;
    atomic_int stop, mode;
    atomic_ullong limit; /* LIMIT of the last get_packed */
} t_fake;

static void t_fake_send(t_fake *f, zmq_msg_t *id, size_t n, const void **d,
                        const size_t *l) {
    zmq_msg_t c;
    zmq_msg_init(&c);
    zmq_msg_copy(&c, id);
    zmq_msg_send(&c, f->sock, ZMQ_SNDMORE);
    for (size_t i = 0; i < n; i++)
        zmq_send(f->sock, d[i], l[i], i + 1 < n ? ZMQ_SNDMORE : 0);
}

static void t_fake_answer(t_fake *f, zmq_msg_t *id, int nkeys) {
    unsigned char lens[4 + 8 * 2];
    pd__wire_put_u32(lens, (uint32_t)nkeys);
    pd__wire_put_u64(lens + 4, 5);
    const void *d[4] = {lens, "hello", "", ""};
    size_t l[4] = {4 + 8 * (size_t)nkeys, 5, 0, 0};
    size_t n = 2;
    switch (atomic_load(&f->mode)) {
    case T_COUNT: pd__wire_put_u32(lens, (uint32_t)nkeys + 1); break;
    case T_SHORT: l[1] = 3; break;
    case T_LONG:
        d[1] = "hell";
        d[2] = "more";
        l[1] = l[2] = 4;
        n = 3;
        break;
    case T_NODATA: n = 1; break;
    case T_WIDTH: l[0] = 7; break;
    case T_ERROR:
        d[0] = "error";
        d[1] = "-5"; /* PD_ERR_CORRUPT */
        d[2] = "get_packed: scripted failure";
        l[0] = 5;
        l[1] = 2;
        l[2] = strlen(d[2]);
        n = 3;
        break;
    case T_OVERFLOW:
        pd__wire_put_u32(lens, 2);
        pd__wire_put_u64(lens + 4, UINT64_MAX - 1);
        pd__wire_put_u64(lens + 12, 5);
        l[0] = 4 + 16;
        break;
    default: break;
    }
    t_fake_send(f, id, n, d, l);
    if (atomic_load(&f->mode) != T_ERROR) {
        const void *a[1] = {"ack"};
        size_t al[1] = {3};
        t_fake_send(f, id, 1, a, al);
    }
}

static void *t_fake_run(void *arg) {
    t_fake *f = arg;
    while (!atomic_load(&f->stop)) {
        zmq_pollitem_t it = {f->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 50) <= 0) continue;
        zmq_msg_t m[8];
        size_t n = 0;
        for (int more = 1; more;) {
            zmq_msg_t t;
            zmq_msg_init(&t);
            if (zmq_msg_recv(&t, f->sock, 0) < 0) break;
            more = zmq_msg_more(&t);
            if (n < 8)
                m[n++] = t;
            else
                zmq_msg_close(&t);
        }
        if (n >= 2) {
            const char *cmd = zmq_msg_data(&m[1]);
            size_t cl = zmq_msg_size(&m[1]);
            if (cl == 3 && memcmp(cmd, "syn", 3) == 0) {
                const void *a[1] = {"ack"};
                size_t al[1] = {3};
                t_fake_send(f, &m[0], 1, a, al);
            } else if (cl == 10 && memcmp(cmd, "get_packed", 10) == 0 &&
                       n == 4 && zmq_msg_size(&m[3]) == 8) {
                atomic_store(&f->limit, pd__wire_get_u64(zmq_msg_data(&m[3])));
                t_fake_answer(f, &m[0],
                              (int)pd__wire_get_u32(zmq_msg_data(&m[2])));
            }
        }
        for (size_t i = 0; i < n; i++) zmq_msg_close(&m[i]);
    }
    return NULL;
}

static void t_fake_start(t_fake *f) {
    memset(f, 0, sizeof *f);
    f->dir = tu_mkdtemp();
    snprintf(f->addr, sizeof f->addr, "ipc://%s/fake", f->dir);
    f->ctx = zmq_ctx_new();
    f->sock = zmq_socket(f->ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(f->sock, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_setsockopt(f->sock, ZMQ_ROUTING_ID, PD_SERVER_IDENTITY,
                                    strlen(PD_SERVER_IDENTITY)),
                     0);
    ck_assert_int_eq(zmq_bind(f->sock, f->addr), 0);
    ck_assert_int_eq(pthread_create(&f->th, NULL, t_fake_run, f), 0);
}

static void t_fake_stop(t_fake *f) {
    atomic_store(&f->stop, 1);
    pthread_join(f->th, NULL);
    zmq_close(f->sock);
    zmq_ctx_term(f->ctx);
    tu_rmtree(f->dir);
    free(f->dir);
}

/* A get in `mode` fails with PD_ERR_PROTOCOL naming the address and
 * `why`; the next get on the same handle works (a new connection). */
static void t_expect_malformed(t_fake *f, pd_store *c, int mode,
                               const char *why) {
    pd_key k = PD_KEY_STR("k"), ks[2] = {PD_KEY_STR("k"), PD_KEY_STR("k2")};
    pd_result *r = NULL;
    atomic_store(&f->mode, mode);
    int rc = pd_get(c, mode == T_OVERFLOW ? 2 : 1, ks, &r, 0);
    ck_assert_msg(rc == PD_ERR_PROTOCOL, "mode %d: %d (%s)", mode, rc,
                  pd_errmsg(c));
    ck_assert_ptr_null(r);
    const char *msg = pd_errmsg(c);
    ck_assert_msg(strstr(msg, f->addr) && strstr(msg, why) &&
                      strstr(msg, "connection reset"),
                  "mode %d: '%s' lacks the address or '%s'", mode, msg, why);
    atomic_store(&f->mode, T_GOOD);
    TU_OK(pd_get(c, 1, &k, &r, 0), c);
    ck_assert_uint_eq(pd_result_value(r, 0).size, 5);
    ck_assert(memcmp(pd_result_value(r, 0).data, "hello", 5) == 0);
    pd_result_free(&r);
}

START_TEST(malformed_reply) {
    t_fake f;
    t_fake_start(&f);
    pd_store *c = t_client(f.addr, 5000, 0);
    pd_key k = PD_KEY_STR("k");
    pd_result *r = NULL;
    /* Once syn's reply is read the server is known to be "ours": every
     * get goes packed, asking frames of at most PD__CLIENT_GET_FRAME. */
    TU_OK(pd_client_sync(c), c);
    TU_OK(pd_get(c, 1, &k, &r, 0), c);
    ck_assert(memcmp(pd_result_value(r, 0).data, "hello", 5) == 0);
    pd_result_free(&r);
    ck_assert_uint_eq(atomic_load(&f.limit), PD__CLIENT_GET_FRAME);
    t_expect_malformed(&f, c, T_COUNT, "counts 2 values");
    t_expect_malformed(&f, c, T_SHORT,
                       "data frames carry 3 bytes, its value "
                       "lengths 5");
    t_expect_malformed(&f, c, T_LONG, "carry more than the 5 bytes");
    t_expect_malformed(&f, c, T_NODATA, "no data frame after the lengths");
    t_expect_malformed(&f, c, T_WIDTH, "lengths frame has 7 bytes, 12");
    t_expect_malformed(&f, c, T_OVERFLOW, "add up past 2^64");
    /* The error reply alone: the server's error, the connection kept. */
    atomic_store(&f.mode, T_ERROR);
    ck_assert_int_eq(pd_get(c, 1, &k, &r, 0), PD_ERR_CORRUPT);
    ck_assert_msg(strstr(pd_errmsg(c), "scripted failure"), "%s", pd_errmsg(c));
    atomic_store(&f.mode, T_GOOD);
    TU_OK(pd_get(c, 1, &k, &r, 0), c);
    pd_result_free(&r);
    t_close(&c);
    /* A smaller max_message is the frame limit asked. */
    c = t_client_max(f.addr, 100000);
    TU_OK(pd_client_sync(c), c);
    TU_OK(pd_get(c, 1, &k, &r, 0), c);
    pd_result_free(&r);
    ck_assert_uint_eq(atomic_load(&f.limit), 100000);
    t_close(&c);
    t_fake_stop(&f);
}
END_TEST

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const tu_case cases[] = {
        {"multi_frame", multi_frame},
        {"empty_and_capped", empty_and_capped},
        {"per_key_large", per_key_large},
        {"malformed_reply", malformed_reply},
    };
    return TU_RUN_CASES("test_server_bigget", cases, 300, 0);
}
