/* Option values shared by the CLI's verbs. */
#include "args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pd_cli_parse_bytes(const char *s, uint64_t *out) {
    if (!s || *s < '0' || *s > '9') return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return -1;
    unsigned shift = 0;
    if (*end) {
        const char *units = "kmgt";
        const char *u = strchr(units, end[0] | 0x20);
        if (!u || end[1]) return -1;
        shift = 10 * (unsigned)(u - units + 1);
    }
    if (shift && v > (UINT64_MAX >> shift)) return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

int pd_cli_take_option(int argc, char **argv, int *i, const char *const *names,
                       int n, const char **val, char *why, size_t cap) {
    const char *name = argv[*i] + 2, *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    int which = -1;
    for (int k = 0; k < n && which < 0; k++)
        if (strlen(names[k]) == nlen && strncmp(name, names[k], nlen) == 0)
            which = k;
    if (which < 0) {
        snprintf(why, cap, "unknown option '--%.*s'",
                 (int)(nlen > 100 ? 100 : nlen), name);
        return -1;
    }
    if (eq) {
        *val = eq + 1;
    } else if (*i + 1 < argc) {
        *val = argv[++*i];
    } else {
        snprintf(why, cap, "option '--%s' needs a value", names[which]);
        return -1;
    }
    return which;
}
