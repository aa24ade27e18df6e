/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Dict's arena: size classes, blocks, trimming, the chunk policy, memory
 * returned to the system, the expect hint, and out of memory.
 */
#include "dictfix.h"

/* ----------------------------------------------------------------- Arena */

static void s_arena_ok(const pd__arena *a) {
    char why[256];
    ck_assert_msg(pd__arena_check(a, why, sizeof why) == 0, "arena: %s", why);
}

/* Every size maps to the smallest class that holds it. */
START_TEST(arena_classes) {
    for (unsigned c = 0; c < PD__ARENA_NCLASS; c++) {
        ck_assert_uint_eq(pd__arena_class_size(c) % 16, 0);
        if (c)
            ck_assert_uint_gt(pd__arena_class_size(c),
                              pd__arena_class_size(c - 1));
    }
    ck_assert_uint_eq(pd__arena_class_size(PD__ARENA_NCLASS - 1),
                      PD__ARENA_MAX);
    for (size_t n = 1; n <= PD__ARENA_MAX; n++) {
        unsigned c = pd__arena_class(n);
        ck_assert_msg(c < PD__ARENA_NCLASS && pd__arena_class_size(c) >= n &&
                          (c == 0 || pd__arena_class_size(c - 1) < n),
                      "size %zu -> class %u", n, c);
    }
}
END_TEST

/* Blocks of every class: aligned, disjoint, reused after a free without
 * mapping more, and given back entirely once all are free. */
START_TEST(arena_blocks) {
    enum { N = 3000 };
    static unsigned char *blk[N];
    static unsigned cls[N];
    pd__arena a;
    pd__arena_init(&a, false);
    ck_assert_ptr_nonnull(pd__arena_alloc(&a, 0));
    pd__arena_fini(&a); /* a block still in use: unmapped all the same */
    ck_assert_uint_eq(pd__arena_mapped(&a), 0);
    uint64_t total = 0;
    for (size_t i = 0; i < N; i++) {
        cls[i] = (unsigned)(i * 7 % PD__ARENA_NCLASS);
        blk[i] = pd__arena_alloc(&a, cls[i]);
        ck_assert_ptr_nonnull(blk[i]);
        ck_assert_uint_eq((uintptr_t)blk[i] % 16, 0);
        memset(blk[i], (int)(i & 0xff), pd__arena_class_size(cls[i]));
        total += pd__arena_class_size(cls[i]);
    }
    ck_assert_uint_eq(a.used, total);
    s_arena_ok(&a);
    uint64_t mapped = pd__arena_mapped(&a);
    ck_assert_uint_ge(mapped, total);
    /* Half freed, then the same classes again: the freed room serves. */
    for (size_t i = 0; i < N; i += 2) pd__arena_free(&a, blk[i]);
    s_arena_ok(&a);
    for (size_t i = 0; i < N; i += 2) {
        blk[i] = pd__arena_alloc(&a, cls[i]);
        ck_assert_ptr_nonnull(blk[i]);
        memset(blk[i], (int)(i & 0xff), pd__arena_class_size(cls[i]));
    }
    ck_assert_uint_eq(pd__arena_mapped(&a), mapped);
    s_arena_ok(&a);
    for (size_t i = 0; i < N; i++) {
        size_t bs = pd__arena_class_size(cls[i]);
        ck_assert_msg(blk[i][0] == (i & 0xff) && blk[i][bs - 1] == (i & 0xff),
                      "block %zu overwritten", i);
    }
    /* All freed: the pages and segments go (a spare segment stays until
     * a trim). */
    for (size_t i = 0; i < N; i++) pd__arena_free(&a, blk[i]);
    ck_assert_uint_eq(a.used, 0);
    ck_assert_uint_eq(a.pages, 0);
    ck_assert_uint_le(pd__arena_mapped(&a), PD__ARENA_SEG);
    s_arena_ok(&a);
    pd__arena_trim(&a, 0);
    ck_assert_uint_eq(pd__arena_mapped(&a), 0);
    ck_assert_uint_eq(a.idle, 0);
    /* Usable again. */
    void *p = pd__arena_alloc(&a, PD__ARENA_NCLASS - 1);
    ck_assert_ptr_nonnull(p);
    memset(p, 1, PD__ARENA_MAX);
    s_arena_ok(&a);
    pd__arena_fini(&a);
    ck_assert_uint_eq(pd__arena_mapped(&a), 0);
}
END_TEST

/* Free pages stay for reuse until a trim gives back all but `keep` bytes
 * of them; a trimmed page serves again. */
START_TEST(arena_trim_keeps) {
    enum { N = 1024 }; /* 16 KiB blocks: 16 MiB, several segments */
    static unsigned char *blk[N];
    const unsigned c = PD__ARENA_NCLASS - 1;
    pd__arena a;
    pd__arena_init(&a, true);
    for (size_t i = 0; i < N; i++) {
        blk[i] = pd__arena_alloc(&a, c);
        ck_assert_ptr_nonnull(blk[i]);
        memset(blk[i], 7, PD__ARENA_MAX);
    }
    uint64_t mapped = pd__arena_mapped(&a);
    ck_assert_uint_ge(mapped, (uint64_t)N * PD__ARENA_MAX);
    /* Every block of the odd pages: those pages are free afterwards. */
    for (size_t i = 0; i < N; i++) {
        uintptr_t off = (uintptr_t)blk[i] & (PD__ARENA_SEG - 1);
        if ((off / PD__ARENA_PAGE) % 2) {
            pd__arena_free(&a, blk[i]);
            blk[i] = NULL;
        }
    }
    s_arena_ok(&a);
    uint64_t idle = a.idle;
    ck_assert_uint_ge(idle, (uint64_t)PD__ARENA_NPAGES / 2 * PD__ARENA_PAGE);
    pd__arena_trim(&a, idle); /* nothing to do */
    ck_assert_uint_eq(a.idle, idle);
    pd__arena_trim(&a, idle / 2);
    ck_assert_uint_le(a.idle, idle / 2);
    ck_assert_uint_ge(a.released, idle / 2);
    s_arena_ok(&a);
    /* The freed pages serve again, trimmed or not: no new segment. */
    for (size_t i = 0; i < N; i++)
        if (!blk[i]) {
            blk[i] = pd__arena_alloc(&a, c);
            ck_assert_ptr_nonnull(blk[i]);
            memset(blk[i], 9, PD__ARENA_MAX);
        }
    ck_assert_uint_eq(pd__arena_mapped(&a), mapped);
    s_arena_ok(&a);
    for (size_t i = 0; i < N; i++) pd__arena_free(&a, blk[i]);
    s_arena_ok(&a);
    pd__arena_fini(&a);
}
END_TEST

/* The sizes of a key's chunks (peek), summed, and their count. */
static size_t s_chunks(pd_store *d, const char *key, size_t *nch,
                       size_t *maxch) {
    pd_key k = PD_KEY_STR(key);
    const pd_bytes *ch = NULL;
    size_t n = 0, sum = 0;
    pthread_mutex_lock(&d->mu);
    ck_assert_int_eq(d->ops->peek(d, &k, &ch, &n), 0);
    *maxch = 0;
    for (size_t i = 0; i < n; i++) {
        sum += ch[i].size;
        if (ch[i].size > *maxch) *maxch = ch[i].size;
    }
    pthread_mutex_unlock(&d->mu);
    *nch = n;
    return sum;
}

/* Appends v[from, to) to key, then asserts that the key holds v[0, to) in
 * nch chunks; returns the largest chunk's size. */
static size_t s_append_chunks(pd_store *d, const char *key,
                              const unsigned char *v, size_t from, size_t to,
                              size_t nch) {
    tu_append1(d, PD_KEY_STR(key), v + from, to - from);
    size_t n, maxch;
    ck_assert_uint_eq(s_chunks(d, key, &n, &maxch), to);
    ck_assert_msg(n == nch, "%s: %zu chunks, want %zu", key, n, nch);
    tu_expect(d, PD_KEY_STR(key), v, to);
    return maxch;
}

/* How a key's bytes are laid out in chunks: small appends fill chunks that
 * grow with the key up to the arena's largest block; a part larger than
 * that, or than 4 KiB and than the key's next chunk, gets a chunk of its
 * own exact size (malloc'd); the rest of a small part goes to the room of
 * the last chunk. */
START_TEST(chunk_policy) {
    pd_store *d = tu_dict();
    static unsigned char v[200000];
    for (size_t i = 0; i < sizeof v; i++) v[i] = (unsigned char)(i * 31 + 7);
    size_t nch, maxch;
    /* 1 MiB of 100-byte values. */
    pd_key kg = PD_KEY_STR("grow");
    size_t at = 0;
    for (int i = 0; i < 10486; i++, at += 100)
        tu_append1(d, kg, v + at % 100000, 100);
    ck_assert_uint_eq(s_chunks(d, "grow", &nch, &maxch), at);
    ck_assert_uint_le(maxch, PD__ARENA_MAX - 16);
    ck_assert_uint_ge(maxch, 16384); /* about 1/32 of the key */
    ck_assert_uint_ge(nch, at / (PD__ARENA_MAX - 16));
    ck_assert_uint_le(nch, 200);
    /* One large value: one chunk, exact. */
    s_append_chunks(d, "big", v, 0, 100000, 1);
    /* 6000 bytes after 10: the first chunk's room, then an exact chunk. */
    tu_append1(d, PD_KEY_STR("mid"), v, 10);
    ck_assert_uint_ge(s_append_chunks(d, "mid", v, 10, 6010, 2), 5990);
    /* (its room rounded up to whole malloc units takes 5 more) */
    s_append_chunks(d, "mid", v, 6010, 6015, 2);
    /* 3000 bytes: an arena block with room left, which takes 50 more. */
    tu_append1(d, PD_KEY_STR("small"), v, 3000);
    s_append_chunks(d, "small", v, 3000, 3050, 1);
    /* set: exact chunks, arena or malloc'd; appends continue them. */
    pd_key ks[2] = {PD_KEY_STR("s1"), PD_KEY_STR("s2")};
    pd_bytes vs[2] = {{v, 20000}, {v, 300}};
    pthread_mutex_lock(&d->mu);
    ck_assert_int_eq(d->ops->set(d, 2, ks, vs, PD_NOLOCK), 0);
    pthread_mutex_unlock(&d->mu);
    tu_append1(d, ks[0], v + 20000, 10);
    tu_append1(d, ks[1], v + 300, 10);
    tu_expect(d, ks[0], v, 20010);
    tu_expect(d, ks[1], v, 310);
    s_arena_ok(pd__dict_arena(d));
    /* get returns the chunks' bytes, not the malloc'd marks. */
    pd_key all[6] = {
        kg,   PD_KEY_STR("big"), PD_KEY_STR("mid"), PD_KEY_STR("small"), ks[0],
        ks[1]};
    pd_result *r = NULL;
    TU_OK(pd_get(d, 6, all, &r, 0), d);
    ck_assert_uint_eq(pd_result_total(r),
                      at + 100000 + 6015 + 3050 + 20010 + 310);
    pd_result_free(&r);
    pd_close(&d);
}
END_TEST

/* keys[i] = "k<i>" with vals[i] = v (vlen bytes of 'v'), for i < nk. */
static void s_keys_k(int nk, char (*names)[16], pd_key *keys, pd_bytes *vals,
                     char *v, size_t vlen) {
    memset(v, 'v', vlen);
    for (int i = 0; i < nk; i++) {
        snprintf(names[i], 16, "k%d", i);
        keys[i] = PD_KEY_STR(names[i]);
        vals[i] = (pd_bytes){v, vlen};
    }
}

/* Deletes give the chunk memory back: all of it when the Dict is emptied
 * (delete or drop), and all but an eighth of what it still holds after a
 * large delete. */
START_TEST(memory_returned) {
    enum { NK = 200, PER = 200, V = 100 }; /* 4 MB */
    pd_store *d = tu_dict();
    const pd__arena *a = pd__dict_arena(d);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_null(pd__dict_arena(NULL));
    static char names[NK][16];
    static pd_key keys[NK];
    static pd_bytes vals[NK];
    static char v[V];
    s_keys_k(NK, names, keys, vals, v, V);
    for (int round = 0; round < 3; round++) {
        for (int j = 0; j < PER; j++) TU_OK(pd_append(d, NK, keys, vals, 0), d);
        ck_assert_uint_eq(pd_dict_nbytes(d), (uint64_t)NK * PER * V);
        ck_assert_uint_ge(a->used, pd_dict_nbytes(d));
        ck_assert_uint_gt(pd__arena_mapped(a), 0);
        s_arena_ok(a);
        if (round == 0) {
            /* Every other key: the rest intact, free pages trimmed to an
             * eighth of what is held. */
            pd_key odd[NK / 2];
            for (int i = 0; i < NK / 2; i++) odd[i] = keys[2 * i + 1];
            TU_OK(pd_delete(d, NK / 2, odd, 0), d);
            ck_assert_uint_le(a->idle, pd_dict_nbytes(d) / 8);
            s_arena_ok(a);
            size_t len = 0;
            char *got = tu_get1(d, &keys[0], &len);
            ck_assert_uint_eq(len, (size_t)PER * V);
            free(got);
            TU_OK(pd_delete(d, NK, keys, 0), d);
        } else if (round == 1) {
            TU_OK(pd_delete(d, NK, keys, 0), d);
        } else {
            TU_OK(pd_drop(d, 0), d);
        }
        ck_assert_uint_eq(pd_dict_nbytes(d), 0);
        ck_assert_uint_eq(a->used, 0);
        ck_assert_uint_eq(pd__arena_mapped(a), 0);
    }
    pd_close(&d);
}
END_TEST

/* A Dict expecting megabytes asks for huge pages from its first segment. */
START_TEST(expect_hint) {
    pd_store *d = tu_dict();
    const pd__arena *a = pd__dict_arena(d);
    ck_assert(!a->huge_first);
    pd__dict_expect(d, (uint64_t)64 << 20);
    ck_assert(a->huge_first);
    tu_append1(d, PD_KEY_STR("k"), "v", 1);
    tu_expect_str(d, PD_KEY_STR("k"), "v");
    pd__dict_expect(d, 1u << 20);
    ck_assert(!a->huge_first);
    pd__dict_expect(NULL, 1); /* not a Dict: ignored */
    pd_close(&d);
}
END_TEST

/* In a child: the address space capped just above what is in use, batches
 * of appends until one cannot map memory.  It fails whole (PD_ERR_NOMEM,
 * nothing of it kept, the arena consistent), and succeeds once the cap is
 * lifted. */
static int s_arena_oom_child(void *arg) {
    (void)arg;
    enum { NK = 1000, PER = 100, V = 100 };
    static char names[NK][16];
    static pd_key keys[NK];
    static pd_bytes vals[NK];
    static char v[V];
    s_keys_k(NK, names, keys, vals, v, V);
    pd_store *d = NULL;
    TU_CHECK(pd_dict_open(&d) == 0, "open: %s", pd_errmsg(NULL));
    const pd__arena *a = pd__dict_arena(d);
    char why[256];
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    TU_CHECK(f && fscanf(f, "%lu", &pages) == 1, "statm");
    fclose(f);
    size_t used = pages * (size_t)sysconf(_SC_PAGESIZE);
    struct rlimit rl = {used + ((size_t)6 << 20), RLIM_INFINITY};
    TU_CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %s", strerror(errno));
    int rc = 0;
    size_t batch = 0;
    for (; batch < 4000; batch++) {
        size_t at = batch * PER % NK;
        uint64_t before = pd_dict_nbytes(d), used_before = a->used;
        rc = pd_append(d, PER, &keys[at], &vals[at], 0);
        if (rc) {
            TU_CHECK(rc == PD_ERR_NOMEM, "append -> %d: %s", rc, pd_errmsg(d));
            TU_CHECK(pd_dict_nbytes(d) == before, "nbytes changed");
            TU_CHECK(a->used == used_before, "arena use changed");
            TU_CHECK(pd__arena_check(a, why, sizeof why) == 0, "%s", why);
            break;
        }
    }
    TU_CHECK(rc != 0, "no failure under the cap (%zu batches)", batch);
    rl.rlim_cur = RLIM_INFINITY;
    TU_CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %s", strerror(errno));
    size_t at = batch * PER % NK;
    TU_CHECK(pd_append(d, PER, &keys[at], &vals[at], 0) == 0, "retry: %s",
             pd_errmsg(d));
    batch++;
    for (int i = 0; i < NK; i++) {
        size_t want = (batch * PER / NK + ((size_t)i < batch * PER % NK)) * V;
        pd_result *r = NULL;
        TU_CHECK(pd_get(d, 1, &keys[i], &r, 0) == 0, "get: %s", pd_errmsg(d));
        TU_CHECK(pd_result_value(r, 0).size == want,
                 "key %d: %zu bytes, not %zu", i, pd_result_value(r, 0).size,
                 want);
        pd_result_free(&r);
    }
    TU_CHECK(pd__arena_check(a, why, sizeof why) == 0, "%s", why);
    pd_close(&d);
    return 0;
}

START_TEST(nomem_mapping_is_atomic) { tu_oom_child(s_arena_oom_child, NULL); }
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"arena_classes", arena_classes},
        {"arena_blocks", arena_blocks},
        {"arena_trim_keeps", arena_trim_keeps},
        {"chunk_policy", chunk_policy},
        {"memory_returned", memory_returned},
        {"expect_hint", expect_hint},
        {"nomem_mapping_is_atomic", nomem_mapping_is_atomic},
    };
    return TU_RUN_CASES("test_dict_arena", cases, 120, 0);
}
