/* The File store: layout, escaping, safety, locking, descriptor cache,
 * interop with the Python reference. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char *g_tmp; /* private parent directory for each test */
static char g_root[4096];
static pd_store *g_f;

static void setup(void) {
    g_tmp = tu_mkdtemp();
    ck_assert_ptr_nonnull(g_tmp);
    snprintf(g_root, sizeof g_root, "%s/store", g_tmp);
    int rc = pd_file_open(&g_f, g_root, PD_FILE_CREATE);
    ck_assert_msg(rc == 0, "%s", pd_errmsg(NULL));
}

static void teardown(void) {
    pd_close(&g_f);
    tu_rmtree(g_tmp);
    free(g_tmp);
    g_tmp = NULL;
}

static bool exists(const char *fmt, const char *arg) {
    char p[8192];
    snprintf(p, sizeof p, fmt, arg);
    struct stat st;
    return lstat(p, &st) == 0;
}

/* Entries in g_tmp other than "store" (things created outside the root). */
static int outside_entries(void) {
    return tu_system("test $(ls -A '%s' | grep -v '^store$' | wc -l) -eq 0",
                     g_tmp);
}

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

/* ------------------------------------------------- Descriptor cache */

/* Another actor removes a file behind a handle that caches its
 * descriptor: the next append must land in a new, visible file. */
static void stale_case(int how, bool wait_past_racy) {
    pd_key k = PD_KEY_STR("k");
    tu_append1(g_f, k, "old", 3);
    tu_append1(g_f, k, "+", 1); /* now surely cached */
    if (wait_past_racy) usleep(120000);
    tu_append1(g_f, PD_KEY_STR("other"), "o", 1);
    if (wait_past_racy) usleep(120000);
    char p[8192];
    snprintf(p, sizeof p, "%s/k", g_root);
    if (how == 0) {
        ck_assert_int_eq(unlink(p), 0);
    } else if (how == 1) {
        pd_store *h2 = NULL;
        TU_OK(pd_file_open(&h2, g_root, 0), NULL);
        TU_OK(pd_delete(h2, 1, &k, 0), h2);
        pd_close(&h2);
    } else if (how == 2) {
        /* Python partd's drop: rmtree the directory and recreate it */
        ck_assert_int_eq(tu_system("rm -rf '%s' && mkdir '%s'", g_root, g_root),
                         0);
    } else {
        /* replaced by a new file with other content */
        char tmp[8192];
        snprintf(tmp, sizeof tmp, "%s/newk", g_tmp);
        tu_write_file(tmp, "X", 1);
        ck_assert_int_eq(rename(tmp, p), 0);
    }
    tu_append1(g_f, k, "new", 3);
    tu_file_is(p, how == 3 ? "Xnew" : "new");
    tu_expect_str(g_f, k, how == 3 ? "Xnew" : "new");
}

START_TEST(stale_descriptor_after_unlink) { stale_case(0, _i); }
END_TEST
START_TEST(stale_descriptor_after_other_handle_delete) { stale_case(1, _i); }
END_TEST
START_TEST(stale_descriptor_after_directory_replaced) { stale_case(2, _i); }
END_TEST
START_TEST(stale_descriptor_after_rename_over) { stale_case(3, _i); }
END_TEST

/* Replaces <root>/<rel> behind the store's back, as another process
 * would: a new file with content "X" renamed over it. */
static void replace_behind(const char *rel) {
    char tmp[8192], p[8192];
    snprintf(tmp, sizeof tmp, "%s/newfile", g_tmp);
    snprintf(p, sizeof p, "%s/%s", g_root, rel);
    ck_assert_int_eq(tu_write_file(tmp, "X", 1), 0);
    ck_assert_int_eq(rename(tmp, p), 0);
}

/* A session that finds a directory changed verifies only the descriptors it
 * uses; the others must still be verified later, even once the directory's
 * new ctime is recorded and no longer racy. */
START_TEST(stale_descriptor_unused_in_suspect_session) {
    pd_key x = PD_KEY_STR("x"), y = PD_KEY_STR("y");
    tu_append1(g_f, x, "old", 3);
    tu_append1(g_f, y, "y", 1);
    tu_append1(g_f, x, "+", 1); /* both cached */
    usleep(120000);
    replace_behind("x");
    usleep(120000);
    tu_expect_str(g_f, y, "y"); /* sees the change, uses only y */
    usleep(120000);
    tu_expect_str(g_f, x, "X"); /* not the deleted file's "old+" */
    tu_append1(g_f, x, "new", 3);
    char p[8192];
    snprintf(p, sizeof p, "%s/x", g_root);
    tu_file_is(p, "Xnew");
}
END_TEST

/* A session whose first use of a tuple directory is opening a new key in
 * it must still check the directory before trusting its other cached
 * descriptors. */
START_TEST(stale_descriptor_after_new_key_in_same_directory) {
    pd_bytes pa[2] = {{"d", 1}, {"a", 1}}, pb[2] = {{"d", 1}, {"b", 1}},
             pc[2] = {{"d", 1}, {"c", 1}};
    pd_key a = PD_KEY_TUPLE(pa, 2), b = PD_KEY_TUPLE(pb, 2),
           c = PD_KEY_TUPLE(pc, 2);
    tu_append1(g_f, a, "old", 3);
    tu_append1(g_f, b, "b", 1);
    tu_append1(g_f, a, "+", 1);
    usleep(120000);
    replace_behind("d/a");
    usleep(120000);
    /* one call: c's file is opened (and cached) first, then a's */
    pd_key ks[2] = {c, a};
    pd_bytes vs[2] = {{"c", 1}, {"new", 3}};
    TU_OK(pd_append(g_f, 2, ks, vs, 0), g_f);
    char p[8192];
    snprintf(p, sizeof p, "%s/d/a", g_root);
    tu_file_is(p, "Xnew");
    tu_expect_str(g_f, a, "Xnew");
}
END_TEST

/* A batch get reads every key under one lock, each from its current file,
 * and gives empty values for missing keys. */
START_TEST(batch_get_reads_current_files) {
    pd_key ks[3] = {PD_KEY_STR("p"), PD_KEY_STR("missing"), PD_KEY_STR("q")};
    tu_append1(g_f, ks[0], "pp", 2);
    tu_append1(g_f, ks[2], "q", 1);
    replace_behind("q");
    pd_result *r = NULL;
    TU_OK(pd_get(g_f, 3, ks, &r, 0), g_f);
    ck_assert_uint_eq(pd_result_count(r), 3);
    pd_bytes v0 = pd_result_value(r, 0), v1 = pd_result_value(r, 1),
             v2 = pd_result_value(r, 2);
    ck_assert(v0.size == 2 && memcmp(v0.data, "pp", 2) == 0);
    ck_assert_uint_eq(v1.size, 0);
    ck_assert(v2.size == 1 && memcmp(v2.data, "X", 1) == 0);
    pd_result_free(&r);
}
END_TEST

START_TEST(few_descriptors_many_keys) {
    TU_OK(pd_file_set_max_fds(g_f, 4), g_f);
    enum { N = 300 };
    static char names[N][16];
    pd_key keys[N];
    pd_bytes vals[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "k%d", i);
        keys[i] = PD_KEY_STR(names[i]);
        vals[i] = PD_BYTES(names[i], strlen(names[i]));
    }
    for (int round = 0; round < 3; round++)
        TU_OK(pd_append(g_f, N, keys, vals, 0), g_f);
    pd_result *r = NULL;
    TU_OK(pd_get(g_f, N, keys, &r, 0), g_f);
    for (int i = 0; i < N; i++) {
        pd_bytes v = pd_result_value(r, (size_t)i);
        ck_assert_uint_eq(v.size, 3 * strlen(names[i]));
    }
    pd_result_free(&r);
    TU_OK(pd_file_set_max_fds(g_f, 0), g_f); /* no cache at all */
    TU_OK(pd_append(g_f, N, keys, vals, 0), g_f);
    ck_assert_int_eq(pd_file_set_max_fds(NULL, 3), PD_ERR_MISUSE);
}
END_TEST

/* RLIMIT_NOFILE of 256 in a child, 20k keys appended twice, then read
 * twice through a second handle. */
START_TEST(fd_limit_256) {
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (tu_limit_nofile(256)) _exit(3);
        pd_store *s = NULL;
        if (pd_file_open(&s, g_root, 0)) _exit(4);
        enum { N = 20000, B = 1000 };
        static char names[N][12];
        static pd_key keys[N];
        static pd_bytes vals[N];
        for (int i = 0; i < N; i++) {
            snprintf(names[i], sizeof names[i], "%d", i);
            keys[i] = PD_KEY_STR(names[i]);
            vals[i] = PD_BYTES("ab", 2);
        }
        for (int round = 0; round < 2; round++)
            for (int i = 0; i < N; i += B)
                if (pd_append(s, B, keys + i, vals + i, 0)) {
                    fprintf(stderr, "%s\n", pd_errmsg(s));
                    _exit(5);
                }
        pd_keylist *kl = NULL;
        if (pd_keys(s, &kl, 0) || pd_keylist_count(kl) != N) _exit(6);
        for (size_t i = 0; i < N; i++)
            if (pd_keylist_size(kl, i) != 4) _exit(7);
        pd_keylist_free(&kl);
        /* gets cache their descriptors too: a second handle reads every
         * key, twice, within the same limit */
        pd_store *s2 = NULL;
        if (pd_file_open(&s2, g_root, 0)) _exit(9);
        for (int round = 0; round < 2; round++)
            for (int i = 0; i < N; i += B) {
                pd_result *r = NULL;
                if (pd_get(s2, B, keys + i, &r, 0)) {
                    fprintf(stderr, "%s\n", pd_errmsg(s2));
                    _exit(10);
                }
                for (size_t j = 0; j < B; j++)
                    if (pd_result_value(r, j).size != 4) _exit(11);
                pd_result_free(&r);
            }
        if (pd_close(&s2)) _exit(12);
        _exit(pd_close(&s) ? 8 : 0);
    }
    int st = tu_waitpid(pid);
    ck_assert_msg(st == 0, "child status %d", st);
}
END_TEST

/* ------------------------------------------------------------ Reads */

/* A get reads to the end of the file, from a size it remembers for the
 * cached descriptor: growth by anyone else must still be read in full. */

/* Deterministic bytes: byte i of a value built by s_fill(..., seed). */
static void s_fill(char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (i * 7 + seed * 13 + i / 251) % 26);
}

/* Appends n bytes to <root>/<rel> as a writer that ignores the lock would,
 * without changing the directory. */
static void s_outside_append(const char *rel, const char *p, size_t n) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", g_root, rel);
    int fd = open(path, O_WRONLY | O_APPEND);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
    close(fd);
}

/* The handle that reads: g_f (its descriptor is the append's) or a fresh
 * handle that only reads (a read-only cached descriptor). */
static pd_store *s_reader(bool fresh) {
    if (!fresh) return g_f;
    pd_store *h = NULL;
    TU_OK(pd_file_open(&h, g_root, 0), NULL);
    return h;
}

static void s_reader_done(pd_store **h) {
    if (*h != g_f) pd_close(h);
}

/* Reads k until h trusts its cached descriptor without an fstat: past the
 * time the directory's recorded ctime is "racy" (a session that finds it
 * racy verifies the descriptor, and the verifying fstat gives the size). */
static void s_settle(pd_store *h, pd_key k, const char *want, size_t len) {
    tu_expect(h, k, want, len);
    usleep(120000);
    tu_expect(h, k, want, len);
    tu_expect(h, k, want, len);
}

/* how: 0 another handle appends a little (within the slack), 1 another
 * handle appends megabytes, 2 another process appends, 3 a writer ignoring
 * the lock appends; reader: _i / 4. */
START_TEST(get_reads_past_remembered_size) {
    int how = _i % 4;
    bool fresh = _i / 4;
    pd_key k = PD_KEY_STR("k");
    size_t cap = 3 << 20, len = 0;
    char *want = malloc(cap);
    ck_assert_ptr_nonnull(want);
    s_fill(want, cap, 1);
    size_t n0 = 1000;
    tu_append1(g_f, k, want, n0);
    len = n0;
    pd_store *h = s_reader(fresh);
    s_settle(h, k, want, len); /* cached, size remembered */
    size_t grow = how == 0 ? 100 : how == 1 ? cap - n0 - 5000 : 70000;
    if (how <= 1) {
        pd_store *h2 = NULL;
        TU_OK(pd_file_open(&h2, g_root, 0), NULL);
        tu_append1(h2, k, want + len, grow);
        pd_close(&h2);
    } else if (how == 2) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            pd_store *h2 = NULL;
            pd_bytes v = {want + len, grow};
            int rc =
                pd_file_open(&h2, g_root, 0) || pd_append(h2, 1, &k, &v, 0);
            rc = rc || pd_close(&h2);
            free(want);
            if (h != g_f) pd_close(&h);
            _exit(rc ? 1 : 0);
        }
        ck_assert_int_eq(tu_waitpid(pid), 0);
    } else {
        s_outside_append("k", want + len, grow);
    }
    len += grow;
    tu_expect(h, k, want, len);
    /* the remembered size follows: a small append, then a get */
    tu_append1(h, k, want + len, 10);
    len += 10;
    tu_expect(h, k, want, len);
    tu_expect(g_f, k, want, len);
    s_reader_done(&h);
    free(want);
}
END_TEST

/* Truncated behind the handle's back (no directory change), then grown
 * again past the size the handle remembers. */
START_TEST(get_after_truncate_and_regrow) {
    pd_key k = PD_KEY_STR("k");
    char buf[9000];
    s_fill(buf, sizeof buf, 2);
    tu_append1(g_f, k, buf, 5000);
    pd_store *h = s_reader(_i);
    s_settle(h, k, buf, 5000);
    char p[8192];
    snprintf(p, sizeof p, "%s/k", g_root);
    ck_assert_int_eq(truncate(p, 10), 0);
    tu_expect(h, k, buf, 10);
    ck_assert_int_eq(truncate(p, 0), 0);
    s_settle(h, k, buf, 0);
    s_outside_append("k", buf, sizeof buf);
    tu_expect(h, k, buf, sizeof buf);
    ck_assert_int_eq(truncate(p, 300), 0);
    tu_expect(h, k, buf, 300);
    s_reader_done(&h);
}
END_TEST

/* stale_case for a descriptor a get cached (read-only, in a handle that
 * never appended before): the file deleted, dropped or renamed over. */
static void stale_read_case(int how, bool wait_past_racy) {
    pd_key k = PD_KEY_STR("k");
    tu_append1(g_f, k, "old", 3);
    tu_append1(g_f, PD_KEY_STR("other"), "o", 1);
    pd_store *h = s_reader(true);
    tu_expect_str(h, k, "old"); /* cached read-only */
    tu_expect_str(h, k, "old");
    if (wait_past_racy) usleep(120000);
    tu_expect_str(h, PD_KEY_STR("other"), "o");
    if (wait_past_racy) usleep(120000);
    char p[8192];
    snprintf(p, sizeof p, "%s/k", g_root);
    if (how == 0) {
        ck_assert_int_eq(unlink(p), 0);
    } else if (how == 1) {
        TU_OK(pd_delete(g_f, 1, &k, 0), g_f);
    } else if (how == 2) {
        ck_assert_int_eq(tu_system("rm -rf '%s' && mkdir '%s'", g_root, g_root),
                         0);
    } else {
        replace_behind("k");
    }
    tu_expect_str(h, k, how == 3 ? "X" : "");
    tu_append1(h, k, "new", 3); /* through a descriptor opened for it */
    tu_file_is(p, how == 3 ? "Xnew" : "new");
    tu_expect_str(h, k, how == 3 ? "Xnew" : "new");
    s_reader_done(&h);
}

START_TEST(stale_read_descriptor_after_unlink) { stale_read_case(0, _i); }
END_TEST
START_TEST(stale_read_descriptor_after_other_handle_delete) {
    stale_read_case(1, _i);
}
END_TEST
START_TEST(stale_read_descriptor_after_directory_replaced) {
    stale_read_case(2, _i);
}
END_TEST
START_TEST(stale_read_descriptor_after_rename_over) { stale_read_case(3, _i); }
END_TEST

/* Values far larger than the slack, empty files, missing keys and files
 * that grow from empty, in one batch and one by one. */
START_TEST(large_values_and_empty_files) {
    size_t big = (1 << 20) + 17;
    char *want = malloc(big);
    ck_assert_ptr_nonnull(want);
    s_fill(want, big, 3);
    pd_key kb = PD_KEY_STR("big"), ke = PD_KEY_STR("empty"),
           km = PD_KEY_STR("missing"), ks = PD_KEY_STR("small");
    for (size_t at = 0; at < big; at += 65536)
        tu_append1(g_f, kb, want + at, big - at < 65536 ? big - at : 65536);
    tu_append1(g_f, ke, "", 0);
    ck_assert(exists("%s/empty", g_root));
    tu_append1(g_f, ks, "s", 1);
    for (int round = 0; round < 2; round++) {
        pd_store *h = s_reader(round);
        pd_key ks4[5] = {ke, kb, km, ks, kb};
        pd_result *r = NULL;
        TU_OK(pd_get(h, 5, ks4, &r, 0), h);
        ck_assert_uint_eq(pd_result_count(r), 5);
        pd_bytes v[5];
        for (int i = 0; i < 5; i++) v[i] = pd_result_value(r, (size_t)i);
        ck_assert_uint_eq(v[0].size, 0);
        ck_assert(v[1].size == big && memcmp(v[1].data, want, big) == 0);
        ck_assert_uint_eq(v[2].size, 0);
        ck_assert(v[3].size == 1 && memcmp(v[3].data, "s", 1) == 0);
        ck_assert(v[4].size == big && memcmp(v[4].data, want, big) == 0);
        ck_assert_uint_eq(pd_result_total(r), 2 * big + 1);
        pd_result_free(&r);
        tu_expect(h, kb, want, big);
        tu_expect(h, ke, "", 0);
        s_reader_done(&h);
    }
    /* the empty file grows behind the handles' backs, past the slack */
    pd_store *h = s_reader(true);
    s_settle(h, ke, "", 0);
    s_settle(g_f, ke, "", 0);
    s_outside_append("empty", want, 300);
    tu_expect(h, ke, want, 300);
    tu_expect(g_f, ke, want, 300);
    s_outside_append("empty", want + 300, 70000);
    tu_expect(h, ke, want, 70300);
    tu_expect(g_f, ke, want, 70300);
    s_reader_done(&h);
    free(want);
}
END_TEST

/* A key read first (read-only descriptor cached) and then appended to by
 * the same handle, including a batch that fails and is rolled back. */
START_TEST(read_descriptor_replaced_for_append) {
    pd_key k = PD_KEY_STR("k");
    tu_append1(g_f, k, "ab", 2);
    pd_store *h = s_reader(true);
    tu_expect_str(h, k, "ab");
    tu_append1(h, k, "c", 1);
    tu_expect_str(h, k, "abc");
    tu_expect_str(g_f, k, "abc");
    /* again read-only, then a batch whose second key conflicts: the
     * first append is undone through the descriptor opened for it */
    pd_close(&h);
    h = s_reader(true);
    tu_expect_str(h, k, "abc");
    pd_bytes parts[2] = {{"k", 1}, {"z", 1}};
    pd_key ks[2] = {k, PD_KEY_TUPLE(parts, 2)};
    pd_bytes vs[2] = {{"d", 1}, {"e", 1}};
    ck_assert_int_eq(pd_append(h, 2, ks, vs, 0), PD_ERR_KEY);
    tu_expect_str(h, k, "abc");
    tu_append1(h, k, "f", 1);
    tu_expect_str(h, k, "abcf");
    char p[8192];
    snprintf(p, sizeof p, "%s/k", g_root);
    tu_file_is(p, "abcf");
    s_reader_done(&h);
}
END_TEST

/* Counts of the calls that go through the system-call table. */
static int g_nopen, g_nread;
static int g_grow_fd = -1;
static int c_openat(int dfd, const char *p, int fl, mode_t m) {
    g_nopen++;
    return openat(dfd, p, fl, m);
}
static ssize_t c_pread(int fd, void *b, size_t n, off_t off) {
    g_nread++;
    if (g_grow_fd >= 0) { /* a writer ignoring the lock, always ahead */
        char chunk[8192];
        memset(chunk, 'g', sizeof chunk);
        if (write(g_grow_fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk)
            return -1;
    }
    return pread(fd, b, n, off);
}

static void s_count_start(void) {
    g_nopen = g_nread = 0;
    pd__sys_table.openat = c_openat;
    pd__sys_table.pread = c_pread;
}

/* The calls a get or an append costs: deterministic, so checked here
 * (their timing is bench/bench_core's). */
START_TEST(open_and_read_call_counts) {
    enum { N = 64 };
    static char names[2 * N][16];
    pd_key keys[2 * N];
    pd_bytes vals[2 * N];
    for (int i = 0; i < 2 * N; i++) {
        snprintf(names[i], sizeof names[i], "k%d", i);
        keys[i] = PD_KEY_STR(names[i]);
        vals[i] = PD_BYTES(names[i], strlen(names[i]));
    }
    TU_OK(pd_file_set_max_fds(g_f, 8), g_f);
    /* new keys: one openat each */
    s_count_start();
    int rc = pd_append(g_f, N, keys, vals, 0);
    pd__sys_reset();
    TU_OK(rc, g_f);
    ck_assert_int_eq(g_nopen, N);
    /* reopened after eviction: after the first misses, one openat each */
    s_count_start();
    rc = pd_append(g_f, N, keys, vals, 0);
    int second = g_nopen;
    g_nopen = 0;
    if (rc == 0) rc = pd_append(g_f, N, keys, vals, 0);
    pd__sys_reset();
    TU_OK(rc, g_f);
    ck_assert_int_le(second, N + 2);
    ck_assert_int_eq(g_nopen, N);
    /* new keys again: the guess turns back within a few */
    s_count_start();
    rc = pd_append(g_f, N, keys + N, vals + N, 0);
    pd__sys_reset();
    TU_OK(rc, g_f);
    ck_assert_int_le(g_nopen, N + 2);
    /* a key removed meanwhile while existing files are expected */
    TU_OK(pd_append(g_f, N, keys, vals, 0), g_f);
    TU_OK(pd_delete(g_f, 1, &keys[5], 0), g_f);
    TU_OK(pd_append(g_f, N, keys, vals, 0), g_f);
    tu_expect_str(g_f, keys[5], names[5]);
    tu_expect(g_f, keys[6], "k6k6k6k6k6", 10);
    /* a cached get: one pread, no open */
    TU_OK(pd_file_set_max_fds(g_f, 1024), g_f);
    tu_append1(g_f, keys[0], "+", 1);
    s_count_start();
    char *got;
    size_t len;
    rc = tu_fetch1(g_f, keys[0], &got, &len);
    pd__sys_reset();
    TU_OK(rc, g_f);
    free(got);
    ck_assert_uint_eq(len, 5 * 2 + 1);
    ck_assert_int_eq(g_nopen, 0);
    ck_assert_int_eq(g_nread, 1);
    /* a fresh handle: the first get opens, the second does not */
    pd_store *h = s_reader(true);
    s_count_start();
    rc = tu_fetch1(h, keys[1], &got, NULL);
    free(got);
    int first_open = g_nopen;
    g_nopen = g_nread = 0;
    if (rc == 0) rc = tu_fetch1(h, keys[1], &got, NULL);
    pd__sys_reset();
    TU_OK(rc, h);
    ck_assert_str_eq(got, "k1k1k1k1k1");
    free(got);
    ck_assert_int_eq(first_open, 1);
    ck_assert_int_eq(g_nopen, 0);
    ck_assert_int_eq(g_nread, 1);
    pd_close(&h);
}
END_TEST

/* A file that grows at every read (a writer ignoring the lock): the get
 * ends, with a prefix of what was written. */
START_TEST(get_of_file_growing_under_it_ends) {
    pd_key k = PD_KEY_STR("k");
    tu_append1(g_f, k, "start", 5);
    pd_store *h = s_reader(_i);
    s_settle(h, k, "start", 5);
    char p[8192];
    snprintf(p, sizeof p, "%s/k", g_root);
    g_grow_fd = open(p, O_WRONLY | O_APPEND);
    ck_assert_int_ge(g_grow_fd, 0);
    s_count_start();
    char *got;
    size_t len;
    int rc = tu_fetch1(h, k, &got, &len);
    pd__sys_reset();
    close(g_grow_fd);
    g_grow_fd = -1;
    TU_OK(rc, h);
    ck_assert_int_le(g_nread, 40);
    ck_assert_uint_ge(len, 5);
    ck_assert_uint_le(len, 5 + (size_t)g_nread * 8192);
    ck_assert(memcmp(got, "start", 5) == 0);
    for (size_t i = 5; i < len; i++) ck_assert_int_eq(got[i], 'g');
    free(got);
    s_reader_done(&h);
}
END_TEST

/* --------------------------------------------------------- Locking */

START_TEST(lock_is_recursive_and_shared_per_directory) {
    pd_store *h2 = NULL;
    TU_OK(pd_file_open(&h2, g_root, 0), NULL);
    TU_OK(pd_lock(g_f), g_f);
    TU_OK(pd_lock(g_f), g_f);
    /* same thread, second handle on the same directory: no deadlock */
    tu_append1(h2, PD_KEY_STR("k"), "a", 1);
    tu_append1(g_f, PD_KEY_STR("k"), "b", 1);
    pd_key k = PD_KEY_STR("k");
    pd_bytes v = PD_BYTES("c", 1);
    TU_OK(pd_append(g_f, 1, &k, &v, PD_NOLOCK), g_f);
    TU_OK(pd_unlock(g_f), g_f);
    TU_OK(pd_unlock(g_f), g_f);
    ck_assert_int_eq(pd_unlock(g_f), PD_ERR_MISUSE);
    tu_expect_str(h2, k, "abc");
    /* closing while locked releases the lock */
    TU_OK(pd_lock(h2), h2);
    pd_close(&h2);
    tu_append1(g_f, k, "d", 1);
}
END_TEST

/* A child process holding the lock blocks our append until it lets go. */
START_TEST(flock_excludes_other_processes) {
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        pd_store *s = NULL;
        if (pd_file_open(&s, g_root, 0) || pd_lock(s)) _exit(2);
        if (write(pfd[1], "L", 1) != 1) _exit(3);
        usleep(300000);
        pd_key k = PD_KEY_STR("k");
        pd_bytes v = PD_BYTES("child", 5);
        if (pd_append(s, 1, &k, &v, PD_NOLOCK)) _exit(4);
        pd_unlock(s);
        pd_close(&s);
        _exit(0);
    }
    char c;
    ck_assert_int_eq(read(pfd[0], &c, 1), 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tu_append1(g_f, PD_KEY_STR("k"), "parent", 6);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) +
                    (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    ck_assert_msg(waited > 0.15, "append did not wait for the lock (%.3f s)",
                  waited);
    ck_assert_int_eq(tu_waitpid(pid), 0);
    tu_expect_str(g_f, PD_KEY_STR("k"), "childparent");
    close(pfd[0]);
    close(pfd[1]);
}
END_TEST

/* A handle inherited through fork takes its own lock in the child. */
START_TEST(handle_survives_fork) {
    tu_append1(g_f, PD_KEY_STR("k"), "p1,", 3);
    TU_OK(pd_lock(g_f), g_f);
    pid_t pid = fork();
    if (pid == 0) {
        /* parent holds the lock: our append must wait for it */
        pd_key k = PD_KEY_STR("k");
        pd_bytes v = PD_BYTES("c,", 2);
        _exit(pd_append(g_f, 1, &k, &v, 0) ? 1 : 0);
    }
    usleep(200000);
    tu_append1(g_f, PD_KEY_STR("k"), "p2,", 3);
    TU_OK(pd_unlock(g_f), g_f);
    ck_assert_int_eq(tu_waitpid(pid), 0);
    tu_expect_str(g_f, PD_KEY_STR("k"), "p1,p2,c,");
}
END_TEST

/* ------------------------------------------------- Python interop */

START_TEST(python_reference_interop) {
    if (!tu_have_python_partd()) {
        fprintf(stderr, "SKIP python_reference_interop: no partd in %s\n",
                PARTD_TEST_PYTHON);
        return;
    }
    int rc =
        tu_system("%s -c \"import partd; p = partd.File('%s'); "
                  "p.append({'x': b'py-x', ('a', 'b'): b'py-ab', 7: b'seven', "
                  "'part-1': b'\\x00\\x01'})\"",
                  PARTD_TEST_PYTHON, g_root);
    ck_assert_int_eq(rc, 0);
    pd_bytes parts[2] = {{"a", 1}, {"b", 1}};
    pd_key keys[4] = {PD_KEY_STR("x"), PD_KEY_TUPLE(parts, 2), PD_KEY_STR("7"),
                      PD_KEY_STR("part-1")};
    pd_result *r = NULL;
    TU_OK(pd_get(g_f, 4, keys, &r, 0), g_f);
    ck_assert(pd_result_value(r, 0).size == 4 &&
              !memcmp(pd_result_value(r, 0).data, "py-x", 4));
    ck_assert(pd_result_value(r, 1).size == 5 &&
              !memcmp(pd_result_value(r, 1).data, "py-ab", 5));
    ck_assert(pd_result_value(r, 2).size == 5);
    ck_assert(pd_result_value(r, 3).size == 2 &&
              !memcmp(pd_result_value(r, 3).data, "\x00\x01", 2));
    pd_result_free(&r);
    pd_bytes vals[4] = {{"+c", 2}, {"+c", 2}, {"+c", 2}, {"+c", 2}};
    TU_OK(pd_append(g_f, 4, keys, vals, 0), g_f);
    rc = tu_system("%s -c \"import partd, sys; p = partd.File('%s'); "
                   "got = p.get(['x', ('a', 'b'), 7, 'part-1']); "
                   "sys.exit(0 if got == [b'py-x+c', b'py-ab+c', b'seven+c', "
                   "b'\\x00\\x01+c'] else 1)\"",
                   PARTD_TEST_PYTHON, g_root);
    ck_assert_int_eq(rc, 0);
    /* the Python reference holding the lock excludes us */
    pid_t pid = fork();
    if (pid == 0) {
        execl(PARTD_TEST_PYTHON, PARTD_TEST_PYTHON, "-c",
              "import partd, sys, time\n"
              "p = partd.File(sys.argv[1])\n"
              "with p.lock:\n"
              "    open(sys.argv[1] + '/../held', 'w').close()\n"
              "    time.sleep(0.4)\n"
              "    p.append({'x': b'+py'}, lock=False)\n",
              g_root, (char *)NULL);
        _exit(127);
    }
    char held[8192];
    snprintf(held, sizeof held, "%s/held", g_tmp);
    for (int i = 0; i < 500 && access(held, F_OK) != 0; i++) usleep(10000);
    ck_assert_int_eq(access(held, F_OK), 0);
    tu_append1(g_f, PD_KEY_STR("x"), "+c2", 3);
    ck_assert_int_eq(tu_waitpid(pid), 0);
    tu_expect_str(g_f, PD_KEY_STR("x"), "py-x+c+py+c2");
}
END_TEST

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("file");
    TCase *tc = tcase_create("layout");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, plain_keys_use_reference_layout);
    tcase_add_test(tc, hostile_keys_get_escaped_names);
    tcase_add_test(tc, long_keys_nest_and_round_trip);
    tcase_add_test(tc, encoding_is_injective_and_decodes);
    tcase_add_test(tc, listing_ignores_foreign_names);
    tcase_add_test(tc, tuple_and_flat_conflict_is_a_clear_error);
    suite_add_tcase(s, tc);

    tc = tcase_create("safety");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, symlinks_inside_are_never_followed);
    tcase_add_test(tc, hard_links_fifos_and_dirs_are_refused);
    tcase_add_test(tc, open_errors_name_the_path);
    tcase_add_test(tc, temp_store_is_private_and_removed);
    tcase_add_test(tc, iset_replaces_atomically_and_drop_keeps_lock);
    suite_add_tcase(s, tc);

    tc = tcase_create("cache");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, stale_descriptor_after_unlink, 0, 2);
    tcase_add_loop_test(tc, stale_descriptor_after_other_handle_delete, 0, 2);
    tcase_add_loop_test(tc, stale_descriptor_after_directory_replaced, 0, 2);
    tcase_add_loop_test(tc, stale_descriptor_after_rename_over, 0, 2);
    tcase_add_test(tc, stale_descriptor_unused_in_suspect_session);
    tcase_add_test(tc, stale_descriptor_after_new_key_in_same_directory);
    tcase_add_test(tc, batch_get_reads_current_files);
    tcase_add_test(tc, few_descriptors_many_keys);
    tcase_add_test(tc, fd_limit_256);
    suite_add_tcase(s, tc);

    tc = tcase_create("reads");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, get_reads_past_remembered_size, 0, 8);
    tcase_add_loop_test(tc, get_after_truncate_and_regrow, 0, 2);
    tcase_add_loop_test(tc, stale_read_descriptor_after_unlink, 0, 2);
    tcase_add_loop_test(tc, stale_read_descriptor_after_other_handle_delete, 0,
                        2);
    tcase_add_loop_test(tc, stale_read_descriptor_after_directory_replaced, 0,
                        2);
    tcase_add_loop_test(tc, stale_read_descriptor_after_rename_over, 0, 2);
    tcase_add_test(tc, large_values_and_empty_files);
    tcase_add_test(tc, read_descriptor_replaced_for_append);
    tcase_add_test(tc, open_and_read_call_counts);
    tcase_add_loop_test(tc, get_of_file_growing_under_it_ends, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("locking");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, lock_is_recursive_and_shared_per_directory);
    tcase_add_test(tc, flock_excludes_other_processes);
    tcase_add_test(tc, handle_survives_fork);
    tcase_add_test(tc, python_reference_interop);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
