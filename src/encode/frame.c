/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Frames: pd_frame_split, and the scanner that reads a key's frames and
 * leaves out torn regions (see frame.h and partd/encode.h, TORN FRAMES).
 *
 * R(p), "the bytes from p to the end read under the rules", is:
 *   p is the end, or only zero bytes remain                       -> yes
 *   the frame at p fits and decodes                               -> R(end)
 *   some q inside the bytes the frame at p claims (or inside the zero run
 *   starting at p) starts a frame that fits, decodes, and R(its end)  -> yes
 *   (prefix check) some such q with W(q) (s_weak: q starts a torn frame
 *   proving itself by a checked payload prefix, followed by the end, a
 *   frame reading as above, or another W), and [p, q) a header cut short
 *   or a checked prefix                                           -> yes
 *   the frame at p runs past the end (a torn tail)                -> yes
 * (The main scan, unlike R, leaves out a final torn tail only when its
 * header and payload start are plausible: s_tail_ok.)
 *   otherwise                                                     -> no
 * The main scan follows the same rules but emits the frames it keeps; a
 * resumption point q must be proven by R, so one decodable frame by chance
 * inside garbage is not enough unless everything after it reads too.
 * Decodes, R, W and prefix checks are memoised per offset (only on this
 * damaged path).
 */
#include "encode/frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "encode/codec.h"
#include "core/hash.h"

#define S_NONE SIZE_MAX

typedef struct s_memo {
    UT_hash_handle hh;
    uint64_t off;
    signed char decodes; /* -1 unknown, 0, 1 */
    signed char reads;   /* R(off): -1 unknown, 0, 1, 2 being computed */
    signed char chain;   /* W(off), see s_weak: -1 unknown, 0, 1 */
    uint64_t plo, phi;   /* payload prefixes up to plo bytes are valid,
                          * from phi bytes on invalid */
} s_memo;

typedef struct s_scan {
    const unsigned char *d;
    size_t n;
    const pd__scan_ops *ops;
    s_memo *memo;
    s_memo **stack; /* offsets whose R is being computed */
    size_t nstack, capstack;
    int err; /* a hard error (not "does not decode") */
} s_scan;

/* ----------------------------------------------------------- Public */

int pd_frame_split(const void *data, size_t n,
                   int (*fn)(void *arg, const void *payload, size_t size,
                             uint64_t offset),
                   void *arg, size_t *end) {
    const unsigned char *d = data;
    size_t pos = 0;
    if (end) *end = n;
    if (n && !d) return PD_ERR_MISUSE;
    while (pos < n) {
        size_t rest = n - pos;
        uint64_t len = rest >= PD_FRAME_HEADER ? pd__le64(d + pos) : 0;
        if (rest < PD_FRAME_HEADER || len > rest - PD_FRAME_HEADER) {
            if (end) *end = pos;
            return PD_ERR_CORRUPT;
        }
        if (fn) {
            int rc = fn(arg, d + pos + PD_FRAME_HEADER, (size_t)len, pos);
            if (rc) return rc;
        }
        pos += PD_FRAME_HEADER + (size_t)len;
    }
    return 0;
}

/* ---------------------------------------------------------- Helpers */

/* True when the frame at p fits in the data; *end is then its end. */
static bool s_fits(const s_scan *sc, size_t p, size_t *end) {
    size_t rest = sc->n - p;
    if (rest < PD_FRAME_HEADER) return false;
    uint64_t len = pd__le64(sc->d + p);
    if (len > rest - PD_FRAME_HEADER) return false;
    *end = p + PD_FRAME_HEADER + (size_t)len;
    return true;
}

/* Zero bytes from p on. */
static size_t s_zeros(const s_scan *sc, size_t p) {
    size_t i = p;
    while (i < sc->n && sc->d[i] == 0) i++;
    return i - p;
}

static s_memo *s_memo_get(s_scan *sc, uint64_t off) {
    s_memo *m = NULL;
    HASH_FIND(hh, sc->memo, &off, sizeof off, m);
    if (m) return m;
    m = malloc(sizeof *m);
    if (!m) {
        sc->err = PD_ERR_NOMEM;
        return NULL;
    }
    m->off = off;
    m->decodes = -1;
    m->reads = -1;
    m->chain = -1;
    m->plo = 0;
    m->phi = UINT64_MAX;
    HASH_ADD(hh, sc->memo, off, sizeof m->off, m);
    if (!m->hh.tbl) {
        free(m);
        sc->err = PD_ERR_NOMEM;
        return NULL;
    }
    return m;
}

static int s_probe(const s_scan *sc, size_t p, size_t end) {
    if (!sc->ops->probe) return 0;
    return sc->ops->probe(sc->ops->arg, sc->d + p + PD_FRAME_HEADER,
                          end - p - PD_FRAME_HEADER);
}

/* Whether the frame [p, end) decodes: 1, 0, or -1 (sc->err set). */
static int s_decodes(s_scan *sc, size_t p, size_t end) {
    s_memo *m = s_memo_get(sc, p);
    if (!m) return -1;
    if (m->decodes < 0) {
        int rc = s_probe(sc, p, end);
        if (rc == 0)
            rc = sc->ops->check(sc->ops->arg, sc->d + p + PD_FRAME_HEADER,
                                end - p - PD_FRAME_HEADER);
        if (rc != 0 && rc != PD_ERR_CORRUPT && rc != PD_ERR_LIMIT) {
            sc->err = rc;
            return -1;
        }
        m->decodes = rc == 0;
    }
    return m->decodes;
}

/* Where candidates for the frame failing at p end: the bytes it claims, or
 * the zero run starting at p with one byte more (the next header's low
 * byte), whichever reaches further. */
static size_t s_reach(const s_scan *sc, size_t p, bool fits, size_t end,
                      size_t zeros) {
    size_t hi = fits ? end : sc->n;
    if (p + zeros + 1 > hi) hi = p + zeros + 1;
    return hi < sc->n ? hi : sc->n;
}

static int s_reads(s_scan *sc, size_t p, int depth);

/* Payload bytes a torn frame must show, beyond its header, to count as
 * one on its own evidence (see s_weak). */
#define S_FIRM 16

/* Is [p, q) a torn frame with evidence: a header whose claim reaches past
 * q, and a payload prefix of at least `min` bytes the codec accepts
 * (ops->prefix)?  With min == 0, fewer bytes than a header also count (a
 * header cut short).  Prefix validity is monotone, so a memo (m, for p)
 * keeps the longest known-valid and shortest known-invalid lengths.  1, 0,
 * or -1 on a hard error. */
static int s_torn_ok(s_scan *sc, size_t p, size_t q, s_memo *m, size_t min) {
    if (q - p < PD_FRAME_HEADER) return min == 0;
    uint64_t len = pd__le64(sc->d + p);
    size_t plen = q - p - PD_FRAME_HEADER;
    if (plen < min || len <= plen || !sc->ops->prefix) return 0;
    if (m && plen <= m->plo) return 1;
    if (m && plen >= m->phi) return 0;
    int rc =
        sc->ops->prefix(sc->ops->arg, sc->d + p + PD_FRAME_HEADER, plen, len);
    if (rc != 0 && rc != PD_ERR_CORRUPT && rc != PD_ERR_LIMIT) {
        sc->err = rc;
        return -1;
    }
    if (m && rc == 0) m->plo = plen;
    if (m && rc != 0) m->phi = plen;
    return rc == 0;
}

static size_t s_resync(s_scan *sc, size_t p, size_t hi, bool strict, int depth);

/* Can [p, end of key), whose frame runs past the end, be a torn tail?  A
 * header cut short can.  A full header must claim no more than a frame can
 * hold (max_payload), and, with the codec's prefix check, its payload must
 * start like one of the codec's: checked on all but the last
 * PD_FRAME_HEADER + S_FIRM bytes (at least the first byte), which may be
 * the start of a later frame cut short in turn.  So a length past the data
 * in front of bytes no writer of this codec wrote reads as corrupt, not as
 * a torn tail.  1, 0, or -1 on a hard error. */
static int s_tail_ok(s_scan *sc, size_t p) {
    size_t rest = sc->n - p;
    if (rest < PD_FRAME_HEADER) return 1;
    uint64_t len = pd__le64(sc->d + p);
    if (sc->ops->max_payload && len > sc->ops->max_payload) return 0;
    size_t plen = rest - PD_FRAME_HEADER;
    if (plen == 0 || !sc->ops->prefix) return 1;
    size_t slack = PD_FRAME_HEADER + S_FIRM;
    size_t check = plen > slack ? plen - slack : 1;
    return s_torn_ok(sc, p, p + PD_FRAME_HEADER + check, NULL, 0);
}

/* W(q), for codecs with a prefix check: q starts a torn frame that proves
 * itself (a header and at least S_FIRM payload bytes the codec accepts,
 * its claim reaching past where the next piece starts), and that piece is
 * the end of the key, a frame that decodes (and R after it), or another
 * such torn frame.  The next piece is looked for inside q's claim, or,
 * when the claim runs past the end of the key, anywhere after q (a later
 * writer's frames may fill the rest).  This reads a key where several
 * writers were killed in a row.  1, 0, -1. */
static int s_weak(s_scan *sc, size_t q, int depth) {
    if (sc->n - q < PD_FRAME_HEADER + S_FIRM) return 0;
    uint64_t len = pd__le64(sc->d + q);
    if (len <= S_FIRM || (sc->ops->max_payload && len > sc->ops->max_payload))
        return 0;
    /* Gate: the payload must start like one of the codec's. */
    int t = s_torn_ok(sc, q, q + PD_FRAME_HEADER + S_FIRM, NULL, S_FIRM);
    if (t <= 0) return t;
    s_memo *m = s_memo_get(sc, q);
    if (!m) return -1;
    if (m->chain < 0) {
        size_t avail = sc->n - q - PD_FRAME_HEADER;
        if (len > avail) {
            /* A torn tail; or torn, with a later writer's frames inside
             * the rest (its claim runs past them). */
            t = s_torn_ok(sc, q, sc->n, m, S_FIRM);
            if (t < 0) return -1;
            if (!t && depth < PD__RESYNC_DEPTH) {
                size_t q2 = s_resync(sc, q, sc->n, true, depth + 1);
                if (sc->err) return -1;
                t = q2 != S_NONE;
            }
            m->chain = (signed char)t;
        } else if (depth >= PD__RESYNC_DEPTH) {
            m->chain = 0;
        } else {
            size_t q2 = s_resync(sc, q, q + PD_FRAME_HEADER + (size_t)len, true,
                                 depth + 1);
            if (sc->err) return -1;
            m->chain = q2 != S_NONE;
        }
    }
    return m->chain;
}

/* The first q in (p, hi) where reading can resume after damage at p: q
 * starts a frame that fits, decodes and after which everything reads
 * (R); or, with the codec's prefix check, W(q) and [p, q) is a torn frame
 * (a header cut short, or a payload prefix the codec accepts).  `strict`
 * (inside W) asks [p, q) to prove itself as W does, in both cases.
 * S_NONE if none (or on a hard error, with sc->err set). */
static size_t s_resync(s_scan *sc, size_t p, size_t hi, bool strict,
                       int depth) {
    s_memo *pm = NULL;
    size_t min = strict ? S_FIRM : 0;
    for (size_t q = p + 1; q < hi; q++) {
        size_t end;
        int t = 1;
        if (sc->n - q >= PD_FRAME_HEADER && s_fits(sc, q, &end) &&
            s_probe(sc, q, end) == 0) { /* the length check first */
            int d = s_decodes(sc, q, end);
            if (d < 0) return S_NONE;
            if (d) {
                int r = s_reads(sc, end, depth);
                if (r < 0) return S_NONE;
                if (r && strict) {
                    if (!pm && !(pm = s_memo_get(sc, p))) return S_NONE;
                    r = s_torn_ok(sc, p, q, pm, min);
                    if (r < 0) return S_NONE;
                }
                if (r) return q;
                continue;
            }
        }
        if (!sc->ops->prefix) continue;
        int w = s_weak(sc, q, depth);
        if (w < 0) return S_NONE;
        if (!w) continue;
        if (!pm && !(pm = s_memo_get(sc, p))) return S_NONE;
        t = s_torn_ok(sc, p, q, pm, min);
        if (t < 0) return S_NONE;
        if (t) return q;
    }
    return S_NONE;
}

static int s_push(s_scan *sc, s_memo *m) {
    if (sc->nstack == sc->capstack) {
        size_t ncap = sc->capstack ? sc->capstack * 2 : 64;
        s_memo **ns = realloc(sc->stack, ncap * sizeof *ns);
        if (!ns) {
            sc->err = PD_ERR_NOMEM;
            return -1;
        }
        sc->stack = ns;
        sc->capstack = ncap;
    }
    sc->stack[sc->nstack++] = m;
    m->reads = 2;
    return 0;
}

/* R(p): 1, 0, or -1 on a hard error.  Follows a run of decodable frames
 * iteratively; recursion only at torn regions, at most PD__RESYNC_DEPTH
 * deep. */
static int s_reads(s_scan *sc, size_t p, int depth) {
    size_t base = sc->nstack;
    int result;
    for (;;) {
        if (p == sc->n) {
            result = 1;
            break;
        }
        s_memo *m = s_memo_get(sc, p);
        if (!m) return -1;
        if (m->reads == 0 || m->reads == 1) {
            result = m->reads;
            break;
        }
        if (m->reads == 2) { /* cannot happen: runs only move forward */
            result = 0;
            break;
        }
        if (s_push(sc, m)) return -1;
        size_t z = s_zeros(sc, p), end = 0;
        if (p + z == sc->n) {
            result = 1;
            break;
        }
        bool fits = s_fits(sc, p, &end);
        if (fits) {
            int d = s_decodes(sc, p, end);
            if (d < 0) return -1;
            if (d) {
                p = end;
                continue;
            }
        }
        if (depth >= PD__RESYNC_DEPTH) {
            result = 0;
            break;
        }
        size_t q =
            s_resync(sc, p, s_reach(sc, p, fits, end, z), false, depth + 1);
        if (sc->err) return -1;
        /* Inside a candidate run, anything cut short at the end reads as
         * a torn tail; the main scan judges the tail it finally reaches
         * (s_tail_ok), after taking back a frame that decoded by chance. */
        result = q != S_NONE || !fits;
        break;
    }
    while (sc->nstack > base)
        sc->stack[--sc->nstack]->reads = (signed char)result;
    return result;
}

static void s_scan_free(s_scan *sc) {
    s_memo *m, *tmp;
    HASH_ITER(hh, sc->memo, m, tmp) {
        HASH_DEL(sc->memo, m);
        free(m);
    }
    free(sc->stack);
}

/* ------------------------------------------------------------ Scan */

int pd__frame_scan(const unsigned char *data, size_t n, const pd__scan_ops *ops,
                   pd__scan_fail *fail) {
    s_scan sc;
    memset(&sc, 0, sizeof sc);
    sc.d = data;
    sc.n = n;
    sc.ops = ops;
    size_t pos = 0, index = 0, last = S_NONE; /* the last frame kept */
    int rc = 0;
    while (pos < n) {
        size_t end = 0;
        bool fits = s_fits(&sc, pos, &end);
        if (fits) {
            rc = ops->emit(ops->arg, data + pos + PD_FRAME_HEADER,
                           end - pos - PD_FRAME_HEADER, pos, index);
            if (rc == 0) {
                last = pos;
                pos = end;
                index++;
                continue;
            }
            if (rc != PD_ERR_CORRUPT) break;
            rc = 0;
        }
        /* Zeros to the end first: a file extended by a crash is no damage
         * to the frame before it, which is kept (as R reads it). */
        size_t z = s_zeros(&sc, pos);
        if (pos + z == n) {
            if (ops->skip)
                rc = ops->skip(ops->arg, pos, n - pos, PD__SKIP_ZERO);
            break;
        }
        if (ops->backtrack && last != S_NONE) {
            /* Damage right after a kept frame: was that frame a torn one
             * that decoded by chance? */
            size_t q = s_resync(&sc, last, pos, false, 1);
            if (sc.err) {
                rc = sc.err;
                break;
            }
            if (q != S_NONE) {
                ops->unemit(ops->arg);
                index--;
                if (ops->skip)
                    rc = ops->skip(ops->arg, last, q - last, PD__SKIP_TORN);
                if (rc) break;
                last = S_NONE;
                pos = q;
                continue;
            }
        }
        last = S_NONE;
        size_t q =
            s_resync(&sc, pos, s_reach(&sc, pos, fits, end, z), false, 1);
        if (sc.err) {
            rc = sc.err;
            break;
        }
        if (q != S_NONE) {
            /* A torn frame is a cut-short prefix: its bytes never decode as
             * a whole frame.  If they do, the length field is what is
             * wrong, and leaving the frame out would lose data. */
            if (q - pos >= PD_FRAME_HEADER) {
                int c = ops->check(ops->arg, data + pos + PD_FRAME_HEADER,
                                   q - pos - PD_FRAME_HEADER);
                if (c == 0) {
                    fail->off = pos;
                    fail->index = index;
                    fail->bad_len = true;
                    fail->past_end = false;
                    rc = PD_ERR_CORRUPT;
                    break;
                }
                if (c != PD_ERR_CORRUPT && c != PD_ERR_LIMIT) {
                    rc = c;
                    break;
                }
            }
            if (ops->skip)
                rc = ops->skip(ops->arg, pos, q - pos, PD__SKIP_TORN);
            if (rc) break;
            pos = q;
            continue;
        }
        int tail = fits ? 0 : s_tail_ok(&sc, pos);
        if (tail < 0) {
            rc = sc.err;
            break;
        }
        if (tail) {
            if (ops->skip)
                rc = ops->skip(ops->arg, pos, n - pos, PD__SKIP_TAIL);
            break;
        }
        fail->off = pos;
        fail->index = index;
        fail->bad_len = false;
        fail->past_end = !fits;
        rc = PD_ERR_CORRUPT;
        break;
    }
    s_scan_free(&sc);
    return rc;
}
