/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The fixture shared by the Buffer suites (tests/test_buffer_*.c): Buffers
 * over Dicts, a tiny store that can fail, a random workload checked against
 * a model, threads, and a File slow store.
 */
#ifndef PARTD_TESTS_BUFIX_H
#define PARTD_TESTS_BUFIX_H

#include "testutil.h"
#include "dict/arena.h"
#include "buffer/buffer.h"
#include "dict/dict.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* dict_refs_stay_valid asks malloc for 2^62 bytes. */
TU_ALLOCATOR_MAY_RETURN_NULL()

/* ------------------------------------------------------------ Helpers */

/* A Buffer (limit) that borrows fast and slow: the test reads them
 * directly, and closes all three (s_close3). */
static PD__UNUSED pd_store *s_buf_borrow(pd_store *fast, pd_store *slow,
                                         uint64_t limit) {
    pd_store *b = NULL;
    int rc = pd_buffer_open(&b, &fast, &slow, limit, PD_BORROW);
    ck_assert_msg(rc == 0, "buffer open: %s", pd_errmsg(NULL));
    return b;
}

/* Closes a Buffer, then the two stores it borrowed. */
static PD__UNUSED void s_close3(pd_store **b, pd_store **fast,
                                pd_store **slow) {
    pd_close(b);
    pd_close(fast);
    pd_close(slow);
}

/* Buffer over two new Dicts, owned. */
static PD__UNUSED pd_store *s_buf_dd(uint64_t limit) {
    pd_store *f = tu_dict(), *sl = tu_dict(), *b = NULL;
    int rc = pd_buffer_open(&b, &f, &sl, limit, 0);
    ck_assert_msg(rc == 0, "open: %s", pd_errmsg(NULL));
    ck_assert_ptr_null(f);
    ck_assert_ptr_null(sl);
    ck_assert_str_eq(pd_store_kind(b), "buffer");
    ck_assert_uint_eq(pd_buffer_memory_limit(b), limit);
    return b;
}

/* Bytes held by a store over all its keys. */
static PD__UNUSED uint64_t s_held(pd_store *s) {
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(s, &kl, 0), s);
    uint64_t t = 0;
    for (size_t i = 0; i < pd_keylist_count(kl); i++)
        t += pd_keylist_size(kl, i);
    pd_keylist_free(&kl);
    return t;
}

/* ------------------------------------------- A tiny store that can fail */

/* "failing": a Dict behind a switch.  While `fail` is set, append and set
 * fail with PD_ERR_IO/ENOSPC and change nothing; while `fail_del` is set,
 * delete does.  Has no peek, so as a Buffer's fast store it exercises the
 * pd_get path. */
typedef struct t_fail {
    pd_store base;
    pd_store *inner;
    bool fail, fail_del;
    const char *fail_key; /* a delete reaching this flat key fails there */
    int failures;
    int gets, dels, keys; /* calls reaching the store (PD_BUFFER_PRIVATE) */
} t_fail;

static PD__UNUSED int t_append(pd_store *s, size_t n, const pd_key *keys,
                               const pd_bytes *vals, unsigned flags) {
    t_fail *f = (t_fail *)s;
    char ks[PD__KEYSHORT_MAX];
    if (f->fail) {
        f->failures++;
        return pd__err(s, PD_ERR_IO, ENOSPC, "append %s: write(/fake/%zu)",
                       pd__key_short(&keys[0], ks), n);
    }
    int rc = pd_append(f->inner, n, keys, vals, flags & PD_FSYNC);
    return rc ? pd__err_inner(s, f->inner, rc) : 0;
}

static PD__UNUSED int t_get(pd_store *s, size_t n, const pd_key *keys,
                            pd_result *r, unsigned flags) {
    (void)flags;
    t_fail *f = (t_fail *)s;
    f->gets++;
    pd_result *ir = NULL;
    int rc = pd_get(f->inner, n, keys, &ir, 0);
    if (rc) return pd__err_inner(s, f->inner, rc);
    for (size_t i = 0; i < n; i++) {
        pd_bytes v = pd_result_value(ir, i);
        if (pd__result_put(r, v.data, v.size) || pd__result_next(r)) {
            pd_result_free(&ir);
            return pd__err(s, PD_ERR_NOMEM, ENOMEM, "get");
        }
    }
    pd_result_free(&ir);
    return 0;
}

static PD__UNUSED int t_del(pd_store *s, size_t n, const pd_key *keys,
                            unsigned flags) {
    (void)flags;
    t_fail *f = (t_fail *)s;
    char ks[PD__KEYSHORT_MAX];
    f->dels++;
    for (size_t i = 0; f->fail_key && i < n; i++) {
        if (keys[i].nparts || keys[i].size != strlen(f->fail_key) ||
            memcmp(keys[i].data, f->fail_key, keys[i].size) != 0)
            continue;
        /* As a real store: the keys before the one named are deleted. */
        int rc = i ? pd_delete(f->inner, i, keys, 0) : 0;
        if (rc) return pd__err_inner(s, f->inner, rc);
        f->failures++;
        return pd__err(s, PD_ERR_IO, EIO, "delete %s: unlink(/fake/%zu)",
                       pd__key_short(&keys[i], ks), n);
    }
    if (f->fail_del) {
        f->failures++;
        return pd__err(s, PD_ERR_IO, EIO, "delete %s: unlink(/fake/%zu)",
                       pd__key_short(&keys[0], ks), n);
    }
    int rc = pd_delete(f->inner, n, keys, 0);
    return rc ? pd__err_inner(s, f->inner, rc) : 0;
}

static PD__UNUSED int t_set(pd_store *s, size_t n, const pd_key *keys,
                            const pd_bytes *vals, unsigned flags) {
    (void)flags;
    t_fail *f = (t_fail *)s;
    if (f->fail) {
        f->failures++;
        return pd__err(s, PD_ERR_IO, ENOSPC, "set: write(/fake)");
    }
    pthread_mutex_lock(&f->inner->mu);
    int rc = f->inner->ops->set(f->inner, n, keys, vals, PD_NOLOCK);
    pthread_mutex_unlock(&f->inner->mu);
    return rc ? pd__err_inner(s, f->inner, rc) : 0;
}

static PD__UNUSED int t_drop(pd_store *s, unsigned flags) {
    (void)flags;
    t_fail *f = (t_fail *)s;
    int rc = pd_drop(f->inner, 0);
    return rc ? pd__err_inner(s, f->inner, rc) : 0;
}

static PD__UNUSED int t_keys(pd_store *s, pd_keylist *kl, unsigned flags) {
    (void)flags;
    t_fail *f = (t_fail *)s;
    f->keys++;
    pd_keylist *ik = NULL;
    int rc = pd_keys(f->inner, &ik, 0);
    if (rc) return pd__err_inner(s, f->inner, rc);
    for (size_t i = 0; i < pd_keylist_count(ik) && rc == 0; i++) {
        pd_key k;
        pd_keylist_key(ik, i, &k);
        rc = pd__keylist_add(kl, &k, pd_keylist_size(ik, i));
    }
    pd_keylist_free(&ik);
    return rc;
}

static PD__UNUSED int t_destroy(pd_store *s) {
    t_fail *f = (t_fail *)s;
    return pd_close(&f->inner);
}

static PD__UNUSED const pd_store_ops t_fail_ops = {
    .kind = "failing",
    .append = t_append,
    .get = t_get,
    .del = t_del,
    .set = t_set,
    .drop = t_drop,
    .keys = t_keys,
    .destroy = t_destroy,
};

static PD__UNUSED t_fail *t_fail_open(void) {
    t_fail *f = calloc(1, sizeof *f);
    ck_assert_int_eq(pd__store_init(&f->base, &t_fail_ops), 0);
    ck_assert_int_eq(pd_dict_open(&f->inner), 0);
    return f;
}

#define M_KEYS 37
typedef struct s_model {
    char *data[M_KEYS];
    size_t len[M_KEYS], cap[M_KEYS];
} s_model;

static PD__UNUSED void s_model_add(s_model *m, int k, const char *v, size_t n) {
    if (m->len[k] + n > m->cap[k]) {
        m->cap[k] = (m->len[k] + n) * 2 + 16;
        m->data[k] = realloc(m->data[k], m->cap[k]);
    }
    memcpy(m->data[k] + m->len[k], v, n);
    m->len[k] += n;
}

static PD__UNUSED void s_model_check(s_model *m, pd_store *s) {
    uint64_t total = 0;
    for (int k = 0; k < M_KEYS; k++) {
        char name[16];
        snprintf(name, sizeof name, "key%d", k);
        tu_expect(s, PD_KEY_STR(name), m->data[k], m->len[k]);
        total += m->len[k];
    }
    ck_assert_uint_eq(s_held(s), total);
}

static PD__UNUSED void s_model_free(s_model *m) {
    for (int k = 0; k < M_KEYS; k++) free(m->data[k]);
}

static PD__UNUSED void s_random_workload(pd_store *b, pd_store *fast,
                                         uint64_t limit, int rounds,
                                         unsigned seed) {
    s_model m;
    memset(&m, 0, sizeof m);
    srand(seed);
    static char src[8192];
    for (size_t i = 0; i < sizeof src; i++) src[i] = (char)('a' + i % 26);
    char names[8][16];
    for (int r = 0; r < rounds; r++) {
        pd_key ks[8];
        pd_bytes vs[8];
        int n = 1 + rand() % 8;
        uint64_t batch = 0;
        int kidx[8];
        for (int i = 0; i < n; i++) {
            kidx[i] = rand() % M_KEYS;
            snprintf(names[i], sizeof names[i], "key%d", kidx[i]);
            size_t len = (size_t)(rand() % (rand() % 10 == 0 ? 3000 : 200));
            size_t off = (size_t)rand() % (sizeof src - len);
            ks[i] = PD_KEY_STR(names[i]);
            vs[i] = (pd_bytes){src + off, len};
            batch += len;
        }
        TU_OK(pd_append(b, (size_t)n, ks, vs, 0), b);
        for (int i = 0; i < n; i++)
            s_model_add(&m, kidx[i], vs[i].data, vs[i].size);
        uint64_t u = pd_buffer_memory_usage(b);
        /* Spilled after the append, as partd: at most the limit is left. */
        ck_assert_msg(u <= limit, "usage %llu > limit %llu (batch %llu)",
                      (unsigned long long)u, (unsigned long long)limit,
                      (unsigned long long)batch);
        if (fast) ck_assert_uint_eq(s_held(fast), u);
        if (r % 97 == 0) s_model_check(&m, b);
    }
    s_model_check(&m, b);
    s_model_free(&m);
}

/* ---------------------------------------------------------------- Threads */

#define S_THREADS 4
#define S_ROUNDS 4000

/* Threads on s: see tu_threads_own_shared; then s holds every record twice
 * (own and shared keys). */
static PD__UNUSED void s_threads_on(pd_store *s) {
    tu_threads_own_shared(s, S_THREADS, S_ROUNDS);
    ck_assert_uint_eq(s_held(s), 2ull * S_THREADS * S_ROUNDS * 9);
}

/* ------------------------------------------------------------------ File */

static PD__UNUSED pd_store *s_file_or_skip(const char *test) {
    pd_store *f = NULL;
    int rc = pd_file_open_temp(&f, NULL, 0);
    if (rc == PD_ERR_UNSUPPORTED) {
        fprintf(stderr, "%s: File store not available yet, skipped\n", test);
        return NULL;
    }
    ck_assert_msg(rc == 0, "file: %s", pd_errmsg(NULL));
    return f;
}

/* ---------------------------------------------------- PD_BUFFER_PRIVATE */

static PD__UNUSED size_t s_nkeys(pd_store *s) {
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(s, &kl, 0), s);
    size_t n = pd_keylist_count(kl);
    pd_keylist_free(&kl);
    return n;
}

/* With PD_BUFFER_PRIVATE, slow is read, listed and deleted from only for
 * keys the Buffer spilled; results are the same as without the flag. */

#endif
