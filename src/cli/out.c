/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* Buffered output of the `partd` CLI (see out.h). */
#include "out.h"
#include "exit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

pd_cli_out pd_cli_stdout = {STDOUT_FILENO, 0, 0, {0}};

static int s_out_write_all(int fd, const void *data, size_t size) {
    const char *p = data;
    while (size > 0) {
        size_t chunk = size > (size_t)1 << 30 ? (size_t)1 << 30 : size;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        p += w;
        size -= (size_t)w;
    }
    return 0;
}

int pd_cli_flush(pd_cli_out *o) {
    if (o->err == 0 && o->len > 0)
        o->err = s_out_write_all(o->fd, o->buf, o->len);
    o->len = 0;
    return o->err;
}

int pd_cli_write(pd_cli_out *o, const void *data, size_t size) {
    if (o->err) return o->err;
    if (size > sizeof(o->buf) - o->len) {
        if (pd_cli_flush(o)) return o->err;
        if (size >= sizeof(o->buf)) {
            o->err = s_out_write_all(o->fd, data, size);
            return o->err;
        }
    }
    memcpy(o->buf + o->len, data, size);
    o->len += size;
    return 0;
}

int pd_cli_puts(pd_cli_out *o, const char *str) {
    return pd_cli_write(o, str, strlen(str));
}

int pd_cli_printf(pd_cli_out *o, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) return o->err = EINVAL;
    if ((size_t)n < sizeof(small)) return pd_cli_write(o, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big) return o->err = ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    pd_cli_write(o, big, (size_t)n);
    free(big);
    return o->err;
}

void pd_cli_errf(const char *fmt, ...) {
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
    (void)s_out_write_all(STDERR_FILENO, msg, len);
}

int pd_cli_finish_stdout(const char *verb, int rc) {
    int err = pd_cli_flush(&pd_cli_stdout);
    if (err == 0) return rc;
    if (err == EPIPE) return PD_CLI_EXIT_PIPE;
    pd_cli_errf("partd: %s: write(stdout): %s\n", verb ? verb : "output",
                strerror(err));
    return PD_CLI_EXIT_FAIL;
}
