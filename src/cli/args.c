/* Option values shared by the CLI's verbs. */
#include "args.h"

#include <errno.h>
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

int pd_cli_find_option(const char *name, size_t nlen, const char *const *names,
                       int n) {
    for (int k = 0; k < n; k++)
        if (strlen(names[k]) == nlen && strncmp(name, names[k], nlen) == 0)
            return k;
    return -1;
}
