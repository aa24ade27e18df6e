/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The store contract over every stack: locking, misuse, closing and
 * reopening (the stacks and the model: confix.h). */
#include "confix.h"

/* ----------------------------------------------------------------- Tests */

START_TEST(lock_unlock) {
    cf_fix f;
    s_open(&f, _i);
    pd_key k = K("lk");
    pd_bytes v = V("x");
    TU_OK(pd_lock(f.s), f.s);
    TU_OK(pd_lock(f.s), f.s);
    if (REMOTE(&f)) {
        /* partd/zmq.h: pd_lock on a client only serialises this handle's
         * calls; the served store is not locked, so another client of the
         * same server is not held up (its write lands before ours). */
        pd_client_opts co = {0};
        co.timeout_ms = s_client_timeout();
        co.flags = PD_CLIENT_SYNC;
        pd_store *other = NULL;
        TU_OK(pd_client_open(&other, pd_server_address(f.srv, 0), &co), NULL);
        pd_bytes o = V("o");
        TU_OK(pd_append(other, 1, &k, &o, 0), other);
        TU_OK(pd_close(&other), NULL);
        s_expect(&f, k, "o");
        TU_OK(pd_delete(f.s, 1, &k, 0), f.s);
    }
    TU_OK(pd_append(f.s, 1, &k, &v, PD_NOLOCK), f.s);
    TU_OK(pd_append(f.s, 1, &k, &v, 0), f.s);
    pd_result *r = NULL;
    TU_OK(pd_get(f.s, 1, &k, &r, PD_NOLOCK), f.s);
    ck_assert_uint_eq(pd_result_value(r, 0).size, 2);
    pd_result_free(&r);
    TU_OK(pd_get(f.s, 1, &k, &r, 0), f.s);
    pd_result_free(&r);
    TU_OK(pd_iset(f.s, 1, &k, &v, PD_NOLOCK), f.s);
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(f.s, &kl, PD_NOLOCK), f.s);
    pd_keylist_free(&kl);
    TU_OK(pd_delete(f.s, 1, &k, PD_NOLOCK), f.s);
    TU_OK(pd_drop(f.s, PD_NOLOCK), f.s);
    TU_OK(pd_unlock(f.s), f.s);
    TU_OK(pd_unlock(f.s), f.s);
    int rc = pd_unlock(f.s);
    ck_assert_int_eq(rc, PD_ERR_MISUSE);
    ck_assert_int_eq(pd_errcode(f.s), PD_ERR_MISUSE);
    ck_assert_msg(strstr(pd_errmsg(f.s), "unlock") != NULL, "[%s] message: %s",
                  NAME(&f), pd_errmsg(f.s));
    /* Usable afterwards, and errors are cleared by the next success. */
    TU_OK(pd_append(f.s, 1, &k, &v, 0), f.s);
    ck_assert_str_eq(pd_errmsg(f.s), "ok");
    ck_assert_int_eq(pd_errcode(f.s), 0);
    s_expect(&f, k, "x");
    s_close(&f);
}
END_TEST

#define MISUSE(expr, code, op)                                                 \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        ck_assert_msg(rc_ == (code), "[%s] %s -> %d, want %d (%s)", NAME(&f),  \
                      #expr, rc_, (code), pd_errmsg(f.s));                     \
        ck_assert_int_eq(pd_errcode(f.s), (code));                             \
        const char *m_ = pd_errmsg(f.s);                                       \
        ck_assert_msg(m_ &&*m_ &&strcmp(m_, "ok") && strstr(m_, op),           \
                      "[%s] %s: message '%s' does not name '%s'", NAME(&f),    \
                      #expr, m_ ? m_ : "(null)", op);                          \
    } while (0)

#define MISUSE_NULL(expr, op)                                                  \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        ck_assert_int_eq(rc_, PD_ERR_MISUSE);                                  \
        const char *m_ = pd_errmsg(NULL);                                      \
        ck_assert_msg(m_ &&strstr(m_, op), "%s: message '%s'", #expr, m_);     \
    } while (0)

START_TEST(misuse) {
    cf_fix f;
    s_open(&f, _i);
    pd_key k = K("m");
    pd_bytes v = V("v");
    pd_result *r = NULL;
    pd_keylist *kl = NULL;
    tu_append1(f.s, k, "keep", 4);

    /* NULL store. */
    MISUSE_NULL(pd_append(NULL, 1, &k, &v, 0), "append");
    MISUSE_NULL(pd_get(NULL, 1, &k, &r, 0), "get");
    ck_assert_ptr_null(r);
    MISUSE_NULL(pd_delete(NULL, 1, &k, 0), "delete");
    MISUSE_NULL(pd_iset(NULL, 1, &k, &v, 0), "iset");
    MISUSE_NULL(pd_drop(NULL, 0), "drop");
    MISUSE_NULL(pd_keys(NULL, &kl, 0), "keys");
    MISUSE_NULL(pd_lock(NULL), "lock");
    MISUSE_NULL(pd_unlock(NULL), "unlock");
    ck_assert_int_eq(pd_close(NULL), 0);
    ck_assert_str_eq(pd_store_kind(NULL), "(null)");

    /* NULL arrays with n > 0. */
    MISUSE(pd_append(f.s, 1, NULL, &v, 0), PD_ERR_MISUSE, "append");
    MISUSE(pd_append(f.s, 1, &k, NULL, 0), PD_ERR_MISUSE, "append");
    MISUSE(pd_get(f.s, 2, NULL, &r, 0), PD_ERR_MISUSE, "get");
    ck_assert_ptr_null(r);
    MISUSE(pd_get(f.s, 1, &k, NULL, 0), PD_ERR_MISUSE, "get");
    MISUSE(pd_delete(f.s, 1, NULL, 0), PD_ERR_MISUSE, "delete");
    MISUSE(pd_iset(f.s, 1, NULL, &v, 0), PD_ERR_MISUSE, "iset");
    MISUSE(pd_iset(f.s, 1, &k, NULL, 0), PD_ERR_MISUSE, "iset");
    MISUSE(pd_keys(f.s, NULL, 0), PD_ERR_MISUSE, "keys");
    pd_bytes badv = {NULL, 5};
    MISUSE(pd_append(f.s, 1, &k, &badv, 0), PD_ERR_MISUSE, "append");
    pd_key badk = PD_KEY(NULL, 3);
    MISUSE(pd_append(f.s, 1, &badk, &v, 0), PD_ERR_MISUSE, "append");
    pd_key badt = PD_KEY_TUPLE(NULL, 2);
    MISUSE(pd_get(f.s, 1, &badt, &r, 0), PD_ERR_MISUSE, "get");
    pd_bytes badparts[] = {V("a"), {NULL, 2}};
    pd_key badt2 = PD_KEY_TUPLE(badparts, 2);
    MISUSE(pd_delete(f.s, 1, &badt2, 0), PD_ERR_MISUSE, "delete");

    /* Unknown flag bits. */
    unsigned bad = 0x80u;
    MISUSE(pd_append(f.s, 1, &k, &v, bad), PD_ERR_MISUSE, "append");
    MISUSE(pd_get(f.s, 1, &k, &r, bad), PD_ERR_MISUSE, "get");
    MISUSE(pd_get(f.s, 1, &k, &r, PD_FSYNC), PD_ERR_MISUSE, "get");
    MISUSE(pd_delete(f.s, 1, &k, bad), PD_ERR_MISUSE, "delete");
    MISUSE(pd_iset(f.s, 1, &k, &v, bad), PD_ERR_MISUSE, "iset");
    MISUSE(pd_drop(f.s, bad), PD_ERR_MISUSE, "drop");
    MISUSE(pd_keys(f.s, &kl, bad), PD_ERR_MISUSE, "keys");
    MISUSE(pd_append(f.s, 0, NULL, NULL, 0x8000000u), PD_ERR_MISUSE, "append");

    /* Keys past the limits. */
    char *huge = calloc(1, PD_KEY_MAX + 1);
    pd_key hk = PD_KEY(huge, PD_KEY_MAX + 1);
    MISUSE(pd_append(f.s, 1, &hk, &v, 0), PD_ERR_LIMIT, "append");
    MISUSE(pd_get(f.s, 1, &hk, &r, 0), PD_ERR_LIMIT, "get");
    MISUSE(pd_delete(f.s, 1, &hk, 0), PD_ERR_LIMIT, "delete");
    MISUSE(pd_iset(f.s, 1, &hk, &v, 0), PD_ERR_LIMIT, "iset");
    pd_bytes hp[] = {{huge, PD_KEY_MAX / 2 + 1}, {huge, PD_KEY_MAX / 2}};
    pd_key hk2 = PD_KEY_TUPLE(hp, 2);
    MISUSE(pd_append(f.s, 1, &hk2, &v, 0), PD_ERR_LIMIT, "append");
    pd_bytes many[PD_KEY_MAX_PARTS + 1];
    for (int i = 0; i <= PD_KEY_MAX_PARTS; i++) many[i] = V("p");
    pd_key mk = PD_KEY_TUPLE(many, PD_KEY_MAX_PARTS + 1);
    MISUSE(pd_append(f.s, 1, &mk, &v, 0), PD_ERR_LIMIT, "append");
    MISUSE(pd_get(f.s, 1, &mk, &r, 0), PD_ERR_LIMIT, "get");
    /* A bad key late in a batch: nothing of the batch is applied. */
    pd_key mixed[] = {k, hk};
    pd_bytes mv[] = {v, v};
    MISUSE(pd_append(f.s, 2, mixed, mv, 0), PD_ERR_LIMIT, "append");
    s_expect(&f, k, "keep");
    /* At the limits exactly: fine (over the wire too, where the joined
     * form of a tuple is longer than PD_KEY_MAX). */
    pd_key mk64 = PD_KEY_TUPLE(many, PD_KEY_MAX_PARTS);
    memset(huge, 'h', PD_KEY_MAX);
    pd_bytes halves[] = {{huge, PD_KEY_MAX / 2}, {huge, PD_KEY_MAX / 2}};
    pd_key hk2max = PD_KEY_TUPLE(halves, 2);
    if (NSBYTES(&f)) {
        /* partd.h (Namespace): the name is one more part and its bytes;
         * keys at the limits are refused naming the key, one part or the
         * name's bytes less fit. */
        MISUSE(pd_append(f.s, 1, &mk64, &v, 0), PD_ERR_KEY, "('p', 'p'");
        MISUSE(pd_append(f.s, 1, &hk2max, &v, 0), PD_ERR_KEY, "('hhh");
        mk64.nparts--;
        halves[1].size -= NSBYTES(&f);
    }
    TU_OK(pd_append(f.s, 1, &mk64, &v, 0), f.s);
    s_expect(&f, mk64, "v");
    TU_OK(pd_append(f.s, 1, &hk2max, &v, 0), f.s);
    s_expect(&f, hk2max, "v");
    free(huge);
    if (WIRE(&f)) {
        /* Over the wire only: a request carries at most PD__WIRE_MAX_KEYS
         * keys (zmq_internal.h; partd/zmq.h does not say so), and the
         * Client refuses a larger batch with PD_ERR_LIMIT before sending
         * it.  Local stores take any n; nothing is applied. */
        size_t nk = PD__WIRE_MAX_KEYS + 1;
        pd_key *lots = malloc(nk * sizeof *lots);
        pd_bytes *lv = malloc(nk * sizeof *lv);
        ck_assert(lots && lv);
        for (size_t i = 0; i < nk; i++) {
            lots[i] = k;
            lv[i] = v;
        }
        MISUSE(pd_get(f.s, nk, lots, &r, 0), PD_ERR_LIMIT, "get");
        ck_assert_ptr_null(r);
        MISUSE(pd_append(f.s, nk, lots, lv, 0), PD_ERR_LIMIT, "append");
        MISUSE(pd_delete(f.s, nk, lots, 0), PD_ERR_LIMIT, "delete");
        /* (pd_iset would send this batch as the one key it repeats.) */
        free(lots);
        free(lv);
    }

    /* Unlock without lock. */
    MISUSE(pd_unlock(f.s), PD_ERR_MISUSE, "unlock");
    /* After all that the store still works and the data is intact. */
    s_expect(&f, k, "keep");
    tu_append1(f.s, k, "!", 1);
    s_expect(&f, k, "keep!");
    ck_assert_str_eq(pd_errmsg(f.s), "ok");
    s_close(&f);
}
END_TEST

START_TEST(close_twice) {
    cf_fix f;
    s_open(&f, _i);
    tu_append1(f.s, K("c"), "data", 4);
    const char *kind = pd_store_kind(f.s);
    ck_assert(kind && *kind);
    if (REMOTE(&f)) ck_assert_str_eq(kind, "client");
    if (f.served) {
        /* A borrowed store outlives the client and the server (which
         * flushed it and released its lock): usable from this thread, with
         * what the client wrote. */
        pd_store *served = f.served;
        f.served = NULL; /* s_close_remote must leave it open */
        s_close_remote(&f, NAME(&f));
        tu_expect_str(served, K("c"), "data");
        tu_append1(served, K("c"), "!", 1);
        tu_expect_str(served, K("c"), "data!");
        TU_OK(pd_close(&served), NULL);
    }
    /* Checks nulling and a second close (of the client and the server,
     * for client stacks; closing them again, when closed above, is safe). */
    s_close(&f);
    pd_store *s = NULL;
    ck_assert_int_eq(pd_close(&s), 0);
    ck_assert_int_eq(pd_close(NULL), 0);
}
END_TEST

/* Data survives close and reopen for File-only stacks (non-temp), and for
 * client(server(...)) stacks over a File root: the client and the server
 * are closed (the server flushes its store), and a new server over the
 * same directory serves a new client. */
START_TEST(reopen_persists) {
    cf_fix f;
    s_open(&f, _i);
    bool remote = REMOTE(&f) && s_stacks[_i].persists;
    bool log = strcmp(pd_store_kind(f.s), "log") == 0;
    if (!remote && (!f.parent || f.temp ||
                    (strcmp(pd_store_kind(f.s), "file") != 0 && !log))) {
        s_close(&f);
        return;
    }
    pd_bytes tp[] = {V("t"), V("\x01/..")};
    pd_key ks[] = {K("p"), PD_KEY_TUPLE(tp, 2), PD_KEY("\0", 1)};
    pd_bytes vs[] = {V("1"), V("2"), V("3")};
    TU_OK(pd_append(f.s, 3, ks, vs, 0), f.s);
    if (remote) {
        s_close_remote(&f, NAME(&f));
        int rc = s_open_remote(&f, s_stacks[_i].served, s_stacks[_i].borrow,
                               true, NAME(&f));
        ck_assert_msg(rc == 0, "[%s] reopen -> %d: %s", NAME(&f), rc,
                      pd_errmsg(NULL));
        /* Appends after the reopen go after the old data. */
        tu_append1(f.s, ks[0], "+", 1);
        s_expect(&f, ks[0], "1+");
    } else {
        TU_OK(pd_close(&f.s), NULL);
        if (log)
            TU_OK(pd_log_open(&f.s, f.root, 0), NULL);
        else
            TU_OK(pd_file_open(&f.s, f.root, 0), NULL);
        s_expect(&f, ks[0], "1");
    }
    s_expect(&f, ks[1], "2");
    s_expect(&f, ks[2], "3");
    s_close(&f);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"lock_unlock", lock_unlock},
        {"misuse", misuse},
        {"close_twice", close_twice},
        {"reopen_persists", reopen_persists},
    };
    return TU_RUN_CASES("test_conformance_life", cases, 60, NSTACKS);
}
