/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The Log's index hint (src/log/index.c): a record whose keys follow the
 * previous record's order reuses its keys without a lookup.  Records of one
 * order many times, then changed orders, keys removed and added mid-run,
 * records each lacking some keys, deletes and isets, compactions and drops
 * under a reader that keeps reading, another process appending in another
 * order, committed attempts: every key is checked against its exact
 * expected bytes after each step.
 */
#include "logfix.h"

enum { NU = 320 }; /* keys in the universe */

/* Key i: every fifth a 2-tuple ("t", "k<i>"), the others flat "k<i>" (keys
 * of several lengths, some prefixes of others). */
static char s_names[NU][16];
static pd_bytes s_tparts[NU][2];

static pd_key s_key(int i) {
    snprintf(s_names[i], sizeof s_names[i], "k%d", i);
    if (i % 5 == 0) {
        s_tparts[i][0] = PD_BYTES("t", 1);
        s_tparts[i][1] = PD_BYTES(s_names[i], strlen(s_names[i]));
        return (pd_key)PD_KEY_TUPLE(s_tparts[i], 2);
    }
    return (pd_key)PD_KEY(s_names[i], strlen(s_names[i]));
}

/* What each key should hold. */
static char *s_model[NU];

static void s_model_add(int i, const char *v) {
    size_t n = s_model[i] ? strlen(s_model[i]) : 0;
    char *m = realloc(s_model[i], n + strlen(v) + 1);
    ck_assert_ptr_nonnull(m);
    memcpy(m + n, v, strlen(v) + 1);
    s_model[i] = m;
}

static void s_model_set(int i, const char *v) {
    free(s_model[i]);
    s_model[i] = v ? strdup(v) : NULL;
    ck_assert(!v || s_model[i]);
}

static void s_model_free(void) {
    for (int i = 0; i < NU; i++) s_model_set(i, NULL);
}

static void s_val(char *out, size_t cap, int tag, int i) {
    snprintf(out, cap, "r%d.k%d;", tag, i);
}

/* One record: the n keys order[0..n) with values tagged `tag`.  The model
 * follows when model is set (not in a child). */
static void s_rec(pd_store *s, const int *order, int n, int tag, bool model) {
    static pd_key keys[NU];
    static pd_bytes vals[NU];
    static char bytes[NU][32];
    for (int j = 0; j < n; j++) {
        keys[j] = s_key(order[j]);
        s_val(bytes[j], sizeof bytes[j], tag, order[j]);
        vals[j] = PD_BYTES(bytes[j], strlen(bytes[j]));
    }
    TU_CHECK(pd_append(s, (size_t)n, keys, vals, 0) == 0, "append %d: %s", tag,
             pd_errmsg(s));
    if (model)
        for (int j = 0; j < n; j++) s_model_add(order[j], bytes[j]);
}

/* Every key of the universe holds exactly its model. */
static void s_check(pd_store *s, const char *when) {
    for (int i = 0; i < NU; i++) {
        char what[96];
        snprintf(what, sizeof what, "%s: key %d", when, i);
        tu_expect_as(s, s_key(i), s_model[i] ? s_model[i] : "", what);
    }
}

/* Orders: 0..n-1 ascending, descending, rotated. */
static int s_up[NU], s_down[NU], s_rot[NU];

static void s_orders(void) {
    for (int i = 0; i < NU; i++) {
        s_up[i] = i;
        s_down[i] = NU - 1 - i;
        s_rot[i] = (i + 7) % NU;
    }
}

/* Closes reader r, checks that a new handle reads it all in one catch-up,
 * and ends the fixture (writer w). */
static void s_finish(fx *f, pd_store **w, pd_store **r) {
    TU_OK(pd_close(r), NULL);
    *r = fx_open(f);
    s_check(*r, "reopened");
    TU_OK(pd_close(r), NULL);
    fx_end(f, w);
    s_model_free();
}

START_TEST(same_order_then_changes) {
    fx f;
    s_orders();
    pd_store *w = fx_start(&f), *r = fx_open(&f);
    int tag = 0;
    /* Many records of one order, read in one catch-up and one at a time. */
    for (int b = 0; b < 12; b++) s_rec(w, s_up, NU - 20, tag++, true);
    s_check(r, "12 records");
    for (int b = 0; b < 4; b++) {
        s_rec(w, s_up, NU - 20, tag++, true);
        s_check(r, "one more");
    }
    /* Changed orders: reversed, rotated, back. */
    s_rec(w, s_down, NU, tag++, true);
    s_check(r, "reversed");
    s_rec(w, s_rot, NU, tag++, true);
    s_rec(w, s_up, NU, tag++, true);
    s_check(r, "rotated, ascending");
    /* Two neighbours swapped (keys of one length at each other's place). */
    int sw[NU];
    memcpy(sw, s_up, sizeof sw);
    sw[41] = 42;
    sw[42] = 41;
    s_rec(w, sw, NU, tag++, true);
    s_rec(w, s_up, NU, tag++, true);
    s_check(r, "swapped");
    /* A key removed mid-run (the rest move up a place), then added back;
     * then one inserted where another was (k1 before k10, a prefix). */
    int rm[NU], n = 0;
    for (int i = 0; i < NU; i++)
        if (i != 100) rm[n++] = i;
    for (int b = 0; b < 3; b++) s_rec(w, rm, n, tag++, true);
    s_check(r, "key 100 left out");
    s_rec(w, s_up, NU, tag++, true);
    s_check(r, "key 100 back");
    /* A new key inserted mid-order (the rest move down a place). */
    int ins[NU];
    n = 0;
    for (int i = 0; i < NU - 1; i++) {
        if (i == 50) ins[n++] = NU - 1;
        ins[n++] = i;
    }
    ck_assert_int_eq(n, NU);
    s_rec(w, ins, n, tag++, true);
    s_rec(w, ins, n, tag++, true);
    s_check(r, "key added at 50");
    /* Fewer keys, then more again: the hint is shorter than the record. */
    s_rec(w, s_up, 8, tag++, true);
    s_rec(w, s_up, NU, tag++, true);
    s_check(r, "8 keys, then all");
    /* The writer's own handle reads the same. */
    s_check(w, "writer");
    s_finish(&f, &w, &r);
}
END_TEST

/* Records each lacking some keys (a shuffle call where a partition got no
 * value), some runs of them longer than the hint looks past, then all. */
START_TEST(records_lacking_keys) {
    fx f;
    s_orders();
    pd_store *w = fx_start(&f), *r = fx_open(&f);
    unsigned x = 12345;
    for (int tag = 0; tag < 30; tag++) {
        int order[NU], n = 0;
        for (int i = 0; i < NU; i++) {
            x = x * 1103515245u + 12345u;
            bool run = tag % 7 == 3 && i >= 100 && i < 100 + tag; /* a run */
            if (run || (tag % 5 != 0 && (x >> 16) % 9 == 0)) continue;
            order[n++] = i;
        }
        s_rec(w, order, n, tag, true);
        if (tag % 4 == 3) s_check(r, "lacking keys");
    }
    s_rec(w, s_up, NU, 30, true);
    s_check(r, "all again");
    s_finish(&f, &w, &r);
}
END_TEST

START_TEST(deletes_and_isets_between) {
    fx f;
    s_orders();
    pd_store *w = fx_start(&f), *r = fx_open(&f);
    int tag = 0;
    for (int round = 0; round < 4; round++) {
        s_rec(w, s_up, NU, tag++, true);
        s_rec(w, s_up, NU, tag++, true);
        if (round % 2) s_check(r, "appended");
        /* Delete a few keys and replace others (keys not iset by this
         * handle before: an iset is idempotent), then the same order. */
        pd_key d[3] = {s_key(3 + round), s_key(50 + round), s_key(NU - 1)};
        TU_OK(pd_delete(w, 3, d, 0), w);
        s_model_set(3 + round, NULL);
        s_model_set(50 + round, NULL);
        s_model_set(NU - 1, NULL);
        pd_key k[2] = {s_key(7 + round), s_key(200 + round)};
        char v0[32], v1[32];
        snprintf(v0, sizeof v0, "set%d.a;", round);
        snprintf(v1, sizeof v1, "set%d.b;", round);
        pd_bytes v[2] = {V(v0), V(v1)};
        TU_OK(pd_iset(w, 2, k, v, 0), w);
        s_model_set(7 + round, v0);
        s_model_set(200 + round, v1);
        if (round != 2) s_check(r, "deleted, set");
        s_rec(w, s_up, NU, tag++, true);
        s_check(r, "appended after");
    }
    /* A delete of every key, in the same order as the appends. */
    pd_key all[NU];
    for (int i = 0; i < NU; i++) all[i] = s_key(i);
    TU_OK(pd_delete(w, NU, all, 0), w);
    for (int i = 0; i < NU; i++) s_model_set(i, NULL);
    s_check(r, "all deleted");
    s_rec(w, s_up, NU, tag++, true);
    s_check(r, "appended after all deleted");
    TU_OK(pd_close(&r), NULL);
    fx_end(&f, &w);
    s_model_free();
}
END_TEST

/* ---------------------------------------------------- Other processes */

typedef struct job {
    const char *root;
    int what; /* 0 records in reversed order, 1 compact, 2 drop */
    int tag, n;
} job;

static int s_job(void *arg) {
    const job *j = arg;
    pd_store *s = fx_child_open(j->root);
    if (j->what == 0) {
        for (int b = 0; b < j->n; b++) s_rec(s, s_down, NU, j->tag + b, false);
    } else if (j->what == 1) {
        TU_CHECK(pd_log_compact(s, 0) == 0, "compact: %s", pd_errmsg(s));
    } else {
        TU_CHECK(pd_drop(s, 0) == 0, "drop: %s", pd_errmsg(s));
    }
    TU_CHECK(pd_close(&s) == 0, "close: %s", pd_errmsg(NULL));
    return 0;
}

static void s_run(const char *root, int what, int tag, int n) {
    job j = {root, what, tag, n};
    tu_child c = tu_child_spawn(s_job, &j, NULL, 0);
    char msg[2048];
    ck_assert_msg(tu_child_wait(c, msg, sizeof msg) == 0, "child: %s", msg);
    if (what == 0)
        for (int b = 0; b < n; b++)
            for (int i = NU - 1; i >= 0; i--) {
                char v[32];
                s_val(v, sizeof v, tag + b, i);
                s_model_add(i, v);
            }
    if (what == 2) s_model_free();
}

START_TEST(compaction_drop_and_others) {
    fx f;
    s_orders();
    pd_store *w = fx_start(&f), *r = fx_open(&f);
    int tag = 0;
    for (int b = 0; b < 5; b++) s_rec(w, s_up, NU, tag++, true);
    s_check(r, "batches");
    /* Another process appends in the reversed order, between ours. */
    s_run(f.root, 0, 1000, 3);
    s_check(r, "another process");
    s_rec(w, s_up, NU, tag++, true);
    s_run(f.root, 0, 1100, 1);
    s_rec(w, s_up, NU, tag++, true);
    s_check(r, "interleaved");
    /* Compactions, here and in another process, between batches: the
     * reader keeps its handle and reads on. */
    TU_OK(pd_log_compact(w, 0), w);
    s_check(r, "compacted");
    for (int b = 0; b < 3; b++) s_rec(w, s_up, NU, tag++, true);
    s_check(r, "after the compaction");
    s_run(f.root, 1, 0, 0);
    s_rec(w, s_up, NU, tag++, true);
    s_check(r, "compacted by another process");
    s_check(w, "compacted by another process (writer)");
    /* Drops, here and in another process. */
    TU_OK(pd_drop(w, 0), w);
    s_model_free();
    s_check(r, "dropped");
    for (int b = 0; b < 3; b++) s_rec(w, s_up, NU, tag++, true);
    s_check(r, "after the drop");
    s_run(f.root, 2, 0, 0);
    s_check(r, "dropped by another process");
    s_rec(w, s_up, NU, tag++, true);
    s_run(f.root, 0, 1200, 2);
    s_rec(w, s_up, NU, tag++, true);
    s_check(r, "after the second drop");
    s_check(w, "after the second drop (writer)");
    TU_OK(pd_close(&r), NULL);
    fx_end(&f, &w);
    s_model_free();
}
END_TEST

START_TEST(attempts_between) {
    fx f;
    s_orders();
    pd_store *w = fx_start(&f), *r = fx_open(&f);
    int tag = 0;
    for (int round = 0; round < 3; round++) {
        s_rec(w, s_up, NU, tag++, true);
        s_rec(w, s_up, NU, tag++, true);
        /* An attempt of the same keys in the same order (its records lead
         * with its tags), committed; one aborted, one left open. */
        pd_attempt *a = NULL, *b = NULL, *o = NULL;
        /* (A writer's attempt that committed ends it: one per round.) */
        char wn[3][16];
        snprintf(wn[0], sizeof wn[0], "writer%d", round);
        snprintf(wn[1], sizeof wn[1], "other%d", round);
        snprintf(wn[2], sizeof wn[2], "open%d", round);
        pd_key wk = PD_KEY_STR(wn[0]), wb = PD_KEY_STR(wn[1]);
        pd_key wo = PD_KEY_STR(wn[2]);
        TU_OK(pd_attempt_begin(w, &wk, (uint64_t)round, &a, 0), w);
        TU_OK(pd_attempt_begin(w, &wb, (uint64_t)round, &b, 0), w);
        TU_OK(pd_attempt_begin(w, &wo, (uint64_t)round, &o, 0), w);
        static pd_key keys[NU];
        static pd_bytes vals[NU], bad[NU];
        static char bytes[NU][32];
        for (int i = 0; i < NU; i++) {
            keys[i] = s_key(i);
            snprintf(bytes[i], sizeof bytes[i], "a%d.k%d;", round, i);
            vals[i] = PD_BYTES(bytes[i], strlen(bytes[i]));
            bad[i] = V("never;");
        }
        TU_OK(pd_attempt_append(a, NU, keys, vals, 0), w);
        TU_OK(pd_attempt_append(b, NU, keys, bad, 0), w);
        TU_OK(pd_attempt_append(o, NU, keys, bad, 0), w);
        s_rec(w, s_up, NU, tag++, true); /* before the commit: first */
        s_check(r, "attempts open");
        TU_OK(pd_attempt_append(a, NU, keys, vals, 0), w);
        TU_OK(pd_attempt_commit(&a, 0), w);
        for (int i = 0; i < NU; i++) {
            s_model_add(i, bytes[i]);
            s_model_add(i, bytes[i]);
        }
        TU_OK(pd_attempt_abort(&b), w);
        s_rec(w, s_up, NU, tag++, true);
        s_check(r, "committed");
        TU_OK(pd_attempt_abort(&o), w);
        s_check(r, "aborted");
    }
    s_finish(&f, &w, &r);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"same_order_then_changes", same_order_then_changes},
        {"records_lacking_keys", records_lacking_keys},
        {"deletes_and_isets_between", deletes_and_isets_between},
        {"compaction_drop_and_others", compaction_drop_and_others},
        {"attempts_between", attempts_between},
    };
    return TU_RUN_CASES("test_log_index", cases, 120, 0);
}
