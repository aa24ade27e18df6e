/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Concurrency: many C and Python writers on one File store while readers
 * check that every snapshot holds whole batches, in order, exactly once.
 */
#include "concfix.h"

/* ------------------------------------------------------- Many writers */

enum { NW = 8, NB = 400, NK = 16, MAXREC = NW * NB };

typedef struct wargs {
    const char *root;
    int w;
    int gofd; /* read end: EOF means go */
} wargs;

/* In a child: waits for the go (EOF on gofd), then opens the File store at
 * root. */
static pd_store *s_open_on_go(const char *root, int gofd) {
    char c;
    while (read(gofd, &c, 1) > 0) {}
    pd_store *s = NULL;
    int rc = pd_file_open(&s, root, 0);
    TU_CHECK(rc == 0, "open %s: %s", root, pd_errmsg(NULL));
    return s;
}

static int s_c_writer(void *arg) {
    wargs *a = arg;
    pd_store *s = s_open_on_go(a->root, a->gofd);
    /* Writers differ: some split each record into two values of the same
     * key within the batch, some hold pd_lock around the batch. */
    bool split = a->w % 3 == 1, locked = a->w % 2 == 1;
    pd_key keys[2 * NK];
    pd_bytes vals[2 * NK];
    char names[NK][8], recs[NK][48];
    for (int b = 0; b < NB; b++) {
        size_t n = 0;
        for (int k = 0; k < NK; k++) {
            snprintf(names[k], sizeof names[k], "k%d", k);
            int len =
                snprintf(recs[k], sizeof recs[k], "%d:%d:%d;", a->w, b, k);
            if (split) {
                keys[n] = PD_KEY_STR(names[k]);
                vals[n++] = PD_BYTES(recs[k], 2);
                keys[n] = PD_KEY_STR(names[k]);
                vals[n++] = PD_BYTES(recs[k] + 2, (size_t)len - 2);
            } else {
                keys[n] = PD_KEY_STR(names[k]);
                vals[n++] = PD_BYTES(recs[k], (size_t)len);
            }
        }
        if (locked) {
            TU_CHECK(pd_lock(s) == 0, "lock: %s", pd_errmsg(s));
            int rc = pd_append(s, n, keys, vals, PD_NOLOCK);
            TU_CHECK(rc == 0, "append: %s", pd_errmsg(s));
            TU_CHECK(pd_unlock(s) == 0, "unlock: %s", pd_errmsg(s));
        } else {
            int rc = pd_append(s, n, keys, vals, 0);
            TU_CHECK(rc == 0, "append: %s", pd_errmsg(s));
        }
    }
    TU_CHECK(pd_close(&s) == 0, "close: %s", pd_errmsg(NULL));
    return 0;
}

typedef struct rargs {
    const char *root;
    int stopfd; /* readable (EOF) when writers are done */
    int gofd;
} rargs;

/* Checks one snapshot of all keys: every key holds the same sequence of
 * (writer, batch) pairs, each writer's batches in order.  prev (the last
 * snapshot's sequence) must be a prefix of this one.  Returns the length. */
static long s_check_snapshot(pd_result *r, rec *seq, rec *tmp, long prevn,
                             char *why, size_t whycap) {
    long n0 = -1;
    for (int k = 0; k < NK; k++) {
        pd_bytes v = pd_result_value(r, (size_t)k);
        rec *dst = k == 0 ? seq : tmp;
        long n = s_parse(v.data, v.size, k, dst, MAXREC, why, whycap);
        if (n < 0) return -1;
        if (k == 0) {
            n0 = n;
            continue;
        }
        if (n != n0 || memcmp(seq, tmp, (size_t)n * sizeof *seq) != 0) {
            long i = 0;
            while (i < n && i < n0 && seq[i].w == tmp[i].w &&
                   seq[i].b == tmp[i].b)
                i++;
            snprintf(why, whycap,
                     "key k%d holds %ld records, k0 %ld; first difference at "
                     "record %ld: a get saw part of a batch",
                     k, n, n0, i);
            return -1;
        }
    }
    int last[NW];
    for (int w = 0; w < NW; w++) last[w] = -1;
    for (long i = 0; i < n0; i++) {
        rec x = seq[i];
        if (x.w < 0 || x.w >= NW || x.b != last[x.w] + 1) {
            snprintf(why, whycap, "record %ld is %d:%d, writer's last was %d",
                     i, x.w, x.b, x.w >= 0 && x.w < NW ? last[x.w] : -9);
            return -1;
        }
        last[x.w] = x.b;
    }
    if (n0 < prevn) {
        snprintf(why, whycap, "snapshot shrank from %ld to %ld records", prevn,
                 n0);
        return -1;
    }
    return n0;
}

static int s_reader(void *arg) {
    rargs *a = arg;
    pd_store *s = s_open_on_go(a->root, a->gofd);
    rec *seq = calloc(MAXREC, sizeof *seq), *tmp = calloc(MAXREC, sizeof *tmp),
        *prev = calloc(MAXREC, sizeof *prev);
    pd_key keys[NK];
    char names[NK][8];
    s_knames(NK, names, keys);
    long prevn = 0, snaps = 0, nonempty = 0;
    char why[512];
    for (;;) {
        struct pollfd pf = {a->stopfd, POLLIN, 0};
        bool last = poll(&pf, 1, 0) > 0;
        pd_result *r = NULL;
        int rc = pd_get(s, NK, keys, &r, 0);
        TU_CHECK(rc == 0, "get: %s", pd_errmsg(s));
        long n = s_check_snapshot(r, seq, tmp, prevn, why, sizeof why);
        TU_CHECK(n >= 0, "snapshot %ld: %s", snaps, why);
        TU_CHECK(memcmp(prev, seq, (size_t)prevn * sizeof *seq) == 0,
                 "snapshot %ld does not extend the previous one", snaps);
        memcpy(prev, seq, (size_t)n * sizeof *seq);
        prevn = n;
        snaps++;
        nonempty += n > 0 && n < MAXREC;
        pd_result_free(&r);
        if (last) break;
    }
    TU_CHECK(prevn == MAXREC, "final snapshot has %ld records, want %d", prevn,
             MAXREC);
    fprintf(stderr, "reader: %ld snapshots, %ld taken mid-run\n", snaps,
            nonempty);
    free(seq);
    free(tmp);
    free(prev);
    pd_close(&s);
    return 0;
}

START_TEST(many_writers) {
    tu_tmp t;
    tu_tmp_make(&t);
    pd_store *s = NULL;
    TU_OK(pd_file_open(&s, t.root, PD_FILE_CREATE), NULL);

    bool py = tu_have_python_partd();
    if (!py)
        fprintf(stderr,
                "many_writers: SKIP python writers (/usr/bin/python3 "
                "cannot import partd); using %d C writers\n",
                NW);
    int go[2], stop[2];
    ck_assert_int_eq(pipe(go), 0);
    ck_assert_int_eq(pipe(stop), 0);
    g_child_close[0] = go[1];
    g_child_close[1] = stop[1];
    g_nchild_close = 2;
    tu_child kids[NW + 1];
    pid_t pyk[NW];
    int npy = 0;
    wargs wa[NW];
    for (int w = 0; w < NW; w++) {
        wa[w] = (wargs){t.root, w, go[0]};
        if (py && w >= NW - 2) {
            char ws[16], nb[16], nk[16], gfd[16];
            snprintf(ws, sizeof ws, "%d", w);
            snprintf(nb, sizeof nb, "%d", NB);
            snprintf(nk, sizeof nk, "%d", NK);
            snprintf(gfd, sizeof gfd, "%d", go[0]);
            pyk[npy++] = s_spawn_py(-1, go[0], "writer.py", t.root, ws, nb, nk,
                                    gfd, (char *)NULL);
            kids[w].pid = -1;
        } else {
            kids[w] = s_spawn(s_c_writer, &wa[w]);
        }
    }
    rargs ra = {t.root, stop[0], go[0]};
    kids[NW] = s_spawn(s_reader, &ra);
    close(stop[0]);
    close(go[0]);
    double t0 = s_now();
    g_nchild_close = 0;
    close(go[1]); /* go */
    for (int w = 0; w < NW; w++)
        if (kids[w].pid > 0) s_wait_ok(kids[w], "C writer");
    for (int i = 0; i < npy; i++) {
        int st = tu_waitpid(pyk[i]);
        ck_assert_msg(st == 0, "python writer exited with %d", st);
    }
    double t1 = s_now();
    close(stop[1]);
    s_wait_ok(kids[NW], "reader");
    fprintf(stderr,
            "many_writers: %d writers x %d batches x %d keys in %.2fs\n", NW,
            NB, NK, t1 - t0);

    /* Final content: every record exactly once, contiguous, in order. */
    pd_key keys[NK];
    char names[NK][8];
    s_knames(NK, names, keys);
    pd_result *r = NULL;
    TU_OK(pd_get(s, NK, keys, &r, 0), s);
    rec *seq = calloc(MAXREC, sizeof *seq), *tmp = calloc(MAXREC, sizeof *tmp);
    char why[512];
    long n = s_check_snapshot(r, seq, tmp, 0, why, sizeof why);
    ck_assert_msg(n >= 0, "final: %s", why);
    ck_assert_int_eq(n, MAXREC);
    int count[NW] = {0};
    for (long i = 0; i < n; i++) count[seq[i].w]++;
    for (int w = 0; w < NW; w++)
        ck_assert_msg(count[w] == NB, "writer %d: %d records, want %d", w,
                      count[w], NB);
    pd_result_free(&r);
    free(seq);
    free(tmp);
    pd_close(&s);
    tu_tmp_remove(&t);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"many_writers", many_writers},
    };
    return TU_RUN_CASES("test_concurrency_writers", cases, 120, 0);
}
