/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The store interface itself: dispatchers, errors, keys, results, keylists,
 * version.  Uses a tiny recording store defined here, so it depends on no
 * real store. */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

/* ------------------------------------------------------ A probe store */

typedef struct probe {
    pd_store base;
    int appends, gets, dels, sets, drops, keys_calls, locks, unlocks;
    unsigned last_flags;
    size_t last_n;
    int fail_next; /* error code to return from the next op */
} probe;

/* Counts one call of op in *calls, records its flags, and fails it when a
 * failure was asked for. */
static int p_call(probe *p, int *calls, unsigned flags, const char *op) {
    ++*calls;
    p->last_flags = flags;
    int rc = p->fail_next;
    p->fail_next = 0;
    if (rc) return pd__err(&p->base, rc, EIO, "%s 'k': write(/x/k)", op);
    return 0;
}

static int p_append(pd_store *s, size_t n, const pd_key *k, const pd_bytes *v,
                    unsigned flags) {
    (void)k, (void)v;
    probe *p = (probe *)s;
    p->last_n = n;
    return p_call(p, &p->appends, flags, "append");
}

static int p_get(pd_store *s, size_t n, const pd_key *k, pd_result *r,
                 unsigned flags) {
    probe *p = (probe *)s;
    int rc = p_call(p, &p->gets, flags, "get");
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        pd__parts pp;
        pd__key_parts(&k[i], &pp);
        for (size_t j = 0; j < pp.n; j++)
            pd__result_put(r, pp.p[j].data, pp.p[j].size);
        pd__result_next(r);
    }
    return 0;
}

static int p_del(pd_store *s, size_t n, const pd_key *k, unsigned flags) {
    (void)n, (void)k;
    probe *p = (probe *)s;
    return p_call(p, &p->dels, flags, "delete");
}

static int p_set(pd_store *s, size_t n, const pd_key *k, const pd_bytes *v,
                 unsigned flags) {
    (void)k, (void)v;
    probe *p = (probe *)s;
    p->last_n = n;
    return p_call(p, &p->sets, flags, "iset");
}

static int p_drop(pd_store *s, unsigned flags) {
    probe *p = (probe *)s;
    return p_call(p, &p->drops, flags, "drop");
}

static int p_keys(pd_store *s, pd_keylist *kl, unsigned flags) {
    probe *p = (probe *)s;
    pd_bytes parts[2] = {{"a", 1}, {"b\0", 2}};
    pd_key k1 = PD_KEY_STR("flat");
    pd_key k2 = PD_KEY_TUPLE(parts, 2);
    pd__keylist_add(kl, &k1, 10);
    pd__keylist_add(kl, &k2, 20);
    return p_call(p, &p->keys_calls, flags, "keys");
}

static int p_lock(pd_store *s) {
    ((probe *)s)->locks++;
    return 0;
}

static int p_unlock(pd_store *s) {
    ((probe *)s)->unlocks++;
    return 0;
}

static int p_destroy(pd_store *s) {
    (void)s;
    return 0;
}

static const pd_store_ops p_ops = {
    .kind = "probe",
    .append = p_append,
    .get = p_get,
    .del = p_del,
    .set = p_set,
    .drop = p_drop,
    .keys = p_keys,
    .lock = p_lock,
    .unlock = p_unlock,
    .destroy = p_destroy,
};

static probe *probe_new(void) {
    probe *p = calloc(1, sizeof *p);
    ck_assert_int_eq(pd__store_init(&p->base, &p_ops), 0);
    return p;
}

/* The key and the value the probe tests send. */
static const pd_key probe_k = {"k", 1, NULL, 0};
static const pd_bytes probe_v = {"v", 1};

/* -------------------------------------------------------------- Tests */

START_TEST(version_matches_header) {
    ck_assert_uint_eq(pd_version_number(), PARTD_VERSION_NUMBER);
    ck_assert_str_eq(pd_version_string(), PARTD_VERSION_STRING);
}
END_TEST

START_TEST(strerror_covers_every_code) {
    int codes[] = {PD_OK,           PD_ERR_MISUSE,  PD_ERR_NOMEM,
                   PD_ERR_IO,       PD_ERR_KEY,     PD_ERR_CORRUPT,
                   PD_ERR_PROTOCOL, PD_ERR_TIMEOUT, PD_ERR_UNSUPPORTED,
                   PD_ERR_LIMIT};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *m = pd_strerror(codes[i]);
        ck_assert_ptr_nonnull(m);
        ck_assert_str_ne(m, "unknown error code");
    }
    ck_assert_str_eq(pd_strerror(-999), "unknown error code");
}
END_TEST

START_TEST(dispatch_locks_once_and_passes_nolock) {
    probe *p = probe_new();
    pd_store *s = &p->base;
    TU_OK(pd_append(s, 1, &probe_k, &probe_v, 0), s);
    ck_assert_int_eq(p->locks, 1);
    ck_assert_int_eq(p->unlocks, 1);
    ck_assert(p->last_flags & PD_NOLOCK);
    TU_OK(pd_lock(s), s);
    TU_OK(pd_lock(s), s);
    TU_OK(pd_append(s, 1, &probe_k, &probe_v, 0), s);
    TU_OK(pd_append(s, 1, &probe_k, &probe_v, PD_NOLOCK | PD_FSYNC), s);
    ck_assert(p->last_flags & PD_FSYNC);
    ck_assert_int_eq(p->locks, 2); /* hook runs only at depth 0 -> 1 */
    TU_OK(pd_unlock(s), s);
    TU_OK(pd_unlock(s), s);
    ck_assert_int_eq(p->unlocks, 2);
    ck_assert_int_eq(pd_unlock(s), PD_ERR_MISUSE);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(s), "does not hold the lock"));
    pd_close(&s);
}
END_TEST

START_TEST(dispatch_rejects_misuse) {
    probe *p = probe_new();
    pd_store *s = &p->base;
    pd_result *r = (pd_result *)&r;
    ck_assert_int_eq(pd_append(NULL, 1, &probe_k, &probe_v, 0), PD_ERR_MISUSE);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(NULL), "NULL store"));
    ck_assert_int_eq(pd_append(s, 1, NULL, &probe_v, 0), PD_ERR_MISUSE);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(s), "probe: append: NULL keys"));
    ck_assert_int_eq(pd_append(s, 1, &probe_k, NULL, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_append(s, 1, &probe_k, &probe_v, 0x100), PD_ERR_MISUSE);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(s), "unknown flags"));
    pd_bytes bad = {NULL, 3};
    ck_assert_int_eq(pd_append(s, 1, &probe_k, &bad, 0), PD_ERR_MISUSE);
    pd_key badk = {NULL, 4, NULL, 0};
    ck_assert_int_eq(pd_append(s, 1, &badk, &probe_v, 0), PD_ERR_MISUSE);
    pd_key nullparts = {NULL, 0, NULL, 2};
    ck_assert_int_eq(pd_delete(s, 1, &nullparts, 0), PD_ERR_MISUSE);
    static char big[PD_KEY_MAX + 1];
    pd_key bigk = PD_KEY(big, sizeof big);
    ck_assert_int_eq(pd_append(s, 1, &bigk, &probe_v, 0), PD_ERR_LIMIT);
    pd_bytes many[PD_KEY_MAX_PARTS + 1] = {{0}};
    pd_key manyk = PD_KEY_TUPLE(many, PD_KEY_MAX_PARTS + 1);
    ck_assert_int_eq(pd_get(s, 1, &manyk, &r, 0), PD_ERR_LIMIT);
    ck_assert_ptr_null(r); /* *out is NULLed on error */
    ck_assert_int_eq(pd_get(s, 1, &probe_k, NULL, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_get(s, 1, &probe_k, &r, PD_FSYNC), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_drop(s, PD_FSYNC), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_keys(s, NULL, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_lock(NULL), PD_ERR_MISUSE);
    ck_assert_int_eq(p->appends + p->gets + p->dels + p->drops, 0);
    /* n == 0 is fine and reaches no op */
    TU_OK(pd_append(s, 0, NULL, NULL, 0), s);
    TU_OK(pd_get(s, 0, NULL, &r, 0), s);
    ck_assert_uint_eq(pd_result_count(r), 0);
    pd_result_free(&r);
    ck_assert_str_eq(pd_errmsg(s), "ok");
    ck_assert_int_eq(pd_errcode(s), 0);
    pd_close(&s);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(pd_close(&s), 0);
    ck_assert_int_eq(pd_close(NULL), 0);
}
END_TEST

START_TEST(errors_keep_code_errno_and_message) {
    probe *p = probe_new();
    pd_store *s = &p->base;
    p->fail_next = PD_ERR_IO;
    ck_assert_int_eq(pd_append(s, 1, &probe_k, &probe_v, 0), PD_ERR_IO);
    ck_assert_str_eq(pd_errmsg(s),
                     "probe: append 'k': write(/x/k): Input/output error");
    ck_assert_int_eq(pd_errcode(s), PD_ERR_IO);
    ck_assert_int_eq(pd_errno(s), EIO);
    /* a wrapper copies the inner error, prefixed with its own layer */
    probe *q = probe_new();
    pd__err_inner(&q->base, s, PD_ERR_IO);
    ck_assert_str_eq(
        pd_errmsg(&q->base),
        "probe: probe: append 'k': write(/x/k): Input/output error");
    ck_assert_int_eq(pd_errno(&q->base), EIO);
    /* success clears */
    TU_OK(pd_append(s, 1, &probe_k, &probe_v, 0), s);
    ck_assert_str_eq(pd_errmsg(s), "ok");
    pd_store *qs = &q->base;
    pd_close(&qs);
    pd_close(&s);
}
END_TEST

typedef struct thr_arg {
    pd_store *s;
    int fail;
    char msg[PD__MSG_MAX];
} thr_arg;

static void *thr_call(void *a) {
    thr_arg *t = a;
    probe *p = (probe *)t->s;
    pd_lock(t->s);
    p->fail_next = t->fail;
    pd_append(t->s, 1, &probe_k, &probe_v, PD_NOLOCK);
    snprintf(t->msg, sizeof t->msg, "%s", pd_errmsg(t->s));
    pd_unlock(t->s);
    return NULL;
}

/* Each thread reads the outcome of its own last call on a shared handle. */
START_TEST(errors_are_per_thread_on_a_shared_handle) {
    probe *p = probe_new();
    pd_store *s = &p->base;
    thr_arg a = {s, PD_ERR_IO, ""}, b = {s, 0, ""};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, thr_call, &a);
    pthread_join(ta, NULL);
    pthread_create(&tb, NULL, thr_call, &b);
    pthread_join(tb, NULL);
    ck_assert_ptr_nonnull(strstr(a.msg, "Input/output error"));
    ck_assert_str_eq(b.msg, "ok");
    /* this thread made no call: it sees the handle's last outcome (b's
     * unlock succeeded, but a handle records failures only) */
    ck_assert_ptr_nonnull(strstr(pd_errmsg(s), "Input/output error"));
    pd_close(&s);
}
END_TEST

START_TEST(iset_is_idempotent_per_handle) {
    probe *p = probe_new();
    pd_store *s = &p->base;
    pd_key ks[3] = {PD_KEY_STR("a"), PD_KEY_STR("b"), PD_KEY_STR("a")};
    pd_bytes vs[3] = {{"1", 1}, {"2", 1}, {"3", 1}};
    TU_OK(pd_iset(s, 3, ks, vs, 0), s);
    ck_assert_int_eq(p->sets, 1);
    ck_assert_uint_eq(p->last_n, 2); /* the repeat of 'a' is dropped */
    TU_OK(pd_iset(s, 2, ks, vs, 0), s);
    ck_assert_int_eq(p->sets, 1); /* nothing new: no call */
    /* a failed set is not remembered */
    pd_key c = PD_KEY_STR("c");
    p->fail_next = PD_ERR_IO;
    ck_assert_int_eq(pd_iset(s, 1, &c, vs, 0), PD_ERR_IO);
    TU_OK(pd_iset(s, 1, &c, vs, 0), s);
    ck_assert_int_eq(p->sets, 3);
    /* drop forgets */
    TU_OK(pd_drop(s, 0), s);
    TU_OK(pd_iset(s, 1, ks, vs, 0), s);
    ck_assert_int_eq(p->sets, 4);
    /* ('a',) is the key 'a' */
    pd_bytes one = {"a", 1};
    pd_key t1 = PD_KEY_TUPLE(&one, 1);
    TU_OK(pd_iset(s, 1, &t1, vs, 0), s);
    ck_assert_int_eq(p->sets, 4);
    pd_close(&s);
}
END_TEST

START_TEST(results_and_keylists) {
    probe *p = probe_new();
    pd_store *s = &p->base;
    pd_bytes parts[2] = {{"x", 1}, {"yz", 2}};
    pd_key ks[3] = {PD_KEY_STR("abc"), PD_KEY("", 0), PD_KEY_TUPLE(parts, 2)};
    pd_result *r = NULL;
    TU_OK(pd_get(s, 3, ks, &r, 0), s);
    ck_assert_uint_eq(pd_result_count(r), 3);
    ck_assert_uint_eq(pd_result_total(r), 6);
    pd_bytes v = pd_result_value(r, 0);
    ck_assert(v.size == 3 && !memcmp(v.data, "abc", 3));
    v = pd_result_value(r, 1);
    ck_assert(v.size == 0 && v.data != NULL);
    v = pd_result_value(r, 2);
    ck_assert(v.size == 3 && !memcmp(v.data, "xyz", 3));
    v = pd_result_value(r, 3);
    ck_assert(v.size == 0 && v.data == NULL);
    /* concat_each: value i becomes a_i + b_i */
    pd_result *b = pd__result_new(3, 0);
    pd__result_put(b, "1", 1);
    pd__result_next(b);
    pd__result_put(b, "22", 2);
    pd__result_next(b);
    pd__result_next(b);
    ck_assert_int_eq(pd__result_concat_each(r, b), 0);
    v = pd_result_value(r, 0);
    ck_assert(v.size == 4 && !memcmp(v.data, "abc1", 4));
    v = pd_result_value(r, 1);
    ck_assert(v.size == 2 && !memcmp(v.data, "22", 2));
    v = pd_result_value(r, 2);
    ck_assert(v.size == 3 && !memcmp(v.data, "xyz", 3));
    pd_result_free(&b);
    pd_result_free(&r);
    ck_assert_ptr_null(r);
    pd_result_free(&r);
    pd_result_free(NULL);

    pd_keylist *kl = NULL;
    TU_OK(pd_keys(s, &kl, 0), s);
    ck_assert_uint_eq(pd_keylist_count(kl), 2);
    pd_key k;
    ck_assert_int_eq(pd_keylist_key(kl, 0, &k), 0);
    ck_assert(k.nparts == 0 && k.size == 4 && !memcmp(k.data, "flat", 4));
    ck_assert_uint_eq(pd_keylist_size(kl, 0), 10);
    ck_assert_int_eq(pd_keylist_key(kl, 1, &k), 0);
    ck_assert_uint_eq(k.nparts, 2);
    ck_assert(k.parts[1].size == 2 && !memcmp(k.parts[1].data, "b\0", 2));
    ck_assert_uint_eq(pd_keylist_size(kl, 1), 20);
    ck_assert_int_eq(pd_keylist_key(kl, 2, &k), PD_ERR_MISUSE);
    ck_assert_uint_eq(pd_keylist_size(kl, 2), 0);
    pd_keylist_free(&kl);
    ck_assert_ptr_null(kl);
    /* an op failing leaves *out NULL */
    p->fail_next = PD_ERR_IO;
    ck_assert_int_eq(pd_keys(s, &kl, 0), PD_ERR_IO);
    ck_assert_ptr_null(kl);
    pd_close(&s);
}
END_TEST

START_TEST(packed_keys_are_injective) {
    pd_bytes ab[2] = {{"a", 1}, {"b", 1}};
    pd_bytes a_b[2] = {{"a/", 2}, {"b", 1}};
    pd_bytes one[1] = {{"a/b", 3}};
    pd_bytes e2[2] = {{"", 0}, {"", 0}};
    pd_key keys[] = {PD_KEY_STR("a/b"),    PD_KEY_TUPLE(ab, 2),
                     PD_KEY_TUPLE(a_b, 2), PD_KEY("", 0),
                     PD_KEY_TUPLE(e2, 2),  PD_KEY("\x01", 1),
                     PD_KEY("\0", 1)};
    size_t n = sizeof keys / sizeof keys[0];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            pd__pkey a, b;
            pd__pkey_set(&a, &keys[i]);
            pd__pkey_set(&b, &keys[j]);
            bool same = a.len == b.len && !memcmp(a.p, b.p, a.len);
            ck_assert_msg(same == (i == j), "keys %zu and %zu", i, j);
            pd__pkey_free(&a);
            pd__pkey_free(&b);
        }
    /* a 1-tuple packs like its part */
    pd_key t1 = PD_KEY_TUPLE(one, 1);
    pd__pkey a, b;
    pd__pkey_set(&a, &t1);
    pd__pkey_set(&b, &keys[0]);
    ck_assert(a.len == b.len && !memcmp(a.p, b.p, a.len));
    /* unpack reverses pack */
    pd_key back;
    pd_bytes parts[PD_KEY_MAX_PARTS];
    pd__pkey_free(&a);
    pd__pkey_set(&a, &keys[2]);
    ck_assert_int_eq(pd__key_unpack(a.p, a.len, &back, parts), 0);
    ck_assert_uint_eq(back.nparts, 2);
    ck_assert(back.parts[0].size == 2 && !memcmp(back.parts[0].data, "a/", 2));
    ck_assert_int_eq(pd__key_unpack(a.p, a.len - 1, &back, parts),
                     PD_ERR_CORRUPT);
    pd__pkey_free(&a);
    pd__pkey_free(&b);
}
END_TEST

START_TEST(key_repr_and_parse_round_trip) {
    char all[256];
    for (int i = 0; i < 256; i++) all[i] = (char)i;
    pd_bytes parts[3] = {{"a", 1}, {"it's", 4}, {"\\\n", 2}};
    pd_key keys[] = {PD_KEY(all, 256), PD_KEY("", 0), PD_KEY_TUPLE(parts, 3),
                     PD_KEY_TUPLE(parts, 1), PD_KEY_STR("plain key")};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        size_t need = pd_key_repr(&keys[i], NULL, 0);
        ck_assert_uint_gt(need, 1);
        char *buf = malloc(need + 1);
        ck_assert_uint_eq(pd_key_repr(&keys[i], buf, need + 1), need);
        ck_assert_uint_eq(strlen(buf), need);
        for (size_t j = 0; j < need; j++) /* printable, one line */
            ck_assert(buf[j] >= 0x20 && buf[j] < 0x7f);
        pd_key *back = NULL;
        ck_assert_int_eq(pd_key_parse(buf, need, &back), 0);
        pd__pkey a, b;
        pd__pkey_set(&a, &keys[i]);
        pd__pkey_set(&b, back);
        ck_assert_msg(a.len == b.len && !memcmp(a.p, b.p, a.len), "%s", buf);
        pd__pkey_free(&a);
        pd__pkey_free(&b);
        pd_key_free(&back);
        ck_assert_ptr_null(back);
        free(buf);
    }
    char small[8];
    ck_assert_uint_eq(pd_key_repr(&keys[4], small, sizeof small), 11);
    ck_assert_str_eq(small, "'plain ");
    ck_assert_str_eq((pd_key_repr(&keys[2], small, 0), "ok"), "ok");
    /* bad syntax */
    const char *bad[] = {
        "",      "abc",    "'open", "('a'",         "('a' 'b')",
        "'\\q'", "'\\x4'", "()",    "'a' trailing", "(,)"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pd_key *k = NULL;
        ck_assert_msg(pd_key_parse(bad[i], strlen(bad[i]), &k) == PD_ERR_MISUSE,
                      "accepted %s", bad[i]);
        ck_assert_ptr_null(k);
        ck_assert_ptr_nonnull(strstr(pd_errmsg(NULL), "key parse"));
    }
    pd_key *k = NULL;
    ck_assert_int_eq(pd_key_parse("\"dq\"", 4, &k), 0);
    ck_assert(k->size == 2 && !memcmp(k->data, "dq", 2));
    pd_key_free(&k);
    ck_assert_int_eq(pd_key_parse(NULL, 0, &k), PD_ERR_MISUSE);
}
END_TEST

START_TEST(key_short_is_bounded) {
    static char big[PD_KEY_MAX];
    memset(big, 'x', sizeof big);
    pd_key k = PD_KEY(big, sizeof big);
    char buf[PD__KEYSHORT_MAX];
    pd__key_short(&k, buf);
    ck_assert_uint_lt(strlen(buf), PD__KEYSHORT_MAX);
    ck_assert_ptr_nonnull(strstr(buf, "..."));
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"version_matches_header", version_matches_header},
        {"strerror_covers_every_code", strerror_covers_every_code},
        {"dispatch_locks_once_and_passes_nolock",
         dispatch_locks_once_and_passes_nolock},
        {"dispatch_rejects_misuse", dispatch_rejects_misuse},
        {"errors_keep_code_errno_and_message",
         errors_keep_code_errno_and_message},
        {"errors_are_per_thread_on_a_shared_handle",
         errors_are_per_thread_on_a_shared_handle},
        {"iset_is_idempotent_per_handle", iset_is_idempotent_per_handle},
        {"results_and_keylists", results_and_keylists},
        {"packed_keys_are_injective", packed_keys_are_injective},
        {"key_repr_and_parse_round_trip", key_repr_and_parse_round_trip},
        {"key_short_is_bounded", key_short_is_bounded},
    };
    return TU_RUN_CASES("store", cases, 300, 0);
}
