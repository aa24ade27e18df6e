/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * `partd stats`: how a server's figures (pd_server_stats) are printed, as
 * `name value` lines or as JSON (see stats.h).  The verb itself is a store
 * verb (verbs.c).
 */
#include "partd/partd.h"
#include "out.h"
#include "stats.h"

#include <inttypes.h>
#include <stddef.h>
#include <string.h>

/* The figures of pd_server_stats, in the order printed. */
#define S_STAT(m)                                                              \
    { #m, offsetof(pd_server_stats, m) }
static const struct {
    const char *name;
    size_t off;
} s_stat_fields[] = {
    S_STAT(keys),
    S_STAT(bytes),
    S_STAT(records),
    S_STAT(appended_bytes),
    S_STAT(requests),
    S_STAT(failed),
    S_STAT(req_syn),
    S_STAT(req_append),
    S_STAT(req_get),
    S_STAT(req_iset),
    S_STAT(req_delete),
    S_STAT(req_drop),
    S_STAT(req_keys),
    S_STAT(req_stats),
    S_STAT(req_close),
    S_STAT(req_other),
    S_STAT(buffer),
    S_STAT(memory),
    S_STAT(memory_limit),
    S_STAT(spills),
    S_STAT(rss),
    S_STAT(clients),
    S_STAT(connections),
    S_STAT(uptime_ms),
    S_STAT(req_attempt),
    S_STAT(attempts_open),
    S_STAT(attempts_committed),
    S_STAT(attempts_aborted),
    S_STAT(attempts_conflicted),
    S_STAT(attempts_expired),
};
#undef S_STAT

/* s as a JSON string (quotes, backslashes and control bytes escaped). */
static void s_json_str(const char *s) {
    pd_cli_puts(&pd_cli_stdout, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            pd_cli_printf(&pd_cli_stdout, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            pd_cli_printf(&pd_cli_stdout, "\\u%04x", c);
        else
            pd_cli_write(&pd_cli_stdout, s, 1);
    }
    pd_cli_puts(&pd_cli_stdout, "\"");
}

void pd_cli_print_stats(const char *addr, const pd_server_stats *st, bool json,
                        bool first, bool many) {
    pd_cli_out *o = &pd_cli_stdout;
    if (json) {
        pd_cli_puts(o, first ? (many ? "[{" : "{") : ",\n {");
        pd_cli_puts(o, "\"address\": ");
        s_json_str(addr);
    } else {
        if (!first) pd_cli_puts(o, "\n");
        pd_cli_printf(o, "server %s\n", addr);
    }
    for (size_t i = 0; i < sizeof s_stat_fields / sizeof *s_stat_fields; i++) {
        uint64_t v;
        memcpy(&v, (const char *)st + s_stat_fields[i].off, sizeof v);
        if (json)
            pd_cli_printf(o, ", \"%s\": %" PRIu64, s_stat_fields[i].name, v);
        else
            pd_cli_printf(o, "%s %" PRIu64 "\n", s_stat_fields[i].name, v);
    }
    if (json) pd_cli_puts(o, "}");
}
