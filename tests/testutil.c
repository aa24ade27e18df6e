/* Shared helpers for the Check suites. */
#include "testutil.h"
#ifndef PARTD_TEST_PYTHON
#define PARTD_TEST_PYTHON "/usr/bin/python3"
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

char *tu_mkdtemp(void) {
    const char *t = getenv("TMPDIR");
    char *p = NULL;
    if (asprintf(&p, "%s/pdtest-XXXXXX", t && *t ? t : "/tmp") < 0) return NULL;
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

static int s_rm(const char *path, const struct stat *sb, int flag,
                struct FTW *ftw) {
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP || flag == FTW_D) {
        chmod(path, 0700);
        return rmdir(path) == 0 || errno == ENOENT ? 0 : 0;
    }
    unlink(path);
    return 0;
}

int tu_rmtree(const char *path) {
    if (!path) return 0;
    /* Make every directory writable first so a test that removed
     * permissions can still clean up. */
    tu_system("chmod -R u+rwx '%s' 2>/dev/null", path);
    return nftw(path, s_rm, 64, FTW_DEPTH | FTW_PHYS);
}

char *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap + 1);
    size_t r;
    while ((r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            b = realloc(b, cap + 1);
        }
    }
    fclose(f);
    b[n] = 0;
    if (len) *len = n;
    return b;
}

int tu_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, len, f);
    return fclose(f) == 0 && w == len ? 0 : -1;
}

int tu_system(const char *fmt, ...) {
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = vasprintf(&cmd, fmt, ap);
    va_end(ap);
    if (rc < 0) return -1;
    rc = system(cmd);
    free(cmd);
    if (rc == -1 || !WIFEXITED(rc)) return -1;
    return WEXITSTATUS(rc);
}

bool tu_have_python_partd(void) {
    static int have = -1;
    if (have < 0)
        have = access(PARTD_TEST_PYTHON, X_OK) == 0 &&
               tu_system("%s -c 'import partd' 2>/dev/null",
                         PARTD_TEST_PYTHON) == 0;
    return have == 1;
}

char *tu_get1(pd_store *s, const pd_key *k, size_t *len) {
    pd_result *r = NULL;
    int rc = pd_get(s, 1, k, &r, 0);
    ck_assert_msg(rc == 0, "get: %s", pd_errmsg(s));
    pd_bytes v = pd_result_value(r, 0);
    char *out = malloc(v.size + 1);
    if (v.size) memcpy(out, v.data, v.size);
    out[v.size] = 0;
    if (len) *len = v.size;
    pd_result_free(&r);
    return out;
}

void tu_append1(pd_store *s, pd_key k, const void *v, size_t n) {
    pd_bytes b = {v, n};
    int rc = pd_append(s, 1, &k, &b, 0);
    ck_assert_msg(rc == 0, "append: %s", pd_errmsg(s));
}

int tu_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
