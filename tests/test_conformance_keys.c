/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The store contract over every stack: hostile keys, a large value and
 * a flat key colliding with a tuple (the stacks and the model: confix.h). */
#include "confix.h"

/* ----------------------------------------------------------------- Tests */

/* Builds the hostile key set.  Storage lives in `mem` (freed by caller). */
typedef struct cf_keys {
    int phase[64]; /* tuples whose first part names a flat key: phase 1 */
    pd_key k[64];
    pd_bytes parts[64][4];
    char *mem[64];
    size_t n;
    char escape_probe[PATH_MAX]; /* a path outside the root to watch */
} cf_keys;

static void s_kflat(cf_keys *ks, const void *p, size_t len) {
    char *c = malloc(len + 1);
    if (len) memcpy(c, p, len);
    ks->mem[ks->n] = c;
    ks->k[ks->n] = PD_KEY(c, len);
    ks->n++;
}

/* Flat keys spelled as string literals, their lengths (NULs included)
 * counted by sizeof; s_kflat each, in order. */
typedef struct cf_lit {
    const char *p;
    size_t n;
} cf_lit;
#define LIT(s)                                                                 \
    { (s), sizeof(s) - 1 }
#define S_KFLATS(ks, lits)                                                     \
    s_kflats((ks), (lits), sizeof(lits) / sizeof((lits)[0]))

static void s_kflats(cf_keys *ks, const cf_lit *lits, size_t n) {
    for (size_t i = 0; i < n; i++) s_kflat(ks, lits[i].p, lits[i].n);
}

/* A File lays a tuple out as directories, so a tuple whose first part is
 * also a flat key collides with that key's file (PD_ERR_KEY, tested in
 * prefix_collision); such tuples run in a second phase. */
static void s_ktuple(cf_keys *ks, size_t np, ...) {
    va_list ap;
    ks->phase[ks->n] = 1;
    va_start(ap, np);
    ks->mem[ks->n] = NULL;
    for (size_t i = 0; i < np; i++) {
        const char *p = va_arg(ap, const char *);
        ks->parts[ks->n][i] = V(p);
    }
    va_end(ap);
    ks->k[ks->n] = PD_KEY_TUPLE(ks->parts[ks->n], np);
    ks->n++;
}

static void s_hostile(cf_keys *ks, cf_fix *f) {
    memset(ks, 0, sizeof *ks);
    unsigned char all[256];
    for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
    s_kflat(ks, all, 256);
    s_kflat(ks, all + 1, 255); /* no NUL */
    static const cf_lit slashes[] = {LIT("a\0b"), LIT("\0"), LIT(""),
                                     LIT("/"),    LIT("//"), LIT("a/b")};
    S_KFLATS(ks, slashes);
    s_ktuple(ks, 2, "a", "b");
    ks->phase[ks->n - 1] = 0; /* no flat 'a' */
    static const cf_lit dots[] = {LIT("."), LIT(".."), LIT("..."), LIT("../x"),
                                  LIT("../root")};
    S_KFLATS(ks, dots);
    /* "../../name" from <parent>/root is dirname(parent)/name. */
    if (f->parent) {
        const char *slash = strrchr(f->parent, '/');
        int dl = slash ? (int)(slash - f->parent) : 0;
        snprintf(ks->escape_probe, sizeof ks->escape_probe,
                 "%.*s/pd-conformance-escape-%d", dl, f->parent, (int)getpid());
    }
    s_kflat(ks, "../../", 6);
    {
        char k[PATH_MAX];
        snprintf(k, sizeof k, "../../pd-conformance-escape-%d", (int)getpid());
        s_kflat(ks, k, strlen(k));
    }
    {
        char k[PATH_MAX + 16];
        if (f->parent)
            snprintf(k, sizeof k, "%s/abs-escape", f->parent);
        else
            snprintf(k, sizeof k, "/etc/passwd-like");
        s_kflat(ks, k, strlen(k));
    }
    s_kflat(ks, ".lock", 5);
    s_ktuple(ks, 2, ".lock", "x");
    s_ktuple(ks, 2, "x", ".lock");
    ks->phase[ks->n - 1] = 0;
    s_ktuple(ks, 2, "..", "y");
    s_ktuple(ks, 3, "", "", "");
    s_ktuple(ks, 2, "%41", "/");
    static const cf_lit escapes[] = {LIT("%41"), LIT("A"),     LIT("%"),
                                     LIT("%%"),  LIT("%#tmp"), LIT("%~x"),
                                     LIT("x!y"), LIT("xy")};
    S_KFLATS(ks, escapes);
    s_kflat(ks, "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", 8); /* ключ */
    /* blanks, case, a newline, an option */
    static const cf_lit words[] = {LIT("with space"), LIT(" "),    LIT("UPPER"),
                                   LIT("upper"),      LIT("a\nb"), LIT("-rf")};
    S_KFLATS(ks, words);
    {
        char k[5000];
        memset(k, 'L', sizeof k);
        s_kflat(ks, k, 255);
        s_kflat(ks, k, 256);
        s_kflat(ks, k, 5000);
        k[100] = '/';
        s_kflat(ks, k, 5000);
        memset(k, '.', sizeof k);
        s_kflat(ks, k, 300);
        memset(k, 0xff, sizeof k);
        s_kflat(ks, k, 4000);
    }
    {
        char *k = malloc(PD_KEY_MAX);
        for (size_t i = 0; i < PD_KEY_MAX; i++) k[i] = "ab%/."[i % 5];
        s_kflat(ks, k, PD_KEY_MAX - NSBYTES(f)); /* the longest that fits */
        free(k);
    }
    s_ktuple(ks, 4, "p", "q", "r", "s");
    ks->phase[ks->n - 1] = 0;
    s_ktuple(ks, 3, "\xff\x01", "..", ".");
    ks->phase[ks->n - 1] = 0;
    ck_assert_uint_le(ks->n, 64);
}

static void s_keys_free(cf_keys *ks) {
    for (size_t i = 0; i < ks->n; i++) free(ks->mem[i]);
}

static void s_hostile_phase(cf_fix *f, cf_keys *all, int phase) {
    cf_model m = {0};
    cf_keys ks;
    memset(&ks, 0, sizeof ks);
    for (size_t i = 0; i < all->n; i++)
        if (all->phase[i] == phase) ks.k[ks.n++] = all->k[i];
    pd_bytes *vs = calloc(ks.n, sizeof *vs);
    char(*vb)[32] = calloc(ks.n, 32);
    for (size_t i = 0; i < ks.n; i++) {
        snprintf(vb[i], 32, "v%d.%zu;", phase, i);
        vs[i] = V(vb[i]);
    }
    /* All at once, then again one by one (another code path). */
    s_append(f, &m, ks.n, ks.k, vs);
    for (size_t i = 0; i < ks.n; i++) s_append(f, &m, 1, &ks.k[i], &vs[i]);
    /* Distinct keys did not merge in the model (nor may they in the store:
     * s_verify checks each value). */
    ck_assert_uint_eq(m.n, ks.n);
    s_verify(f, &m);
    /* ('A',) is 'A'. */
    size_t ia = ks.n;
    for (size_t i = 0; i < ks.n; i++)
        if (ks.k[i].nparts == 0 && ks.k[i].size == 1 &&
            ((const char *)ks.k[i].data)[0] == 'A')
            ia = i;
    if (ia < ks.n) {
        pd_bytes one[] = {V("A")};
        pd_key t1 = PD_KEY_TUPLE(one, 1);
        pd_bytes w = V("via-tuple");
        s_append(f, &m, 1, &t1, &w);
        char want[80];
        snprintf(want, sizeof want, "%s%svia-tuple", vb[ia], vb[ia]);
        s_expect(f, K("A"), want);
        ck_assert_uint_eq(m.n, ks.n);
    }
    s_verify(f, &m);
    /* iset over hostile keys. */
    TU_OK(pd_iset(f->s, ks.n, ks.k, vs, 0), f->s);
    for (size_t i = 0; i < ks.n; i++)
        s_model_put(s_model_find(&m, &ks.k[i], true), vs[i].data, vs[i].size,
                    true);
    s_verify(f, &m);
    /* Delete every other key. */
    for (size_t i = 0; i < ks.n; i += 2) s_delete(f, &m, 1, &ks.k[i]);
    s_verify(f, &m);
    s_check_contained(f);
    TU_OK(pd_drop(f->s, 0), f->s);
    s_model_free(&m);
    s_verify(f, &m);
    free(vs);
    free(vb);
}

/* Keys that touch the tuple separator of the wire.  partd/zmq.h (Keys on
 * the wire): a tuple crosses as its parts joined by "-|-" and the server
 * splits a key at every "-|-", so a key whose wire form would split into
 * other parts (a flat key containing "-|-", a part containing it, or parts
 * whose joins make a new one) cannot cross: the Client refuses it with
 * PD_ERR_KEY and a message naming it, before sending anything.  Every
 * other store takes these keys as any other bytes.  (No tuple here starts
 * with a part that is also a flat key: see prefix_collision.) */
static void s_hostile_sep(cf_fix *f) {
    pd_bytes t1[] = {V("x"), V("y-|-z")};
    pd_bytes t2[] = {V("-|-x"), V("")};
    pd_bytes t3[] = {V("q-|-r")};       /* a 1-tuple is the flat key */
    pd_bytes t4[] = {V("a-|"), V("b")}; /* "a-|-|-b" splits as a, |-b */
    pd_bytes t5[] = {V("-|"), V("|-")}; /* "-|-|-|-" splits as "", |, "" */
    pd_key bad[] = {K("a-|-b"),          K("-|-"),
                    K("-|--|-"),         PD_KEY_TUPLE(t1, 2),
                    PD_KEY_TUPLE(t2, 2), PD_KEY_TUPLE(t3, 1),
                    PD_KEY_TUPLE(t4, 2), PD_KEY_TUPLE(t5, 2)};
    /* These touch the separator but split back into their parts, as
     * Python's bytes.split does (leftmost first), so they cross. */
    pd_bytes g1[] = {V("a-"), V("|-b")};
    pd_bytes g2[] = {V("x-"), V("-y")};
    pd_bytes g3[] = {V("a"), V("|-b")};
    pd_bytes g4[] = {V("a|"), V("-b")};
    pd_bytes g5[] = {V(""), V("-")};
    pd_bytes g6[] = {V("-"), V("|")};
    pd_key good[] = {PD_KEY_TUPLE(g1, 2),
                     PD_KEY_TUPLE(g2, 2),
                     PD_KEY_TUPLE(g3, 2),
                     PD_KEY_TUPLE(g4, 2),
                     PD_KEY_TUPLE(g5, 2),
                     PD_KEY_TUPLE(g6, 2),
                     K("--|"),
                     K("|-"),
                     K("-||-")};
    enum {
        NBAD = sizeof bad / sizeof bad[0],
        NGOOD = sizeof good / sizeof good[0]
    };
    pd_bytes vs[NBAD > NGOOD ? NBAD : NGOOD];
    char vb[NBAD > NGOOD ? NBAD : NGOOD][16];
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        snprintf(vb[i], sizeof vb[i], "s%zu;", i);
        vs[i] = V(vb[i]);
    }
    cf_model m = {0};
    s_append(f, &m, NGOOD, good, vs);
    s_verify(f, &m);
    if (!WIRE(f)) {
        s_append(f, &m, NBAD, bad, vs);
        s_verify(f, &m);
    } else {
        char kb[256];
        pd_result *r = NULL;
        for (size_t i = 0; i < NBAD; i++) {
            s_repr(&bad[i], kb, sizeof kb);
            int rc[4] = {pd_append(f->s, 1, &bad[i], &vs[i], 0),
                         pd_get(f->s, 1, &bad[i], &r, 0),
                         pd_delete(f->s, 1, &bad[i], 0),
                         pd_iset(f->s, 1, &bad[i], &vs[i], 0)};
            const char *op[4] = {"append", "get", "delete", "iset"};
            for (int j = 0; j < 4; j++)
                ck_assert_msg(rc[j] == PD_ERR_KEY, "[%s] %s %s -> %d, want %d",
                              NAME(f), op[j], kb, rc[j], PD_ERR_KEY);
            ck_assert_ptr_null(r);
            const char *msg = pd_errmsg(f->s);
            ck_assert_msg(strstr(msg, kb) && strstr(msg, "-|-"),
                          "[%s] message does not name %s and the "
                          "separator: %s",
                          NAME(f), kb, msg);
        }
        /* In a batch after good keys: nothing of it is sent. */
        pd_bytes np[] = {V("new")};
        pd_key batch[] = {PD_KEY_TUPLE(np, 1), good[0], bad[NBAD - 1]};
        int rc = pd_append(f->s, 3, batch, vs, 0);
        ck_assert_int_eq(rc, PD_ERR_KEY);
        s_expect(f, batch[0], "");
        /* The client is still in step with the server. */
        s_verify(f, &m);
    }
    TU_OK(pd_drop(f->s, 0), f->s);
    s_model_free(&m);
    s_verify(f, &m);
}

START_TEST(hostile_keys) {
    cf_fix f;
    s_open(&f, _i);
    cf_keys ks;
    s_hostile(&ks, &f);
    bool probe_existed =
        !*ks.escape_probe || access(ks.escape_probe, F_OK) == 0;
    s_hostile_phase(&f, &ks, 0);
    s_hostile_phase(&f, &ks, 1);
    s_hostile_sep(&f);
    if (!probe_existed)
        ck_assert_msg(access(ks.escape_probe, F_OK) != 0,
                      "[%s] a key escaped the store: %s exists", NAME(&f),
                      ks.escape_probe);
    s_keys_free(&ks);
    s_close(&f);
}
END_TEST

START_TEST(large_value) {
    cf_fix f;
    s_open(&f, _i);
    size_t n = 8u << 20;
    unsigned char *big = malloc(n);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        big[i] = (unsigned char)x;
    }
    pd_key ks[] = {K("big"), K("small"), K("big")};
    pd_bytes vs[] = {{big, n - 1000}, V("s"), {big + n - 1000, 1000}};
    TU_OK(pd_append(f.s, 3, ks, vs, 0), f.s);
    pd_result *r = NULL;
    TU_OK(pd_get(f.s, 2, ks, &r, 0), f.s);
    pd_bytes v = pd_result_value(r, 0);
    ck_assert_uint_eq(v.size, n);
    ck_assert_msg(memcmp(v.data, big, n) == 0, "[%s] 8 MiB value differs",
                  NAME(&f));
    ck_assert_uint_eq(pd_result_value(r, 1).size, 1);
    pd_result_free(&r);
    /* Append once more after it (after a possible spill). */
    tu_append1(f.s, ks[0], "tail", 4);
    TU_OK(pd_get(f.s, 1, ks, &r, 0), f.s);
    v = pd_result_value(r, 0);
    ck_assert_uint_eq(v.size, n + 4);
    ck_assert(memcmp(v.data, big, n) == 0);
    ck_assert(memcmp((const char *)v.data + n, "tail", 4) == 0);
    pd_result_free(&r);
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(f.s, &kl, 0), f.s);
    for (size_t i = 0; i < pd_keylist_count(kl); i++) {
        pd_key k;
        pd_keylist_key(kl, i, &k);
        if (k.nparts == 0 && k.size == 3 && !memcmp(k.data, "big", 3)) {
            /* Random bytes: an Encode layer stores a little more. */
            if (ENCODED(&f))
                ck_assert_uint_ge(pd_keylist_size(kl, i), n + 4);
            else
                ck_assert_uint_eq(pd_keylist_size(kl, i), n + 4);
        }
    }
    pd_keylist_free(&kl);
    free(big);
    s_close(&f);
}
END_TEST

/* Key k, the second of two colliding keys, was just appended `want`, with
 * result rc: either refused with PD_ERR_KEY and a message naming the key
 * (repr), k then being empty, or done, k then holding want. */
static void s_collided(cf_fix *f, int rc, pd_key k, const char *repr,
                       const char *want) {
    if (rc != 0) {
        ck_assert_msg(rc == PD_ERR_KEY, "[%s] collision -> %d: %s", NAME(f), rc,
                      pd_errmsg(f->s));
        ck_assert_msg(strstr(pd_errmsg(f->s), repr) != NULL,
                      "[%s] message does not name the key: %s", NAME(f),
                      pd_errmsg(f->s));
        s_expect(f, k, "");
    } else {
        s_expect(f, k, want);
    }
}

/* A Buffer spilling everything: refused or done, flat ("1") and tup ("2")
 * readable either way. */
static void s_flush_collided(cf_fix *f, pd_key flat, pd_key tup) {
    int rc = pd_buffer_flush(s_buffer_of(f->s), 0, NULL, 0);
    ck_assert_msg(rc == 0 || rc == PD_ERR_KEY, "[%s] flush -> %d: %s", NAME(f),
                  rc, pd_errmsg(f->s));
    s_expect(f, flat, "1");
    s_expect(f, tup, "2");
}

/* A flat key and a tuple that starts with it ('p' and ('p', 'q')): a Dict
 * holds both; a File lays the tuple out as directory p/, which the file p
 * occupies, and may refuse with PD_ERR_KEY naming the key.  Either way the
 * data already there is intact and nothing crashes; a Buffer keeps what it
 * cannot spill in its fast store. */
START_TEST(prefix_collision) {
    cf_fix f;
    s_open(&f, _i);
    pd_bytes tp[] = {V("p"), V("q")};
    pd_key flat = K("p"), tup = PD_KEY_TUPLE(tp, 2);
    pd_bytes one = V("1"), two = V("2");
    TU_OK(pd_append(f.s, 1, &flat, &one, 0), f.s);
    int rc = pd_append(f.s, 1, &tup, &two, 0);
    s_collided(&f, rc, tup, "('p', 'q')", "2");
    s_expect(&f, flat, "1");
    /* Over the wire the Buffer is the server's: no command flushes it (and
     * the server thread owns it while it serves), but the server flushes
     * it when it closes, so the colliding key must go all the same. */
    bool remote_buffer = REMOTE(&f) && s_stacks[_i].buffered;
    bool buffer = s_buffer_of(f.s) != NULL || remote_buffer;
    if (buffer) {
        if (!remote_buffer) s_flush_collided(&f, flat, tup);
        /* Make the store closable: remove the tuple. */
        TU_OK(pd_delete(f.s, 1, &tup, 0), f.s);
    }
    /* The other order: the tuple first, then the flat key. */
    TU_OK(pd_drop(f.s, 0), f.s);
    TU_OK(pd_append(f.s, 1, &tup, &two, 0), f.s);
    rc = pd_append(f.s, 1, &flat, &one, 0);
    s_collided(&f, rc, flat, "'p'", "1");
    s_expect(&f, tup, "2");
    if (buffer) {
        if (!remote_buffer) s_flush_collided(&f, flat, tup);
        TU_OK(pd_delete(f.s, 1, &flat, 0), f.s);
    }
    s_close(&f);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"hostile_keys", hostile_keys},
        {"large_value", large_value},
        {"prefix_collision", prefix_collision},
    };
    return TU_RUN_CASES("test_conformance_keys", cases, 60, NSTACKS);
}
