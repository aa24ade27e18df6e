/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * bench_codec: the Encode layer and its codecs.
 *
 * (a) Layer overhead, in memory: appending batches through codec(Dict)
 *     against doing the same by hand (the codec library's own calls with the
 *     layer's parameters and reused contexts, an 8-byte header per value,
 *     one pd_append of the frames to a Dict), and pd_get through the layer
 *     against pd_get on the Dict plus splitting and bare decompression into
 *     a buffer allocated beforehand with the known decoded size (the hand
 *     path knows sizes the layer has to discover: a floor, not a rival).
 *     Reported: the ratio layer / hand.  Target: within 5% (<= 1.05).
 *
 * (b) A shuffle payload through codec(File) on a temporary directory: rows
 *     of (int64 id, float64 value, int32 category, 6-12 character string),
 *     stored column by column in chunks of about 64 KiB, one chunk per
 *     partition per pd_append call to 32 partitions; then one pd_get per
 *     partition.  Reported: MB/s of raw payload for append and get, and the
 *     compression ratio (raw bytes / stored bytes).  --payload FILE writes
 *     the chunks so that bench/ref_codec.py runs the same bytes through the
 *     Python reference's Snappy(File), ZLib(File), Blosc(File).
 *
 * Method: one warm-up round (discarded; it also checks every value read
 * back), then --runs rounds (default 5); medians with [min-max].  In (a)
 * the layer and the hand path run back to back, alternating which goes
 * first.  Time is CLOCK_MONOTONIC around the measured calls only.
 *
 * Exit status: 0 report, 1 with --strict when the overhead target is
 * missed, 2 when a benchmark could not run.
 */
#include "partd/partd.h"

#include "bench.h"

#include <blosc.h>
#include <bzlib.h>
#include <errno.h>
#include <limits.h>
/* LZ4F_compressFrame_usingCDict, as src/codec_lz4.c writes its frames */
#define LZ4F_STATIC_LINKING_ONLY
#include <lz4frame.h>
#include <snappy-c.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#define MB 1e6
#define NPARTS 32
#define CHUNK (64 * 1024)

/* ------------------------------------------------------------ Helpers */

static _Noreturn void s_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_codec: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void *s_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) s_die("out of memory (%zu bytes)", n);
    return p;
}

static uint64_t s_rand(uint64_t *st) { /* splitmix64 */
    uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------ Payload */

/* Chunk c goes to partition c % NPARTS; append call b carries chunks
 * b*NPARTS .. b*NPARTS + NPARTS-1, one per partition. */
typedef struct s_payload {
    size_t nchunks;
    unsigned char **data;
    size_t *len;
    size_t total;
    size_t part_total[NPARTS];
} s_payload;

static s_payload pl;

#define NWORDS 5000
static char words[NWORDS][13];

/* One chunk of rows, column by column: ids (int64), values (float64),
 * categories (int32), string end offsets (int32), string bytes. */
static void s_make_chunk(size_t c, uint64_t *rng, uint64_t *next_id) {
    const size_t rows = CHUNK / (8 + 8 + 4 + 4 + 9);
    size_t sbytes = 0;
    uint32_t pick[CHUNK / 33 + 1];
    for (size_t r = 0; r < rows; r++) {
        pick[r] = (uint32_t)(s_rand(rng) % NWORDS);
        sbytes += strlen(words[pick[r]]);
    }
    size_t len = rows * (8 + 8 + 4 + 4) + sbytes;
    unsigned char *p = s_xmalloc(len), *q = p;
    int part = (int)(c % NPARTS);
    for (size_t r = 0; r < rows; r++) { /* ids rise within a partition */
        int64_t id =
            (int64_t)(next_id[part] += 1 + s_rand(rng) % 3) * NPARTS + part;
        memcpy(q, &id, 8);
        q += 8;
    }
    for (size_t r = 0; r < rows; r++) { /* prices with cents */
        double v = (double)(s_rand(rng) % 10000000) / 100.0;
        memcpy(q, &v, 8);
        q += 8;
    }
    for (size_t r = 0; r < rows; r++) { /* 20 categories, skewed */
        uint64_t x = s_rand(rng);
        int32_t cat = (int32_t)((x % 20) * ((x >> 32) % 20) / 19);
        memcpy(q, &cat, 4);
        q += 4;
    }
    int32_t off = 0;
    for (size_t r = 0; r < rows; r++) {
        off += (int32_t)strlen(words[pick[r]]);
        memcpy(q, &off, 4);
        q += 4;
    }
    for (size_t r = 0; r < rows; r++) {
        size_t n = strlen(words[pick[r]]);
        memcpy(q, words[pick[r]], n);
        q += n;
    }
    pl.data[c] = p;
    pl.len[c] = len;
    pl.total += len;
    pl.part_total[part] += len;
}

static void s_payload_init(size_t bytes) {
    uint64_t rng = 42;
    for (int w = 0; w < NWORDS; w++) {
        int n = 6 + (int)(s_rand(&rng) % 7);
        for (int i = 0; i < n; i++)
            words[w][i] = (char)('a' + s_rand(&rng) % 26);
        words[w][n] = 0;
    }
    size_t per = CHUNK;
    size_t batches = (bytes + per * NPARTS - 1) / (per * NPARTS);
    if (batches < 1) batches = 1;
    pl.nchunks = batches * NPARTS;
    pl.data = s_xmalloc(pl.nchunks * sizeof *pl.data);
    pl.len = s_xmalloc(pl.nchunks * sizeof *pl.len);
    uint64_t next_id[NPARTS] = {0};
    for (size_t c = 0; c < pl.nchunks; c++) s_make_chunk(c, &rng, next_id);
}

static void s_payload_write(const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) s_die("cannot write %s: %s", path, strerror(errno));
    uint32_t hdr[2] = {NPARTS, (uint32_t)pl.nchunks};
    fwrite("PDCODEC1", 1, 8, f);
    fwrite(hdr, 4, 2, f);
    for (size_t c = 0; c < pl.nchunks; c++) {
        uint32_t h[2] = {(uint32_t)(c % NPARTS), (uint32_t)pl.len[c]};
        fwrite(h, 4, 2, f);
        fwrite(pl.data[c], 1, pl.len[c], f);
    }
    if (fclose(f) != 0) s_die("cannot write %s: %s", path, strerror(errno));
}

static char pnames[NPARTS][8];
static pd_key pkeys[NPARTS];

/* Whether value v is partition p's chunks in order. */
static bool s_part_ok(int p, pd_bytes v) {
    if (v.size != pl.part_total[p]) return false;
    const unsigned char *q = v.data;
    for (size_t c = (size_t)p; c < pl.nchunks; c += NPARTS) {
        if (memcmp(q, pl.data[c], pl.len[c]) != 0) return false;
        q += pl.len[c];
    }
    return true;
}

/* --------------------------------------------------------- Bare codecs */

/* The codec libraries called by hand with the layer's parameters (see
 * src/codec_*.c and partd/encode.h), contexts reused across calls. */
typedef struct s_bare {
    const char *name;
    int level; /* resolved */
    z_stream def, inf;
    bool zinit;
    LZ4F_cctx *lc;
    LZ4F_dctx *ld;
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
} s_bare;

static size_t s_bare_bound(s_bare *b, size_t n) {
    if (!strcmp(b->name, "zlib")) return compressBound((uLong)n);
    if (!strcmp(b->name, "bz2")) return n + n / 100 + 600;
    if (!strcmp(b->name, "snappy")) return snappy_max_compressed_length(n);
    if (!strcmp(b->name, "blosc")) return n + BLOSC_MAX_OVERHEAD;
    if (!strcmp(b->name, "lz4")) {
        LZ4F_preferences_t pr;
        memset(&pr, 0, sizeof pr);
        pr.frameInfo.blockSizeID = LZ4F_max256KB;
        pr.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
        pr.frameInfo.contentSize = n;
        pr.autoFlush = 1;
        return LZ4F_compressFrameBound(n, &pr);
    }
    return ZSTD_compressBound(n);
}

/* Readies zlib's two streams on first use; false when they were ready. */
static bool s_zlib_init(s_bare *b) {
    if (b->zinit) return false;
    if (deflateInit2(&b->def, b->level, Z_DEFLATED, MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK ||
        inflateInit(&b->inf) != Z_OK)
        s_die("zlib init");
    b->zinit = true;
    return true;
}

/* Points z at its input src[0..n) and output dst[0..cap). */
static void s_zlib_io(z_stream *z, const void *src, size_t n, void *dst,
                      size_t cap) {
    z->next_in = (Bytef *)src;
    z->avail_in = (uInt)n;
    z->next_out = dst;
    z->avail_out = (uInt)cap;
}

/* Compresses src into dst (cap bytes); returns the size. */
static size_t s_bare_encode(s_bare *b, const void *src, size_t n, void *dst,
                            size_t cap) {
    if (!strcmp(b->name, "zlib")) {
        if (!s_zlib_init(b)) deflateReset(&b->def);
        s_zlib_io(&b->def, src, n, dst, cap);
        if (deflate(&b->def, Z_FINISH) != Z_STREAM_END) s_die("deflate");
        return cap - b->def.avail_out;
    }
    if (!strcmp(b->name, "bz2")) {
        unsigned int out = (unsigned int)cap;
        if (BZ2_bzBuffToBuffCompress(dst, &out, (char *)src, (unsigned)n,
                                     b->level, 0, 0) != BZ_OK)
            s_die("bz2 compress");
        return out;
    }
    if (!strcmp(b->name, "snappy")) {
        size_t out = cap;
        if (snappy_compress(src, n, dst, &out) != SNAPPY_OK)
            s_die("snappy compress");
        return out;
    }
    if (!strcmp(b->name, "blosc")) {
        int w = blosc_compress_ctx(b->level, BLOSC_SHUFFLE, 8, n, src, dst, cap,
                                   "blosclz", 0, 1);
        if (w <= 0) s_die("blosc compress");
        return (size_t)w;
    }
    if (!strcmp(b->name, "lz4")) {
        if (!b->lc &&
            LZ4F_isError(LZ4F_createCompressionContext(&b->lc, LZ4F_VERSION)))
            s_die("lz4 context");
        LZ4F_preferences_t pr;
        memset(&pr, 0, sizeof pr);
        pr.frameInfo.blockSizeID = LZ4F_max256KB;
        pr.frameInfo.blockMode = LZ4F_blockLinked;
        pr.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
        pr.frameInfo.contentSize = n;
        pr.compressionLevel = b->level;
        pr.autoFlush = 1;
        /* One call, as the layer: the same bytes (block size chosen from
         * the value's size), so both sides decode the same frames. */
        size_t w =
            LZ4F_compressFrame_usingCDict(b->lc, dst, cap, src, n, NULL, &pr);
        if (LZ4F_isError(w)) s_die("lz4 compress");
        return w;
    }
    if (!b->zc) {
        b->zc = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(b->zc, ZSTD_c_compressionLevel, b->level);
        ZSTD_CCtx_setParameter(b->zc, ZSTD_c_checksumFlag, 1);
        ZSTD_CCtx_setParameter(b->zc, ZSTD_c_contentSizeFlag, 1);
    }
    size_t w = ZSTD_compress2(b->zc, dst, cap, src, n);
    if (ZSTD_isError(w)) s_die("zstd compress");
    return w;
}

/* Decompresses src into dst, whose size (want) is known. */
static void s_bare_decode(s_bare *b, const void *src, size_t n, void *dst,
                          size_t want) {
    if (!strcmp(b->name, "zlib")) {
        if (!s_zlib_init(b)) inflateReset(&b->inf);
        s_zlib_io(&b->inf, src, n, dst, want);
        if (inflate(&b->inf, Z_FINISH) != Z_STREAM_END || b->inf.avail_out)
            s_die("inflate");
        return;
    }
    if (!strcmp(b->name, "bz2")) {
        unsigned int out = (unsigned int)want;
        if (BZ2_bzBuffToBuffDecompress(dst, &out, (char *)src, (unsigned)n, 0,
                                       0) != BZ_OK ||
            out != want)
            s_die("bz2 decompress");
        return;
    }
    if (!strcmp(b->name, "snappy")) {
        size_t out = want;
        if (snappy_uncompress(src, n, dst, &out) != SNAPPY_OK || out != want)
            s_die("snappy uncompress");
        return;
    }
    if (!strcmp(b->name, "blosc")) {
        if (blosc_decompress_ctx(src, dst, want, 1) != (int)want)
            s_die("blosc decompress");
        return;
    }
    if (!strcmp(b->name, "lz4")) {
        if (!b->ld &&
            LZ4F_isError(LZ4F_createDecompressionContext(&b->ld, LZ4F_VERSION)))
            s_die("lz4 context");
        size_t dn = want, sn = n;
        size_t r = LZ4F_decompress(b->ld, dst, &dn, src, &sn, NULL);
        if (r != 0 || dn != want || sn != n) s_die("lz4 decompress");
        return;
    }
    if (!b->zd) b->zd = ZSTD_createDCtx();
    size_t r = ZSTD_decompressDCtx(b->zd, dst, want, src, n);
    if (ZSTD_isError(r) || r != want) s_die("zstd decompress");
}

static void s_bare_free(s_bare *b) {
    if (b->zinit) {
        deflateEnd(&b->def);
        inflateEnd(&b->inf);
    }
    if (b->lc) LZ4F_freeCompressionContext(b->lc);
    if (b->ld) LZ4F_freeDecompressionContext(b->ld);
    ZSTD_freeCCtx(b->zc);
    ZSTD_freeDCtx(b->zd);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------- Config */

typedef struct s_codec {
    const char *label, *name; /* name NULL: plain File, no layer */
    int level;                /* PD_LEVEL_DEFAULT or a level */
    int bare_level;           /* the default resolved, for the hand path */
} s_codec;

static const s_codec codecs[] = {
    {"none (File)", NULL, 0, 0},
    {"zlib", "zlib", PD_LEVEL_DEFAULT, 6},
    {"bz2", "bz2", PD_LEVEL_DEFAULT, 9},
    {"snappy", "snappy", PD_LEVEL_DEFAULT, 0},
    {"blosc", "blosc", PD_LEVEL_DEFAULT, 9},
    {"lz4", "lz4", PD_LEVEL_DEFAULT, 0},
    {"zstd", "zstd", PD_LEVEL_DEFAULT, 3},
    {"zstd(1)", "zstd", 1, 1},
    {"zstd(-1)", "zstd", -1, -1},
    {"zstd(-2)", "zstd", -2, -2},
    {"zstd(-3)", "zstd", -3, -3},
    {"zstd(-5)", "zstd", -5, -5},
};
#define NCODECS (sizeof codecs / sizeof codecs[0])

static struct {
    int runs;
    bool quick, strict;
    size_t bytes;
    const char *dir, *csv, *payload;
    bool no_overhead, no_file; /* --only file / --only overhead */
    const char *codec;         /* --codec LABEL: only that row */
} cfg;

static bool s_skip(size_t c) {
    return cfg.codec && strcmp(cfg.codec, codecs[c].label) != 0;
}

/* -------------------------------------------------- (a) layer overhead */

typedef struct s_over {
    double *lay_app, *bare_app, *lay_get, *bare_get;
} s_over;

static s_over over[NCODECS];

static pd_store *s_codec_dict(const s_codec *c) {
    pd_store *d = NULL, *s = NULL;
    if (pd_dict_open(&d)) s_die("dict: %s", pd_errmsg(NULL));
    if (pd_compress_open(&s, &d, c->name, c->level, 0))
        s_die("%s: %s", c->label, pd_errmsg(NULL));
    return s;
}

/* The payload through store s: every chunk appended to its partition,
 * NPARTS keys per call (*tapp seconds), then one get per partition (*tget),
 * checked against the payload when `check`. */
static void s_payload_round(pd_store *s, const char *label, double *tapp,
                            double *tget, bool check) {
    size_t nb = pl.nchunks / NPARTS;
    double t0 = bench_now();
    for (size_t b = 0; b < nb; b++) {
        pd_bytes vals[NPARTS];
        for (int p = 0; p < NPARTS; p++)
            vals[p] = PD_BYTES(pl.data[b * NPARTS + (size_t)p],
                               pl.len[b * NPARTS + (size_t)p]);
        if (pd_append(s, NPARTS, pkeys, vals, 0))
            s_die("%s append: %s", label, pd_errmsg(s));
    }
    *tapp = bench_now() - t0;
    t0 = bench_now();
    for (int p = 0; p < NPARTS; p++) {
        pd_result *r = NULL;
        if (pd_get(s, 1, &pkeys[p], &r, 0))
            s_die("%s get: %s", label, pd_errmsg(s));
        if (check && !s_part_ok(p, pd_result_value(r, 0)))
            s_die("%s: partition %d reads back wrong", label, p);
        pd_result_free(&r);
    }
    *tget = bench_now() - t0;
}

static void s_layer_round(const s_codec *c, double *tapp, double *tget,
                          bool check) {
    pd_store *s = s_codec_dict(c);
    s_payload_round(s, c->label, tapp, tget, check);
    pd_close(&s);
}

static void s_bare_round(const s_codec *c, double *tapp, double *tget,
                         bool check) {
    s_bare b;
    memset(&b, 0, sizeof b);
    b.name = c->name;
    b.level = c->bare_level;
    pd_store *d = NULL;
    if (pd_dict_open(&d)) s_die("dict: %s", pd_errmsg(NULL));
    size_t nb = pl.nchunks / NPARTS;
    /* scratch for one batch's frames, allocated outside the timing */
    unsigned char *scratch[NPARTS];
    size_t caps[NPARTS];
    for (int p = 0; p < NPARTS; p++) {
        size_t most = 0;
        for (size_t x = (size_t)p; x < pl.nchunks; x += NPARTS)
            if (pl.len[x] > most) most = pl.len[x];
        caps[p] = s_bare_bound(&b, most);
        scratch[p] = s_xmalloc(8 + caps[p]);
    }
    double t0 = bench_now();
    for (size_t bi = 0; bi < nb; bi++) {
        pd_bytes vals[NPARTS];
        for (int p = 0; p < NPARTS; p++) {
            size_t x = bi * NPARTS + (size_t)p;
            size_t w = s_bare_encode(&b, pl.data[x], pl.len[x], scratch[p] + 8,
                                     caps[p]);
            for (int i = 0; i < 8; i++)
                scratch[p][i] = (unsigned char)((uint64_t)w >> (8 * i));
            vals[p] = PD_BYTES(scratch[p], 8 + w);
        }
        if (pd_append(d, NPARTS, pkeys, vals, 0))
            s_die("dict append: %s", pd_errmsg(d));
    }
    *tapp = bench_now() - t0;
    t0 = bench_now();
    for (int p = 0; p < NPARTS; p++) {
        pd_result *r = NULL;
        if (pd_get(d, 1, &pkeys[p], &r, 0)) s_die("dict get: %s", pd_errmsg(d));
        pd_bytes v = pd_result_value(r, 0);
        const unsigned char *q = v.data;
        /* a fresh buffer per get, as a get returning the value must
         * (its size is known here: the hand path's one advantage) */
        unsigned char *out = s_xmalloc(pl.part_total[p]);
        size_t off = 0, o = 0;
        for (size_t x = (size_t)p; x < pl.nchunks; x += NPARTS) {
            uint64_t n = 0;
            for (int i = 7; i >= 0; i--) n = n << 8 | q[off + (size_t)i];
            s_bare_decode(&b, q + off + 8, (size_t)n, out + o, pl.len[x]);
            off += 8 + (size_t)n;
            o += pl.len[x];
        }
        if (check && !s_part_ok(p, PD_BYTES(out, o)))
            s_die("%s by hand: partition %d reads back wrong", c->label, p);
        free(out);
        pd_result_free(&r);
    }
    *tget = bench_now() - t0;
    for (int p = 0; p < NPARTS; p++) free(scratch[p]);
    s_bare_free(&b);
    pd_close(&d);
}

/* ------------------------------------------------------ (b) File, MB/s */

typedef struct s_filer {
    double *app, *get; /* seconds */
    double ratio;
} s_filer;

static s_filer filer[NCODECS];

static void s_file_round(const s_codec *c, double *tapp, double *tget,
                         double *ratio, bool check) {
    pd_store *f = NULL, *s = NULL;
    if (pd_file_open_temp(&f, cfg.dir, 0)) s_die("file: %s", pd_errmsg(NULL));
    if (c->name) {
        if (pd_compress_open(&s, &f, c->name, c->level, 0))
            s_die("%s: %s", c->label, pd_errmsg(NULL));
    } else {
        s = f;
        f = NULL;
    }
    char label[64];
    snprintf(label, sizeof label, c->name ? "%s(File)" : "%s", c->label);
    s_payload_round(s, label, tapp, tget, check);
    pd_keylist *kl = NULL;
    if (pd_keys(s, &kl, 0)) s_die("keys: %s", pd_errmsg(s));
    uint64_t stored = 0;
    for (size_t i = 0; i < pd_keylist_count(kl); i++)
        stored += pd_keylist_size(kl, i);
    pd_keylist_free(&kl);
    *ratio = (double)pl.total / (double)stored;
    if (pd_close(&s)) s_die("close: %s", pd_errmsg(NULL));
}

/* ------------------------------------------------------------- Report */

static void s_usage(FILE *fp) {
    fprintf(fp, "usage: bench_codec [--runs N] [--quick] [--mb N] [--dir D]\n"
                "                   [--csv FILE] [--payload FILE] [--strict]\n"
                "  --runs N        measured runs (default 5; 1 with --quick)\n"
                "  --quick         4 MB payload, 1 run\n"
                "  --mb N          payload size in MB (default 32)\n"
                "  --dir D         parent of the File stores (default $TMPDIR "
                "or /tmp)\n"
                "  --csv FILE      one CSV line per row\n"
                "  --payload FILE  write the payload for bench/ref_codec.py\n"
                "  --only overhead|file  run only section (a) or (b)\n"
                "  --codec LABEL   only that row (e.g. zstd(-1), none (File))\n"
                "  --strict        exit 1 if a layer is more than 5%% slower "
                "than by hand\n");
}

int main(int argc, char **argv) {
    cfg.runs = -1;
    cfg.bytes = 32 * (size_t)1000000;
    cfg.dir = getenv("TMPDIR");
    if (!cfg.dir || !*cfg.dir) cfg.dir = "/tmp";
    bool mb_given = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(a, "--runs") && more) {
            cfg.runs = atoi(argv[++i]);
            if (cfg.runs < 1 || cfg.runs > 1000) s_die("--runs wants 1..1000");
        } else if (!strcmp(a, "--quick")) {
            cfg.quick = true;
        } else if (!strcmp(a, "--strict")) {
            cfg.strict = true;
        } else if (!strcmp(a, "--mb") && more) {
            long v = atol(argv[++i]);
            if (v < 1 || v > 100000) s_die("--mb wants 1..100000");
            cfg.bytes = (size_t)v * 1000000;
            mb_given = true;
        } else if (!strcmp(a, "--dir") && more) {
            cfg.dir = argv[++i];
        } else if (!strcmp(a, "--csv") && more) {
            cfg.csv = argv[++i];
        } else if (!strcmp(a, "--only") && more) {
            const char *w = argv[++i];
            if (!strcmp(w, "overhead"))
                cfg.no_file = true;
            else if (!strcmp(w, "file"))
                cfg.no_overhead = true;
            else
                s_die("--only wants overhead or file");
        } else if (!strcmp(a, "--codec") && more) {
            cfg.codec = argv[++i];
        } else if (!strcmp(a, "--payload") && more) {
            cfg.payload = argv[++i];
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            s_usage(stdout);
            return 0;
        } else {
            s_usage(stderr);
            return 2;
        }
    }
    if (cfg.quick && !mb_given) cfg.bytes = 4 * (size_t)1000000;
    if (cfg.runs < 0) cfg.runs = cfg.quick ? 1 : 5;
    struct stat st;
    if (stat(cfg.dir, &st) != 0 || !S_ISDIR(st.st_mode))
        s_die("--dir %s is not a directory", cfg.dir);
    for (int p = 0; p < NPARTS; p++) {
        snprintf(pnames[p], sizeof pnames[p], "p%02d", p);
        pkeys[p] = PD_KEY(pnames[p], strlen(pnames[p]));
    }
    s_payload_init(cfg.bytes);
    if (cfg.payload) s_payload_write(cfg.payload);
    printf("bench_codec: payload %.1f MB in %zu chunks (~%d KiB) to %d "
           "partitions, %d run(s) + warm-up, stores under %s\n",
           (double)pl.total / MB, pl.nchunks, CHUNK / 1024, NPARTS, cfg.runs,
           cfg.dir);
    fflush(stdout);

    int nr = cfg.runs;
    for (size_t c = 0; c < NCODECS; c++) {
        over[c].lay_app = s_xmalloc((size_t)nr * sizeof(double));
        over[c].bare_app = s_xmalloc((size_t)nr * sizeof(double));
        over[c].lay_get = s_xmalloc((size_t)nr * sizeof(double));
        over[c].bare_get = s_xmalloc((size_t)nr * sizeof(double));
        filer[c].app = s_xmalloc((size_t)nr * sizeof(double));
        filer[c].get = s_xmalloc((size_t)nr * sizeof(double));
    }

    /* (a) */
    double t0 = bench_now();
    for (size_t c = 1; c < NCODECS && !cfg.no_overhead; c++) {
        if (s_skip(c)) continue;
        for (int run = -1; run < nr; run++) {
            double la, lg, ba, bg;
            bool check = run < 0;
            if (run % 2) { /* alternate which side goes first */
                s_layer_round(&codecs[c], &la, &lg, check);
                s_bare_round(&codecs[c], &ba, &bg, check);
            } else {
                s_bare_round(&codecs[c], &ba, &bg, check);
                s_layer_round(&codecs[c], &la, &lg, check);
            }
            if (run < 0) continue;
            over[c].lay_app[run] = la;
            over[c].bare_app[run] = ba;
            over[c].lay_get[run] = lg;
            over[c].bare_get[run] = bg;
        }
    }
    printf("bench_codec: layer overhead done (%.1f s)\n", bench_now() - t0);
    fflush(stdout);

    /* (b) */
    t0 = bench_now();
    for (size_t c = 0; c < NCODECS && !cfg.no_file; c++) {
        if (s_skip(c)) continue;
        for (int run = -1; run < nr; run++) {
            double a, g, ratio;
            s_file_round(&codecs[c], &a, &g, &ratio, run < 0);
            filer[c].ratio = ratio;
            if (run < 0) continue;
            filer[c].app[run] = a;
            filer[c].get[run] = g;
        }
    }
    printf("bench_codec: File payload done (%.1f s)\n", bench_now() - t0);

    FILE *csv = NULL;
    if (cfg.csv) {
        csv = fopen(cfg.csv, "w");
        if (!csv) s_die("cannot write %s: %s", cfg.csv, strerror(errno));
        fprintf(csv, "impl,section,codec,op,median_s,min_s,max_s,mb_per_s,"
                     "bare_median_s,ratio_to_bare,compression_ratio\n");
    }
    double mbytes = (double)pl.total / MB;
    bool miss = false;
    if (!cfg.no_overhead) {
        printf("\n== (a) layer overhead, codec(Dict) vs by hand (median "
               "[min-max] ms; ratio = layer / hand, target <= 1.05)\n");
        printf("%-10s %-6s %22s %22s %7s %s\n", "codec", "op", "layer",
               "by hand", "ratio", "result");
    }
    for (size_t c = 1; c < NCODECS && !cfg.no_overhead; c++) {
        if (s_skip(c)) continue;
        for (int op = 0; op < 2; op++) {
            bench_stat l =
                bench_stats(op ? over[c].lay_get : over[c].lay_app, nr);
            bench_stat b =
                bench_stats(op ? over[c].bare_get : over[c].bare_app, nr);
            double q = l.med / b.med;
            bool ok = q <= 1.05;
            miss |= !ok;
            char ls[48], bs[48];
            snprintf(ls, sizeof ls, "%.1f [%.1f-%.1f]", l.med * 1e3,
                     l.min * 1e3, l.max * 1e3);
            snprintf(bs, sizeof bs, "%.1f [%.1f-%.1f]", b.med * 1e3,
                     b.min * 1e3, b.max * 1e3);
            printf("%-10s %-6s %22s %22s %7.3f %s\n", codecs[c].label,
                   op ? "get" : "append", ls, bs, q, ok ? "PASS" : "FAIL");
            if (csv)
                fprintf(csv,
                        "libpartd,overhead,%s,%s,%.6f,%.6f,%.6f,%.1f,%.6f,"
                        "%.4f,\n",
                        codecs[c].label, op ? "get" : "append", l.med, l.min,
                        l.max, mbytes / l.med, b.med, q);
        }
    }
    if (!cfg.no_file) {
        printf("\n== (b) shuffle payload through codec(File): %.1f MB, %d "
               "partitions (MB/s of raw payload, median [min-max])\n",
               mbytes, NPARTS);
        printf("%-12s %24s %24s %8s\n", "codec", "append MB/s", "get MB/s",
               "ratio");
    }
    for (size_t c = 0; c < NCODECS && !cfg.no_file; c++) {
        if (s_skip(c)) continue;
        bench_stat a = bench_stats(filer[c].app, nr),
                   g = bench_stats(filer[c].get, nr);
        char as[48], gs[48];
        snprintf(as, sizeof as, "%.0f [%.0f-%.0f]", mbytes / a.med,
                 mbytes / a.max, mbytes / a.min);
        snprintf(gs, sizeof gs, "%.0f [%.0f-%.0f]", mbytes / g.med,
                 mbytes / g.max, mbytes / g.min);
        printf("%-12s %24s %24s %8.2f\n", codecs[c].label, as, gs,
               filer[c].ratio);
        if (csv)
            for (int op = 0; op < 2; op++) {
                bench_stat s = op ? g : a;
                fprintf(csv, "libpartd,file,%s,%s,%.6f,%.6f,%.6f,%.1f,,,%.4f\n",
                        codecs[c].label, op ? "get" : "append", s.med, s.min,
                        s.max, mbytes / s.med, filer[c].ratio);
            }
    }
    if (csv && fclose(csv) != 0) s_die("cannot write %s", cfg.csv);
    if (cfg.csv) printf("csv: %s\n", cfg.csv);
    for (size_t c = 0; c < NCODECS; c++) {
        free(over[c].lay_app);
        free(over[c].bare_app);
        free(over[c].lay_get);
        free(over[c].bare_get);
        free(filer[c].app);
        free(filer[c].get);
    }
    for (size_t c = 0; c < pl.nchunks; c++) free(pl.data[c]);
    free(pl.data);
    free(pl.len);
    return cfg.strict && miss ? 1 : 0;
}
