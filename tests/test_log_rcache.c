/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The Log's read-ahead windows (src/log/rcache.c): partitions of an
 * uncompacted Log read in order are served from windows (counted preads
 * show it), and a handle reading that way sees every append, delete, iset
 * and compaction another process completed before its get.
 */
#include "logfix.h"

enum { NP = 400, NB = 6 }; /* partitions; batches per writer run */

/* ------------------------------------------------------------ Counting */

static long s_preads;
static ssize_t c_pread(int fd, void *buf, size_t n, off_t off) {
    __atomic_add_fetch(&s_preads, 1, __ATOMIC_RELAXED);
    return pread(fd, buf, n, off);
}

/* ------------------------------------------------------------- Writers */

typedef struct job {
    const char *root;
    int what; /* 0 append batches, 1 delete+iset, 2 compact */
    int tag;  /* batches are tagged, to tell runs apart */
} job;

static void s_val(char *out, size_t cap, int tag, int b, int p) {
    snprintf(out, cap, "t%d.b%d.p%d;", tag, b, p);
}

/* NB batches, each one record holding every partition (a map task). */
static void s_batches(pd_store *s, int tag) {
    static pd_key keys[NP];
    static pd_bytes vals[NP];
    static char names[NP][16], bytes[NP][32];
    for (int b = 0; b < NB; b++) {
        for (int p = 0; p < NP; p++) {
            snprintf(names[p], sizeof names[p], "p%04d", p);
            s_val(bytes[p], sizeof bytes[p], tag, b, p);
            keys[p] = PD_KEY(names[p], strlen(names[p]));
            vals[p] = PD_BYTES(bytes[p], strlen(bytes[p]));
        }
        int rc = pd_append(s, NP, keys, vals, 0);
        TU_CHECK(rc == 0, "append: %s", pd_errmsg(s));
    }
}

static int s_job(void *arg) {
    const job *j = arg;
    pd_store *s = fx_child_open(j->root);
    if (j->what == 0) {
        s_batches(s, j->tag);
    } else if (j->what == 1) {
        pd_key d = K("p0005"), k = K("p0006");
        pd_bytes v = V("replaced;");
        TU_CHECK(pd_delete(s, 1, &d, 0) == 0, "delete: %s", pd_errmsg(s));
        TU_CHECK(pd_iset(s, 1, &k, &v, 0) == 0, "iset: %s", pd_errmsg(s));
    } else {
        TU_CHECK(pd_log_compact(s, 0) == 0, "compact: %s", pd_errmsg(s));
    }
    TU_CHECK(pd_close(&s) == 0, "close: %s", pd_errmsg(NULL));
    return 0;
}

/* Runs a job in another process, to its end. */
static void s_run(const char *root, int what, int tag) {
    job j = {root, what, tag};
    tu_child c = tu_child_spawn(s_job, &j, NULL, 0);
    char msg[2048];
    ck_assert_msg(tu_child_wait(c, msg, sizeof msg) == 0, "child: %s", msg);
}

/* What each partition should hold: the model the reads are checked
 * against. */
static char *s_model[NP];

static void s_model_append(int tag) {
    for (int b = 0; b < NB; b++)
        for (int p = 0; p < NP; p++) {
            char v[32];
            s_val(v, sizeof v, tag, b, p);
            size_t n = s_model[p] ? strlen(s_model[p]) : 0;
            s_model[p] = realloc(s_model[p], n + strlen(v) + 1);
            ck_assert_ptr_nonnull(s_model[p]);
            memcpy(s_model[p] + n, v, strlen(v) + 1);
        }
}

static void s_model_set(int p, const char *v) {
    free(s_model[p]);
    s_model[p] = strdup(v);
    ck_assert_ptr_nonnull(s_model[p]);
}

static void s_model_free(void) {
    for (int p = 0; p < NP; p++) {
        free(s_model[p]);
        s_model[p] = NULL;
    }
}

/* Reads every partition in order, checks it against the model; the preads
 * it took. */
static long s_read_all(pd_store *s) {
    long before = __atomic_load_n(&s_preads, __ATOMIC_RELAXED);
    for (int p = 0; p < NP; p++) {
        char name[16];
        snprintf(name, sizeof name, "p%04d", p);
        tu_expect_as(s, K(name), s_model[p] ? s_model[p] : "", name);
    }
    return __atomic_load_n(&s_preads, __ATOMIC_RELAXED) - before;
}

START_TEST(in_order_reads_use_windows_and_see_others) {
    fx f;
    pd_store *s = fx_start(&f);
    pd__sys_table.pread = c_pread;
    /* The reader holds its handle open: the writers' closes do not
     * compact, so partitions stay in NB small extents per run. */
    s_run(f.root, 0, 1);
    s_model_append(1);
    long n = s_read_all(s);
    /* NP x NB extents: a pread each without the windows; with them about
     * one per batch, plus the catch-up's. */
    ck_assert_msg(n < NP * NB / 8, "%ld preads for %d extents", n, NP * NB);
    n = s_read_all(s); /* read again: the windows still hold them */
    ck_assert_msg(n < NP * NB / 8, "again: %ld preads", n);

    /* Another process appends: every get sees it (extents past the end the
     * windows were cut at). */
    s_run(f.root, 0, 2);
    s_model_append(2);
    s_read_all(s);

    /* Another process deletes one partition and replaces another. */
    s_run(f.root, 1, 0);
    s_model_set(5, "");
    s_model_set(6, "replaced;");
    s_read_all(s);

    /* Another process compacts (the segments the windows came from are
     * removed), then appends again. */
    s_run(f.root, 2, 0);
    s_read_all(s);
    s_run(f.root, 0, 3);
    s_model_append(3);
    s_read_all(s);
    s_read_all(s);

    /* This handle appends between reads of the same windows. */
    for (int round = 4; round < 6; round++) {
        s_batches(s, round);
        s_model_append(round);
        s_read_all(s);
    }
    TU_OK(pd_close(&s), NULL);
    /* Reopened (compacted by that close): the same. */
    s = fx_open(&f);
    s_read_all(s);
    TU_OK(pd_close(&s), NULL);
    s_model_free();
    fx_done(&f);
}
END_TEST

/* Reads that windows do not help (keys in a scattered order over many
 * batches) stop reading windows: about a pread per extent, and the same
 * values. */
START_TEST(scattered_reads_stop_using_windows) {
    fx f;
    pd_store *s = fx_start(&f);
    pd__sys_table.pread = c_pread;
    enum { NK = 64, NR = 512 };
    /* NR records of 8 keys of 4 KiB (16 MiB, more than the windows hold):
     * a key's extents lie far apart. */
    static char val[4096];
    for (int r = 0; r < NR; r++) {
        pd_key ks[8];
        pd_bytes vs[8];
        char names[8][16];
        for (int i = 0; i < 8; i++) {
            snprintf(names[i], sizeof names[i], "k%03d", (r * 8 + i * 7) % NK);
            ks[i] = PD_KEY(names[i], strlen(names[i]));
            memset(val, 'a' + (r + i) % 26, sizeof val);
            vs[i] = PD_BYTES(val, sizeof val);
        }
        TU_OK(pd_append(s, 8, ks, vs, 0), s);
    }
    pd_store *rd = fx_open(&f);
    size_t total = 0;
    long before = __atomic_load_n(&s_preads, __ATOMIC_RELAXED);
    for (int round = 0; round < 2; round++)
        for (int k = 0; k < NK; k++) {
            char name[16];
            snprintf(name, sizeof name, "k%03d", (k * 37) % NK);
            pd_result *res = NULL;
            TU_OK(pd_get(rd, 1, &K(name), &res, 0), rd);
            total += pd_result_value(res, 0).size;
            pd_result_free(&res);
        }
    ck_assert_uint_eq(total, 2u * NR * 8 * sizeof val);
    /* 2 x NR x 8 extents: past the windows' trial, most read directly. */
    long n = __atomic_load_n(&s_preads, __ATOMIC_RELAXED) - before;
    ck_assert_msg(n > NR * 8, "%ld preads for %d extents", n, 2 * NR * 8);
    TU_OK(pd_close(&rd), NULL);
    fx_end(&f, &s);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"in_order_reads_use_windows_and_see_others",
         in_order_reads_use_windows_and_see_others},
        {"scattered_reads_stop_using_windows",
         scattered_reads_stop_using_windows},
    };
    return TU_RUN_CASES("test_log_rcache", cases, 120, 0);
}
