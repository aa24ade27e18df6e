/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The File store: its on-disk layout and key escaping, safety against
 * symlinks, hard links, FIFOs and directories, opening and closing.
 */
#include "filefix.h"

/* ------------------------------------------------------------ Layout */

START_TEST(plain_keys_use_reference_layout) {
    pd_bytes parts[2] = {{"a", 1}, {"b", 1}};
    tu_append1(g_f, PD_KEY_STR("x"), "hello", 5);
    tu_append1(g_f, PD_KEY_STR("part-1 (copy).csv_2"), "p", 1);
    tu_append1(g_f, PD_KEY_TUPLE(parts, 2), "tup", 3);
    char p[8192];
    snprintf(p, sizeof p, "%s/x", g_root);
    tu_file_is(p, "hello");
    ck_assert(exists("%s/part-1 (copy).csv_2", g_root));
    snprintf(p, sizeof p, "%s/a/b", g_root);
    tu_file_is(p, "tup");
    ck_assert(exists("%s/.lock", g_root));
    pd_key k = PD_KEY_STR("x");
    ck_assert_uint_eq(pd_file_filename(g_f, &k, p, sizeof p),
                      strlen(g_root) + 2);
    char want[8192];
    snprintf(want, sizeof want, "%s/x", g_root);
    ck_assert_str_eq(p, want);
}
END_TEST

static const struct {
    const char *key;
    size_t len;
    const char *name;
} s_names[] = {
    {"", 0, "%"},
    {".", 1, "%."},
    {"..", 2, "%.."},
    {".lock", 5, "%.lock"},
    {"../x", 4, "%..%2Fx"},
    {"/etc/passwd", 11, "%%2Fetc%2Fpasswd"},
    {"a/b", 3, "%a%2Fb"},
    {"x!y", 3, "%x%21y"},
    {"xy", 2, "xy"},
    {"%41", 3, "%%2541"},
    {"A", 1, "A"},
    {"n\0ul", 4, "%n%00ul"},
    {"\xd0\xba", 2, "%%D0%BA"},
    {"a b", 3, "a b"},
};

START_TEST(hostile_keys_get_escaped_names) {
    for (size_t i = 0; i < sizeof s_names / sizeof s_names[0]; i++) {
        pd_key k = PD_KEY(s_names[i].key, s_names[i].len);
        char p[8192], want[8192];
        pd_file_filename(g_f, &k, p, sizeof p);
        snprintf(want, sizeof want, "%s/%s", g_root, s_names[i].name);
        ck_assert_str_eq(p, want);
        char v[32];
        snprintf(v, sizeof v, "v%zu", i);
        tu_append1(g_f, k, v, strlen(v));
    }
    for (size_t i = 0; i < sizeof s_names / sizeof s_names[0]; i++) {
        pd_key k = PD_KEY(s_names[i].key, s_names[i].len);
        char v[32];
        snprintf(v, sizeof v, "v%zu", i);
        tu_expect_str(g_f, k, v);
    }
    ck_assert_int_eq(outside_entries(), 0);
    ck_assert(!exists("%s/x", g_tmp));
    /* .lock is still the lock file, untouched by the key ".lock" */
    char lp[8192];
    snprintf(lp, sizeof lp, "%s/.lock", g_root);
    size_t n = 99;
    free(tu_read_file(lp, &n));
    ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(long_keys_nest_and_round_trip) {
    size_t sizes[] = {255, 256, 300, 1000, 5000, PD_KEY_MAX};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        char *k = malloc(sizes[s]);
        for (size_t i = 0; i < sizes[s]; i++)
            k[i] = (char)(s % 2 ? 'a' + i % 26 : (i * 7 + s) & 0xff);
        pd_key key = PD_KEY(k, sizes[s]);
        tu_append1(g_f, key, "long", 4);
        tu_expect_str(g_f, key, "long");
        free(k);
    }
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(g_f, &kl, 0), g_f);
    ck_assert_uint_eq(pd_keylist_count(kl), sizeof sizes / sizeof sizes[0]);
    for (size_t i = 0; i < pd_keylist_count(kl); i++) {
        pd_key k;
        ck_assert_int_eq(pd_keylist_key(kl, i, &k), 0);
        ck_assert_uint_eq(pd_keylist_size(kl, i), 4);
        tu_expect_str(g_f, k, "long");
        /* delete through the listed key, and the chunk dirs go too */
        TU_OK(pd_delete(g_f, 1, &k, 0), g_f);
    }
    pd_keylist_free(&kl);
    ck_assert_int_eq(tu_system("test $(ls -A '%s' | wc -l) -eq 1", g_root), 0);
    ck_assert_int_eq(outside_entries(), 0);
}
END_TEST

/* Random keys: distinct keys never share a file; listing decodes them. */
START_TEST(encoding_is_injective_and_decodes) {
    srand(12345);
    enum { N = 600 };
    static char bufs[N][40];
    static pd_bytes parts[N][3];
    pd_key keys[N];
    pd_bytes vals[N];
    static char vbuf[N][16];
    const char alpha[] = "ab./%~#!-_ \x00\xff";
    for (int i = 0; i < N; i++) {
        int len = rand() % 6;
        for (int j = 0; j < len; j++)
            bufs[i][j] = alpha[rand() % (sizeof alpha - 1)];
        int np = rand() % 3;
        if (np < 2) {
            keys[i] = PD_KEY(bufs[i], (size_t)len);
        } else {
            int cut = len ? rand() % len : 0;
            parts[i][0] = (pd_bytes){bufs[i], (size_t)cut};
            parts[i][1] = (pd_bytes){bufs[i] + cut, (size_t)(len - cut)};
            /* avoid file/dir conflicts with flat keys: prefix part 0 */
            bufs[i][30] = 'T';
            parts[i][0] = (pd_bytes){bufs[i] + 30, 1};
            parts[i][1] = (pd_bytes){bufs[i], (size_t)len};
            keys[i] = PD_KEY_TUPLE(parts[i], 2);
        }
        snprintf(vbuf[i], sizeof vbuf[i], "<%d>", i);
        vals[i] = PD_BYTES(vbuf[i], strlen(vbuf[i]));
    }
    TU_OK(pd_append(g_f, N, keys, vals, 0), g_f);
    pd_result *r = NULL;
    TU_OK(pd_get(g_f, N, keys, &r, 0), g_f);
    /* each key holds exactly the values of the keys equal to it */
    for (int i = 0; i < N; i++) {
        pd__pkey a;
        pd__pkey_set(&a, &keys[i]);
        char want[N * 8] = "";
        for (int j = 0; j < N; j++) {
            pd__pkey b;
            pd__pkey_set(&b, &keys[j]);
            if (a.len == b.len && !memcmp(a.p, b.p, a.len))
                strcat(want, vbuf[j]);
            pd__pkey_free(&b);
        }
        pd__pkey_free(&a);
        pd_bytes v = pd_result_value(r, (size_t)i);
        ck_assert_uint_eq(v.size, strlen(want));
        ck_assert(memcmp(v.data, want, v.size) == 0);
    }
    pd_result_free(&r);
    /* listing: every key once, with its size */
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(g_f, &kl, 0), g_f);
    uint64_t total = 0;
    for (size_t i = 0; i < pd_keylist_count(kl); i++) {
        pd_key k;
        pd_keylist_key(kl, i, &k);
        size_t len;
        free(tu_get1(g_f, &k, &len));
        ck_assert_uint_eq(len, pd_keylist_size(kl, i));
        total += len;
    }
    uint64_t want_total = 0;
    for (int i = 0; i < N; i++) want_total += vals[i].size;
    ck_assert_uint_eq(total, want_total);
    pd_keylist_free(&kl);
    ck_assert_int_eq(outside_entries(), 0);
}
END_TEST

START_TEST(listing_ignores_foreign_names) {
    tu_append1(g_f, PD_KEY_STR("good"), "1", 1);
    char p[8192];
    const char *foreign[] = {"foo!bar", "%zz", "%41", "%#tmp.1", "%~x"};
    for (size_t i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", g_root, foreign[i]);
        ck_assert_int_eq(tu_write_file(p, "x", 1), 0);
    }
    snprintf(p, sizeof p, "%s/link", g_root);
    ck_assert_int_eq(symlink("/etc/hostname", p), 0);
    /* continuation directories the encoder would never make (found by
     * fuzz_file_dir): an empty piece, and a short name cut in two */
    const char *dirs[] = {"%~", "%~a%21", "%~"};
    const char *files[] = {"%~/a", "%~a%21/%b", "%~/%%2F"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", g_root, dirs[i]);
        mkdir(p, 0700);
        snprintf(p, sizeof p, "%s/%s", g_root, files[i]);
        ck_assert_int_eq(tu_write_file(p, "zzz", 3), 0);
    }
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(g_f, &kl, 0), g_f);
    ck_assert_uint_eq(pd_keylist_count(kl), 1);
    pd_key k;
    pd_keylist_key(kl, 0, &k);
    ck_assert_uint_eq(k.size, 4);
    ck_assert(memcmp(k.data, "good", 4) == 0);
    pd_keylist_free(&kl);
}
END_TEST

START_TEST(tuple_and_flat_conflict_is_a_clear_error) {
    pd_bytes parts[2] = {{"x", 1}, {"y", 1}};
    tu_append1(g_f, PD_KEY_STR("x"), "flat", 4);
    pd_key t = PD_KEY_TUPLE(parts, 2);
    pd_bytes v = PD_BYTES("t", 1);
    ck_assert_int_eq(pd_append(g_f, 1, &t, &v, 0), PD_ERR_KEY);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(g_f), "('x', 'y')"));
    /* reading the tuple: empty, not an error; the flat key is intact */
    tu_expect_str(g_f, t, "");
    pd_key x = PD_KEY_STR("x");
    tu_expect_str(g_f, x, "flat");
    /* and the other way round: a flat key naming a tuple directory */
    pd_bytes p2[2] = {{"d", 1}, {"y", 1}};
    pd_key t2 = PD_KEY_TUPLE(p2, 2);
    tu_append1(g_f, t2, "t", 1);
    pd_key d = PD_KEY_STR("d");
    ck_assert_int_eq(pd_append(g_f, 1, &d, &v, 0), PD_ERR_KEY);
    tu_expect_str(g_f, d, "");
    TU_OK(pd_delete(g_f, 1, &d, 0), g_f); /* must not remove the directory */
    tu_expect_str(g_f, t2, "t");
}
END_TEST

/* ------------------------------------------------------------ Safety */

/* Writes "secret" to a file outside the store (its path put in outside;
 * tests check with tu_file_is that it stays so), and links it into the store
 * as `name` with mk (symlink or link; that path put in p). */
static void s_link_outside(char outside[8192], char p[8192], const char *name,
                           int (*mk)(const char *, const char *)) {
    snprintf(outside, 8192, "%s/outside", g_tmp);
    ck_assert_int_eq(tu_write_file(outside, "secret", 6), 0);
    snprintf(p, 8192, "%s/%s", g_root, name);
    ck_assert_int_eq(mk(outside, p), 0);
}

START_TEST(symlinks_inside_are_never_followed) {
    char p[8192], outside[8192];
    s_link_outside(outside, p, "evil", symlink);
    pd_key k = PD_KEY_STR("evil");
    pd_bytes v = PD_BYTES("pwned", 5);
    int rc = pd_append(g_f, 1, &k, &v, 0);
    ck_assert_int_ne(rc, 0);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(g_f), "evil"));
    pd_result *r = NULL;
    ck_assert_int_ne(pd_get(g_f, 1, &k, &r, 0), 0);
    /* iset replaces the link itself (rename), never its target */
    TU_OK(pd_iset(g_f, 1, &k, &v, 0), g_f);
    struct stat lst;
    ck_assert_int_eq(lstat(p, &lst), 0);
    ck_assert(S_ISREG(lst.st_mode));
    /* a directory symlink: tuple keys through it fail */
    char outdir[8192];
    snprintf(outdir, sizeof outdir, "%s/outdir", g_tmp);
    ck_assert_int_eq(mkdir(outdir, 0700), 0);
    snprintf(p, sizeof p, "%s/d", g_root);
    ck_assert_int_eq(symlink(outdir, p), 0);
    pd_bytes parts[2] = {{"d", 1}, {"x", 1}};
    pd_key t = PD_KEY_TUPLE(parts, 2);
    ck_assert_int_ne(pd_append(g_f, 1, &t, &v, 0), 0);
    ck_assert_int_ne(pd_iset(g_f, 1, &t, &v, 0), 0);
    TU_OK(pd_get(g_f, 1, &t, &r, 0), g_f); /* reads as missing */
    ck_assert_uint_eq(pd_result_value(r, 0).size, 0);
    pd_result_free(&r);
    tu_file_is(outside, "secret");
    ck_assert_int_eq(tu_system("test -z \"$(ls -A '%s')\"", outdir), 0);
    /* drop removes the links, not their targets */
    TU_OK(pd_drop(g_f, 0), g_f);
    tu_file_is(outside, "secret");
    ck_assert(exists("%s", outdir));
}
END_TEST

START_TEST(hard_links_fifos_and_dirs_are_refused) {
    char p[8192], outside[8192];
    s_link_outside(outside, p, "hl", link);
    pd_key k = PD_KEY_STR("hl");
    pd_bytes v = PD_BYTES("x", 1);
    ck_assert_int_ne(pd_append(g_f, 1, &k, &v, 0), 0);
    tu_file_is(outside, "secret");
    snprintf(p, sizeof p, "%s/fifo", g_root);
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    pd_key fk = PD_KEY_STR("fifo");
    pd_result *r = NULL;
    ck_assert_int_eq(pd_get(g_f, 1, &fk, &r, 0), PD_ERR_KEY); /* no hang */
    ck_assert_int_ne(pd_append(g_f, 1, &fk, &v, 0), 0);
    snprintf(p, sizeof p, "%s/dir", g_root);
    ck_assert_int_eq(mkdir(p, 0700), 0);
    pd_key dk = PD_KEY_STR("dir");
    ck_assert_int_eq(pd_append(g_f, 1, &dk, &v, 0), PD_ERR_KEY);
}
END_TEST

/* ------------------------------------------------------- Open / close */

START_TEST(open_errors_name_the_path) {
    pd_store *s = NULL;
    char p[8192];
    snprintf(p, sizeof p, "%s/missing", g_tmp);
    ck_assert_int_eq(pd_file_open(&s, p, 0), PD_ERR_IO);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(pd_errno(NULL), ENOENT);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(NULL), p));
    ck_assert_ptr_nonnull(strstr(pd_errmsg(NULL), "No such file"));
    snprintf(p, sizeof p, "%s/afile", g_tmp);
    tu_write_file(p, "x", 1);
    ck_assert_int_eq(pd_file_open(&s, p, PD_FILE_CREATE), PD_ERR_IO);
    ck_assert_int_eq(pd_file_open(&s, NULL, 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_file_open(&s, "", 0), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_file_open(&s, g_root, 0x80000000u), PD_ERR_MISUSE);
    ck_assert_int_eq(pd_file_open(NULL, g_root, 0), PD_ERR_MISUSE);
    /* create makes parents */
    snprintf(p, sizeof p, "%s/a/b/c", g_tmp);
    TU_OK(pd_file_open(&s, p, PD_FILE_CREATE), NULL);
    ck_assert_str_eq(pd_store_kind(s), "file");
    ck_assert_int_eq(pd_close(&s), 0);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(pd_close(&s), 0);
}
END_TEST

START_TEST(temp_store_is_private_and_removed) {
    pd_store *s = NULL;
    TU_OK(pd_file_open_temp(&s, g_tmp, 0), NULL);
    char path[4096];
    snprintf(path, sizeof path, "%s", pd_file_path(s));
    ck_assert(strncmp(path, g_tmp, strlen(g_tmp)) == 0);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0700);
    pd_bytes parts[2] = {{"a", 1}, {"b", 1}};
    tu_append1(s, PD_KEY_TUPLE(parts, 2), "x", 1);
    ck_assert_int_eq(pd_close(&s), 0);
    ck_assert_int_ne(stat(path, &st), 0);
    TU_OK(pd_file_open_temp(&s, g_tmp, PD_FILE_KEEP | PD_FILE_FSYNC), NULL);
    snprintf(path, sizeof path, "%s", pd_file_path(s));
    tu_append1(s, PD_KEY_STR("k"), "x", 1);
    ck_assert_int_eq(pd_close(&s), 0);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(pd_file_open_temp(&s, "/nonexistent/dir", 0), PD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(pd_errmsg(NULL), "/nonexistent/dir"));
}
END_TEST

START_TEST(iset_replaces_atomically_and_drop_keeps_lock) {
    pd_key k = PD_KEY_STR("k");
    tu_append1(g_f, k, "old-old-old", 11);
    pd_bytes v = PD_BYTES("new", 3);
    TU_OK(pd_iset(g_f, 1, &k, &v, PD_FSYNC), g_f);
    tu_expect_str(g_f, k, "new");
    pd_bytes v2 = PD_BYTES("ignored", 7);
    TU_OK(pd_iset(g_f, 1, &k, &v2, 0), g_f);
    tu_expect_str(g_f, k, "new");
    /* no temporary left behind */
    ck_assert_int_eq(
        tu_system("test $(ls -A '%s' | grep -c '^%%#') -eq 0", g_root), 0);
    pd_bytes parts[2] = {{"a", 1}, {"b", 1}};
    tu_append1(g_f, PD_KEY_TUPLE(parts, 2), "x", 1);
    TU_OK(pd_drop(g_f, 0), g_f);
    ck_assert_int_eq(tu_system("test \"$(ls -A '%s')\" = .lock", g_root), 0);
    TU_OK(pd_iset(g_f, 1, &k, &v2, 0), g_f); /* drop forgot the iset memo */
    tu_expect_str(g_f, k, "ignored");
}
END_TEST

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const tu_case cases[] = {
        {"plain_keys_use_reference_layout", plain_keys_use_reference_layout},
        {"hostile_keys_get_escaped_names", hostile_keys_get_escaped_names},
        {"long_keys_nest_and_round_trip", long_keys_nest_and_round_trip},
        {"encoding_is_injective_and_decodes",
         encoding_is_injective_and_decodes},
        {"listing_ignores_foreign_names", listing_ignores_foreign_names},
        {"tuple_and_flat_conflict_is_a_clear_error",
         tuple_and_flat_conflict_is_a_clear_error},
        {"symlinks_inside_are_never_followed",
         symlinks_inside_are_never_followed},
        {"hard_links_fifos_and_dirs_are_refused",
         hard_links_fifos_and_dirs_are_refused},
        {"open_errors_name_the_path", open_errors_name_the_path},
        {"temp_store_is_private_and_removed",
         temp_store_is_private_and_removed},
        {"iset_replaces_atomically_and_drop_keeps_lock",
         iset_replaces_atomically_and_drop_keeps_lock},
    };
    return TU_RUN_CASES_FIXTURE("test_file_layout", cases, 300, 0, setup,
                                teardown);
}
