/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * bench_core's report: the host it ran on, each row's verdict against its
 * target, and the table, CSV and JSON (bench/run and bench/report.py read
 * the CSV and JSON: their columns and row ids are an interface).
 */
#include "bench_core.h"

#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

bc_host host;

void bc_loadavg(char *out, size_t cap) {
    FILE *fp = fopen("/proc/loadavg", "r");
    out[0] = '\0';
    if (fp) {
        double a = 0, b = 0, c = 0;
        if (fscanf(fp, "%lf %lf %lf", &a, &b, &c) == 3)
            snprintf(out, cap, "%.2f %.2f %.2f", a, b, c);
        fclose(fp);
    }
}

void bc_host_info(void) {
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(host.date, sizeof host.date, "%Y-%m-%d %H:%M:%S %z", &tm);
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(host.kernel, sizeof host.kernel, "%s", u.release);
    host.nproc = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(host.cpu, sizeof host.cpu, "unknown");
    FILE *fp = fopen("/proc/cpuinfo", "r");
    if (fp) {
        char line[512];
        while (fgets(line, sizeof line, fp))
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c) {
                    c++;
                    while (*c == ' ' || *c == '\t') c++;
                    c[strcspn(c, "\n")] = '\0';
                    snprintf(host.cpu, sizeof host.cpu, "%s", c);
                }
                break;
            }
        fclose(fp);
    }
    bc_loadavg(host.load0, sizeof host.load0);
}

static const char *s_section_title(int sec, char *buf, size_t cap) {
    if (sec == 0)
        snprintf(buf, cap,
                 "%zu-byte values: %zu appends over %zu keys, %zu keys per "
                 "call; then 1 get per key (small Buffer: %.1f MiB)",
                 cfg.vsize, cfg.nvals, cfg.nkeys, cfg.per_call,
                 (double)cfg.spill_limit / MIB);
    else if (sec == 1)
        snprintf(buf, cap,
                 "%zu MiB values: %zu keys x %zu appends (%.0f MiB), %zu keys "
                 "per call",
                 cfg.big_size >> 20, cfg.big_keys, cfg.big_rounds,
                 bc_big_bytes() / MIB, cfg.big_keys);
    else if (sec == 3)
        snprintf(buf, cap,
                 "Log vs File: the %zu-byte values above; then %.0f MiB in "
                 "4 KiB values over 1024 partitions, 16 per call, read back "
                 "(cached) and appended from threads",
                 cfg.vsize, bc_log_part_bytes() / MIB);
    else
        snprintf(buf, cap,
                 "peak memory: Buffer(Dict,File,%.0f MiB) fed %.0f MiB of "
                 "%zu B..%zu KiB values over 1000 keys, forked child",
                 (double)cfg.mem_limit / MIB, (double)cfg.mem_total / MIB,
                 cfg.mem_min, cfg.mem_max >> 10);
    return buf;
}

/* The floor (or limit) value a row is compared with; NAN-free: -1 if none. */
static double s_floor_value(int r) {
    if (rows[r].tkind == T_LIMIT_MAX) return (double)cfg.mem_limit / MIB;
    if (rows[r].floor < 0) return -1;
    bc_stat f = bc_stats(rows[r].floor);
    return f.have ? f.med : -1;
}

/* The ratio the row is judged on (or shown with); -1 if none. */
static double s_ratio(int r) {
    bc_stat s = bc_stats(r);
    double f = s_floor_value(r);
    if (!s.have || f <= 0) return -1;
    return (rows[r].tkind == T_LIMIT_MAX ? s.max : s.med) / f;
}

bool bc_section_on(int sec) { return cfg.sections & (1u << sec); }

/* "PASS", "FAIL", "ERROR", "info", "floor", "skipped". */
const char *bc_verdict(int r) {
    if (!bc_section_on(rows[r].section)) return "skipped";
    if (!bc_ok(r)) return "ERROR";
    bc_stat s = bc_stats(r);
    if (!s.have) return "ERROR";
    switch (rows[r].tkind) {
    case T_FLOOR: return "floor";
    case T_INFO: return "info";
    case T_ABS_MIN: return s.med >= rows[r].target ? "PASS" : "FAIL";
    case T_RATIO_MIN:
    case T_LIMIT_MAX: {
        double q = s_ratio(r);
        if (q < 0) return "ERROR"; /* its floor failed */
        if (rows[r].tkind == T_RATIO_MIN)
            return q >= rows[r].target ? "PASS" : "FAIL";
        return q <= rows[r].target ? "PASS" : "FAIL";
    }
    }
    return "ERROR";
}

static const char *s_target_text(int r, char *buf, size_t cap) {
    char a[32];
    switch (rows[r].tkind) {
    case T_FLOOR: snprintf(buf, cap, "-"); break;
    case T_INFO: snprintf(buf, cap, "(none)"); break;
    case T_ABS_MIN:
        snprintf(buf, cap, ">= %s %s",
                 bc_fmt(rows[r].target, rows[r].unit, a, sizeof a),
                 rows[r].unit);
        break;
    case T_RATIO_MIN:
        snprintf(buf, cap, ">= %.2f x floor", rows[r].target);
        break;
    case T_LIMIT_MAX:
        snprintf(buf, cap, "<= %.2f x limit (%.1f MiB)", rows[r].target,
                 rows[r].target * (double)cfg.mem_limit / MIB);
        break;
    }
    return buf;
}

/* Notes computed from several rows, once every run is done. */
void bc_finish_notes(void) {
    bc_stat a = bc_stats(R_FILE_APPEND), w = bc_stats(R_FLOOR_WRITE);
    char b[32];
    if (a.have && w.have && w.med > 0)
        snprintf(rows[R_FILE_APPEND].note, sizeof rows[R_FILE_APPEND].note,
                 "ratio to write() on already-open files (%s rec/s): %.2f; "
                 "creating files costs what it costs on this file system",
                 bc_fmt(w.med, "rec/s", b, sizeof b), a.med / w.med);

    /* The Log's T/1 beside the kernel's for the same calls (the floors'),
     * both as ratios of medians, under the target row and the scaling row. */
    bc_stat l1 = bc_stats(R_LOG_APPEND_1T), ln = bc_stats(R_LOG_APPEND_NT);
    bc_stat f1 = bc_stats(R_FLOOR_THR_1T), fn = bc_stats(R_FLOOR_THR_NT);
    if (l1.have && ln.have && f1.have && fn.have && l1.med > 0 && f1.med > 0) {
        double lq = ln.med / l1.med, fq = fn.med / f1.med;
        bc_row *nt = &rows[R_LOG_APPEND_NT];
        size_t used = strlen(nt->note);
        snprintf(nt->note + used, sizeof nt->note - used,
                 "%sthe write() floor scales %.2fx with as many threads in the "
                 "same run (the kernel's own scaling of these calls)",
                 used ? "; " : "", fq);
        snprintf(rows[R_LOG_THR_SCALING].note,
                 sizeof rows[R_LOG_THR_SCALING].note,
                 "ratio of medians: Log T/1 %.2f, floor T/1 %.2f (the row: "
                 "median of each round's quotient)",
                 lq, fq);
    }
}

void bc_print_table(FILE *out) {
    fprintf(out, "\nlibpartd bench_core %s\n", pd_version_string());
    fprintf(out, "date %s | kernel %s | nproc %ld | cpu %s\n", host.date,
            host.kernel, host.nproc, host.cpu);
    fprintf(out,
            "dir %s | runs %d%s | %s | fd limit %llu | "
            "loadavg %s -> %s\n",
            cfg.dir, cfg.runs, cfg.quick ? "" : " (+1 warm-up)",
            cfg.quick ? "QUICK (smoke sizes)" : "full",
            (unsigned long long)host.nofile, host.load0, host.load1);
    fprintf(out, "figures: median [min-max] over the runs; ratio = median / "
                 "floor median from the same run (peak memory: worst run / "
                 "limit)\n");
    int sec = -1;
    char t[256], a[32], b[32], c[32], d[32], tg[64], rt[16];
    for (int r = 0; r < R_COUNT; r++) {
        if (!bc_section_on(rows[r].section)) continue;
        if (rows[r].section != sec) {
            sec = rows[r].section;
            fprintf(out, "\n== %s\n", s_section_title(sec, t, sizeof t));
            fprintf(out, "%-44s %8s %-17s %-6s %9s %6s  %-26s %s\n",
                    "benchmark", "median", "[min-max]", "unit", "floor",
                    "ratio", "target", "result");
        }
        bc_stat s = bc_stats(r);
        double f = s_floor_value(r);
        double q = s_ratio(r);
        char range[40];
        if (s.have)
            snprintf(range, sizeof range, "[%s-%s]",
                     bc_fmt(s.min, rows[r].unit, b, sizeof b),
                     bc_fmt(s.max, rows[r].unit, c, sizeof c));
        else
            snprintf(range, sizeof range, "-");
        if (q >= 0)
            snprintf(rt, sizeof rt, "%.2f", q);
        else
            snprintf(rt, sizeof rt, "-");
        fprintf(out, "%-44s %8s %-17s %-6s %9s %6s  %-26s %s\n", rows[r].name,
                s.have ? bc_fmt(s.med, rows[r].unit, a, sizeof a) : "-", range,
                rows[r].unit,
                f > 0 ? bc_fmt(f, rows[r].unit, d, sizeof d) : "-", rt,
                s_target_text(r, tg, sizeof tg), bc_verdict(r));
        if (!bc_ok(r)) fprintf(out, "    error: %s\n", rows[r].err);
        if (rows[r].note[0]) fprintf(out, "    %s\n", rows[r].note);
    }
    int miss = 0, err = 0;
    for (int r = 0; r < R_COUNT; r++) {
        const char *v = bc_verdict(r);
        miss += strcmp(v, "FAIL") == 0;
        err += strcmp(v, "ERROR") == 0;
    }
    fprintf(out, "\nsummary: %d target(s) missed, %d benchmark(s) in error\n",
            miss, err);
}

static void s_json_str(FILE *fp, const char *s) {
    fputc('"', fp);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(fp, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(fp, "\\u%04x", ch);
        else
            fputc(ch, fp);
    }
    fputc('"', fp);
}

/* A number for CSV/JSON: %.6g, or an empty field / null when absent. */
static void s_num(FILE *fp, bool have, double x, bool json) {
    if (have)
        fprintf(fp, "%.6g", x);
    else if (json)
        fputs("null", fp);
}

static const char *s_tkind_name(bc_tkind k) {
    switch (k) {
    case T_FLOOR: return "floor";
    case T_INFO: return "info";
    case T_RATIO_MIN: return "ratio_min";
    case T_ABS_MIN: return "abs_min";
    case T_LIMIT_MAX: return "limit_ratio_max";
    }
    return "";
}

int bc_write_csv(const char *path) {
    FILE *fp = fopen(path, "w");
    if (!fp) return -1;
    fprintf(fp, "id,name,unit,runs,median,min,max,floor_id,floor_median,"
                "ratio,target_kind,target,result,error,note\n");
    for (int r = 0; r < R_COUNT; r++) {
        bc_stat s = bc_stats(r);
        double f = s_floor_value(r), q = s_ratio(r);
        /* The free-text fields, quoted (no quote or newline inside). */
        char errq[600], noteq[300];
        snprintf(errq, sizeof errq, "%s", rows[r].err);
        snprintf(noteq, sizeof noteq, "%s", rows[r].note);
        for (char *p = errq; *p; p++)
            if (*p == '"' || *p == '\n') *p = '\'';
        for (char *p = noteq; *p; p++)
            if (*p == '"' || *p == '\n') *p = '\'';
        fprintf(fp, "%s,\"%s\",%s,%d,", rows[r].id, rows[r].name, rows[r].unit,
                rows[r].n);
        s_num(fp, s.have, s.med, false);
        fputc(',', fp);
        s_num(fp, s.have, s.min, false);
        fputc(',', fp);
        s_num(fp, s.have, s.max, false);
        fprintf(fp, ",%s,",
                rows[r].floor >= 0             ? rows[rows[r].floor].id
                : rows[r].tkind == T_LIMIT_MAX ? "memory_limit_mib"
                                               : "");
        s_num(fp, f > 0, f, false);
        fputc(',', fp);
        s_num(fp, q >= 0, q, false);
        fprintf(fp, ",%s,", s_tkind_name(rows[r].tkind));
        s_num(fp, rows[r].tkind > T_INFO, rows[r].target, false);
        fprintf(fp, ",%s,\"%s\",\"%s\"\n", bc_verdict(r), errq, noteq);
    }
    return fclose(fp) == 0 ? 0 : -1;
}

int bc_write_json(const char *path) {
    FILE *fp = fopen(path, "w");
    if (!fp) return -1;
    fprintf(fp, "{\n  \"tool\": \"bench_core\",\n  \"version\": ");
    s_json_str(fp, pd_version_string());
    fprintf(fp, ",\n  \"date\": ");
    s_json_str(fp, host.date);
    fprintf(fp, ",\n  \"kernel\": ");
    s_json_str(fp, host.kernel);
    fprintf(fp, ",\n  \"nproc\": %ld,\n  \"cpu\": ", host.nproc);
    s_json_str(fp, host.cpu);
    fprintf(fp, ",\n  \"loadavg_start\": ");
    s_json_str(fp, host.load0);
    fprintf(fp, ",\n  \"loadavg_end\": ");
    s_json_str(fp, host.load1);
    fprintf(fp, ",\n  \"dir\": ");
    s_json_str(fp, cfg.dir);
    fprintf(fp,
            ",\n  \"runs\": %d,\n  \"quick\": %s,\n"
            "  \"workload\": {\"nkeys\": %zu, \"nvals\": %zu, \"vsize\": %zu, "
            "\"per_call\": %zu, \"buffer_limit\": %llu, \"spill_limit\": "
            "%llu, \"big_keys\": %zu, \"big_rounds\": %zu, \"big_size\": %zu, "
            "\"mem_limit\": %llu, \"mem_total\": %llu},\n  \"rows\": [\n",
            cfg.runs, cfg.quick ? "true" : "false", cfg.nkeys, cfg.nvals,
            cfg.vsize, cfg.per_call, (unsigned long long)cfg.buf_limit,
            (unsigned long long)cfg.spill_limit, cfg.big_keys, cfg.big_rounds,
            cfg.big_size, (unsigned long long)cfg.mem_limit,
            (unsigned long long)cfg.mem_total);
    char t[256];
    for (int r = 0; r < R_COUNT; r++) {
        bc_stat s = bc_stats(r);
        double f = s_floor_value(r), q = s_ratio(r);
        fprintf(fp, "    {\"id\": \"%s\", \"section\": ", rows[r].id);
        s_json_str(fp, s_section_title(rows[r].section, t, sizeof t));
        fprintf(fp, ", \"name\": ");
        s_json_str(fp, rows[r].name);
        fprintf(fp, ", \"unit\": \"%s\", \"median\": ", rows[r].unit);
        s_num(fp, s.have, s.med, true);
        fprintf(fp, ", \"min\": ");
        s_num(fp, s.have, s.min, true);
        fprintf(fp, ", \"max\": ");
        s_num(fp, s.have, s.max, true);
        fprintf(fp, ", \"samples\": [");
        for (int i = 0; i < rows[r].n; i++)
            fprintf(fp, "%s%.6g", i ? ", " : "", rows[r].v[i]);
        fprintf(fp, "], \"floor_id\": ");
        if (rows[r].floor >= 0)
            s_json_str(fp, rows[rows[r].floor].id);
        else
            fputs("null", fp);
        fprintf(fp, ", \"floor\": ");
        s_num(fp, f > 0, f, true);
        fprintf(fp, ", \"ratio\": ");
        s_num(fp, q >= 0, q, true);
        fprintf(fp, ", \"target_kind\": \"%s\", \"target\": ",
                s_tkind_name(rows[r].tkind));
        s_num(fp, rows[r].tkind > T_INFO, rows[r].target, true);
        fprintf(fp, ", \"result\": \"%s\", \"error\": ", bc_verdict(r));
        s_json_str(fp, rows[r].err);
        fprintf(fp, ", \"note\": ");
        s_json_str(fp, rows[r].note);
        fprintf(fp, "}%s\n", r + 1 < R_COUNT ? "," : "");
    }
    fprintf(fp, "  ]\n}\n");
    return fclose(fp) == 0 ? 0 : -1;
}
