/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The byte-level work of cpartd.pandas and cpartd.numpy, in partd's formats
 * (so either implementation reads what the other wrote):
 *   - a numeric block is its raw bytes compressed by blosc (python-blosc's
 *     defaults: blosclz, level 9, byte shuffle, typesize the item size, one
 *     thread), or stored raw when python-blosc is missing;
 *   - an object block is the list of its items pickled (pickle.c), framed,
 *     then compressed as text (snappy, else blosc with typesize 1, else raw).
 *
 * Pieces are coded by libpartd's codecs, those of its Encode layer
 * (src/encode/codec_snappy.c, codec_blosc.c), run over the caller's memory
 * through a sink: the same bytes, and every piece read gets their header
 * checks before anything is decoded.  partd compresses a numeric block with
 * its item size as blosc's typesize, so blosc encoders are made per
 * typesize (pd__codec_blosc_typed).
 */
#include "cpartd.h"

#include "encode/codec.h"

#include <blosc.h> /* BLOSC_MAX_BUFFERSIZE */
#include <stdio.h>
#include <string.h>

/* libpartd's snappy and blosc codecs (made once; neither keeps state
 * between calls, so threads share them). */
static pd_codec s_snappy, s_blosc;
/* Blosc encoders for the common item sizes, typesize i at [i]. */
#define S_TYPED_MAX 16
static pd_codec s_blosc_typed[S_TYPED_MAX + 1];

int cp_blocks_init(void) {
    static bool ready;
    if (ready) return 0;
    int rc = pd_codec_builtin(&s_snappy, "snappy", PD_LEVEL_DEFAULT);
    if (!rc) rc = pd_codec_builtin(&s_blosc, "blosc", 9);
    for (size_t t = 1; t <= S_TYPED_MAX && !rc; t++)
        rc = pd__codec_blosc_typed(&s_blosc_typed[t], 9, t);
    if (rc) {
        cp_raise(NULL, rc);
        return -1;
    }
    ready = true;
    return 0;
}

/* Runs a codec callback over src[0..n) straight into dst[0..cap) (the
 * sink's limit is cap, so its buffer never moves elsewhere): 0 with *made
 * the bytes written, or a PD_ERR_* code with the codec's reason in why
 * (PD__REASON_MAX bytes; may be NULL).  No Python API: runs without the
 * GIL. */
static int s_run(int (*fn)(void *, const void *, size_t, pd_sink *), void *ctx,
                 const void *src, size_t n, void *dst, size_t cap, size_t *made,
                 char *why) {
    *made = 0;
    pd_result *r = pd__result_new(1, 0);
    if (!r) return PD_ERR_NOMEM;
    pd__result_use(r, dst, cap);
    pd_sink sink;
    pd__sink_init(&sink, r, cap);
    int rc = fn(ctx, src, n, &sink);
    if (rc == 0 && r->len && !pd_result_in(r, dst)) rc = PD_ERR_LIMIT;
    if (rc == 0)
        *made = r->len;
    else if (why)
        snprintf(why, PD__REASON_MAX, "%s",
                 sink.reason[0] ? sink.reason : pd_strerror(rc));
    pd_result_free(&r);
    return rc;
}

/* The room compressing n bytes with codec may take. */
static size_t s_codec_bound(int codec, size_t n) {
    if (codec == CP_CODEC_BLOSC) return pd__codec_blosc.bound(n);
    if (codec == CP_CODEC_SNAPPY) return pd__codec_snappy.bound(n);
    return n;
}

/* Compresses src[0..n) with codec into dst (room: s_codec_bound); returns
 * the compressed size, or 0 on failure (never for a correct bound). */
static size_t s_codec_compress(int codec, size_t typesize, const void *src,
                               size_t n, void *dst, size_t room) {
    size_t out;
    if (codec == CP_CODEC_BLOSC) {
        /* An uncommon item size gets an encoder for this call only. */
        pd_codec tmp = {0}, *c = &tmp;
        if (typesize >= 1 && typesize <= S_TYPED_MAX)
            c = &s_blosc_typed[typesize];
        else if (pd__codec_blosc_typed(&tmp, 9, typesize))
            return 0;
        int rc = s_run(c->encode, c->ctx, src, n, dst, room, &out, NULL);
        if (c == &tmp) tmp.destroy(tmp.ctx);
        return rc ? 0 : out;
    }
    if (codec == CP_CODEC_SNAPPY) {
        return s_run(s_snappy.encode, s_snappy.ctx, src, n, dst, room, &out,
                     NULL)
                   ? 0
                   : out;
    }
    if (n) memcpy(dst, src, n);
    return n;
}

typedef struct s_part {
    int codec;
    size_t typesize;
    Py_buffer view; /* view.obj NULL when text is used */
    pd__buf text;   /* a pickled, framed object list */
    const void *src;
    size_t n;
} s_part;

/* blocks_frames(header, parts): partd's serialize(df) (cpartd.pandas) in
 * one buffer: frame(header), then for each part (codec, data, typesize) the
 * frame of data compressed by codec (0 raw, 1 blosc, 2 snappy).  data is
 * any contiguous buffer, or a list (an object block: pickled and framed
 * first, as partd's numpy.serialize).  Compression runs without the GIL.
 * Returns bytes, or None when a list holds an item text_pickle does not
 * handle. */
PyObject *cp_blocks_frames(PyObject *Py_UNUSED(mod), PyObject *args) {
    PyObject *header, *parts;
    if (!PyArg_ParseTuple(args, "OO!:blocks_frames", &header, &PyList_Type,
                          &parts))
        return NULL;
    Py_buffer hv;
    if (PyObject_GetBuffer(header, &hv, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t np = PyList_GET_SIZE(parts);
    s_part *ps = PyMem_Calloc(np ? (size_t)np : 1, sizeof *ps);
    PyObject *out = NULL;
    Py_ssize_t done = 0;
    if (!ps) {
        PyErr_NoMemory();
        goto fail;
    }
    size_t bound = 8 + (size_t)hv.len;
    for (; done < np; done++) {
        s_part *p = &ps[done];
        PyObject *it = PyList_GET_ITEM(parts, done), *data;
        int codec;
        Py_ssize_t ts;
        if (!PyTuple_Check(it)) {
            PyErr_SetString(PyExc_TypeError,
                            "blocks_frames: a part is a tuple (codec, data, "
                            "typesize)");
            goto fail;
        }
        if (!PyArg_ParseTuple(it, "iOn:blocks_frames part", &codec, &data, &ts))
            goto fail;
        if (codec < CP_CODEC_RAW || codec > CP_CODEC_SNAPPY || ts < 1 ||
            ts > 255) {
            PyErr_SetString(PyExc_ValueError,
                            "blocks_frames: a part is (codec 0-2, data, "
                            "typesize 1-255)");
            goto fail;
        }
        p->codec = codec;
        p->typesize = (size_t)ts;
        if (PyList_Check(data)) {
            int rc = cp_text_pickle(data, &p->text);
            if (rc < 0) goto fail;
            if (rc == 1) {
                out = Py_NewRef(Py_None);
                goto fail;
            }
            p->src = p->text.p;
            p->n = p->text.len;
        } else {
            if (PyObject_GetBuffer(data, &p->view, PyBUF_C_CONTIGUOUS) < 0)
                goto fail;
            p->src = p->view.buf;
            p->n = (size_t)p->view.len;
        }
        if (codec == CP_CODEC_BLOSC && p->n > BLOSC_MAX_BUFFERSIZE) {
            PyErr_Format(PyExc_ValueError,
                         "cpartd: a block of %zu bytes is more than blosc "
                         "takes (%d)",
                         p->n, BLOSC_MAX_BUFFERSIZE);
            goto fail;
        }
        size_t b = s_codec_bound(codec, p->n);
        if (__builtin_add_overflow(bound, 8 + b, &bound) ||
            bound > PY_SSIZE_T_MAX) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)bound);
    if (!out) goto fail;
    size_t len = 0;
    bool ok = true;
    char *dst = PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS pd__put_le64((unsigned char *)dst, (uint64_t)hv.len);
    memcpy(dst + 8, hv.buf, (size_t)hv.len);
    len = 8 + (size_t)hv.len;
    for (Py_ssize_t i = 0; i < np && ok; i++) {
        s_part *p = &ps[i];
        size_t c = s_codec_compress(p->codec, p->typesize, p->src, p->n,
                                    dst + len + 8, bound - len - 8);
        if (c == 0 && p->n > 0) ok = false;
        pd__put_le64((unsigned char *)dst + len, (uint64_t)c);
        len += 8 + c;
    }
    Py_END_ALLOW_THREADS if (!ok) {
        Py_CLEAR(out);
        PyErr_SetString(PyExc_RuntimeError,
                        "cpartd: blocks_frames: compression failed");
        goto fail;
    }
    if (_PyBytes_Resize(&out, (Py_ssize_t)len) < 0) out = NULL;
fail:
    /* Every part: ps is zeroed, and a failing part may hold a text. */
    for (Py_ssize_t i = 0; i < np && ps; i++) {
        if (ps[i].view.obj) PyBuffer_Release(&ps[i].view);
        pd__buf_free(&ps[i].text);
    }
    PyMem_Free(ps);
    PyBuffer_Release(&hv);
    return out;
}

/* Limit on what one decompressed piece may claim (blosc 1.x's own). */
#define S_DECOMPRESS_MAX ((size_t)INT32_MAX)

/* The decompressed size src claims under codec (the codec's header check,
 * nothing decoded): 0 and a message in why when it is not a valid piece. */
static size_t s_codec_size(int codec, const void *src, size_t n,
                           const char **why) {
    uint64_t declared = 0;
    if (codec == CP_CODEC_BLOSC) {
        if (pd__codec_blosc.probe(src, n, &declared)) {
            *why = "not a blosc chunk";
            return 0;
        }
    } else if (codec == CP_CODEC_SNAPPY) {
        if (pd__codec_snappy.probe(src, n, &declared)) {
            *why = "not a snappy block, or a length the data cannot hold";
            return 0;
        }
    } else {
        return n;
    }
    if (declared > SIZE_MAX) {
        *why = "a size past the address space";
        return 0;
    }
    return (size_t)declared;
}

/* Decodes src[0..n) into dst[0..size), which it must fill exactly.  true,
 * or false with the codec's reason in why (PD__REASON_MAX bytes). */
static bool s_codec_decompress(int codec, const void *src, size_t n, void *dst,
                               size_t size, char *why) {
    if (codec == CP_CODEC_RAW) {
        if (n) memcpy(dst, src, n);
        if (n != size) snprintf(why, PD__REASON_MAX, "wrong size");
        return n == size;
    }
    const pd_codec *c = codec == CP_CODEC_BLOSC ? &s_blosc : &s_snappy;
    size_t made;
    if (s_run(c->decode, c->ctx, src, n, dst, size, &made, why)) return false;
    if (made != size) snprintf(why, PD__REASON_MAX, "wrong size");
    return made == size;
}

/* decompress(codec, data, out=None, offset=0): data decompressed (0 raw,
 * 1 blosc, 2 snappy).  Without out: new bytes.  With out (a writable
 * contiguous buffer, e.g. a numpy array): written at byte `offset`, which
 * must leave room for all of it; returns the number of bytes written.
 * Runs without the GIL.  A piece that does not decode raises CorruptError. */
PyObject *cp_decompress_py(PyObject *Py_UNUSED(mod), PyObject *args,
                           PyObject *kwds) {
    static char *kwlist[] = {"codec", "data", "out", "offset", NULL};
    int codec;
    Py_buffer src, dv = {0};
    PyObject *outobj = Py_None, *ret = NULL;
    Py_ssize_t offset = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iy*|On:decompress", kwlist,
                                     &codec, &src, &outobj, &offset))
        return NULL;
    if (codec < CP_CODEC_RAW || codec > CP_CODEC_SNAPPY) {
        PyErr_SetString(PyExc_ValueError, "decompress: codec is 0-2");
        goto out;
    }
    const char *why = NULL;
    size_t size =
        src.len ? s_codec_size(codec, src.buf, (size_t)src.len, &why) : 0;
    if (why) {
        PyErr_Format(cp_CorruptError, "cpartd: decompress: %s (%zd bytes)", why,
                     src.len);
        goto out;
    }
    if (size > S_DECOMPRESS_MAX) {
        PyErr_Format(cp_CorruptError,
                     "cpartd: decompress: a piece claims %zu bytes", size);
        goto out;
    }
    char *dst;
    if (outobj == Py_None) {
        ret = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
        if (!ret) goto out;
        dst = PyBytes_AS_STRING(ret);
    } else {
        if (PyObject_GetBuffer(outobj, &dv,
                               PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
            goto out;
        if (offset < 0 || (size_t)offset > (size_t)dv.len ||
            size > (size_t)dv.len - (size_t)offset) {
            PyErr_Format(cp_CorruptError,
                         "cpartd: decompress: %zu bytes do not fit at offset "
                         "%zd of %zd",
                         size, offset, dv.len);
            goto out;
        }
        dst = (char *)dv.buf + offset;
    }
    bool ok = true;
    char reason[PD__REASON_MAX] = "";
    if (size) {
        Py_BEGIN_ALLOW_THREADS ok = s_codec_decompress(
            codec, src.buf, (size_t)src.len, dst, size, reason);
        Py_END_ALLOW_THREADS
    }
    if (!ok) {
        Py_CLEAR(ret);
        PyErr_Format(cp_CorruptError,
                     "cpartd: decompress: a %s piece of %zd bytes does not "
                     "decode: %s",
                     codec == CP_CODEC_BLOSC ? "blosc" : "snappy", src.len,
                     reason);
        goto out;
    }
    if (outobj != Py_None) ret = PyLong_FromSize_t(size);
out:
    if (dv.obj) PyBuffer_Release(&dv);
    PyBuffer_Release(&src);
    return ret;
}

/* concat_into(codec, pieces, out, ncols, itemsize, rows): decompresses
 * pieces[i], each an array of ncols rows of rows[i] items (C order), into
 * out, an array of ncols rows of sum(rows) items, piece i at column offset
 * rows[0] + ... + rows[i-1]: the concatenation of the pieces along their
 * last axis.  One call per block of a get, without the GIL.  A piece that
 * does not decode to its size raises CorruptError. */
PyObject *cp_concat_into(PyObject *Py_UNUSED(mod), PyObject *args) {
    int codec;
    PyObject *pieces, *outobj, *rows;
    Py_ssize_t ncols, itemsize;
    if (!PyArg_ParseTuple(args, "iO!OnnO!:concat_into", &codec, &PyList_Type,
                          &pieces, &outobj, &ncols, &itemsize, &PyList_Type,
                          &rows))
        return NULL;
    Py_ssize_t np = PyList_GET_SIZE(pieces);
    if (codec < CP_CODEC_RAW || codec > CP_CODEC_SNAPPY || ncols < 1 ||
        itemsize < 1 || PyList_GET_SIZE(rows) != np) {
        PyErr_SetString(PyExc_ValueError,
                        "concat_into: codec 0-2, ncols and itemsize >= 1, "
                        "one row count per piece");
        return NULL;
    }
    Py_buffer out;
    if (PyObject_GetBuffer(outobj, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) <
        0)
        return NULL;
    Py_buffer *views = PyMem_Calloc(np ? (size_t)np : 1, sizeof *views);
    size_t *nrow = PyMem_Calloc(np ? (size_t)np : 1, sizeof *nrow);
    PyObject *ret = NULL;
    Py_ssize_t got = 0;
    if (!views || !nrow) {
        PyErr_NoMemory();
        goto done;
    }
    size_t total = 0, row = (size_t)ncols * (size_t)itemsize, maxpiece = 0;
    for (; got < np; got++) {
        size_t n = PyLong_AsSize_t(PyList_GET_ITEM(rows, got));
        if (n == (size_t)-1 && PyErr_Occurred()) goto done;
        nrow[got] = n;
        if (__builtin_add_overflow(total, n, &total)) goto toobig;
        if (PyObject_GetBuffer(PyList_GET_ITEM(pieces, got), &views[got],
                               PyBUF_SIMPLE) < 0)
            goto done;
    }
    size_t need;
    if (__builtin_mul_overflow(total, row, &need) || need != (size_t)out.len)
        goto toobig;
    for (Py_ssize_t i = 0; i < np; i++)
        if (nrow[i] * (size_t)itemsize > maxpiece)
            maxpiece = nrow[i] * (size_t)itemsize;
    Py_ssize_t bad = -1;
    const char *why = NULL;
    size_t claimed = 0;
    char reason[PD__REASON_MAX] = "", whybuf[PD__REASON_MAX + 32];
    Py_BEGIN_ALLOW_THREADS char *scratch = NULL;
    size_t off = 0;
    for (Py_ssize_t i = 0; i < np && bad < 0; i++) {
        size_t want = nrow[i] * row; /* cannot overflow: <= need */
        size_t size = views[i].len ? s_codec_size(codec, views[i].buf,
                                                  (size_t)views[i].len, &why)
                                   : 0;
        if (why || size != want) {
            claimed = size;
            bad = i;
            break;
        }
        char *dst = (char *)out.buf + off * (size_t)itemsize;
        if (ncols > 1 && codec == CP_CODEC_RAW) {
            /* raw rows: each straight into its place, no scratch */
            size_t len = nrow[i] * (size_t)itemsize;
            for (Py_ssize_t c = 0; c < ncols; c++)
                memcpy((char *)out.buf +
                           ((size_t)c * total + off) * (size_t)itemsize,
                       (const char *)views[i].buf + (size_t)c * len, len);
            off += nrow[i];
            continue;
        }
        if (ncols > 1) {
            if (!scratch && !(scratch = malloc(maxpiece * (size_t)ncols))) {
                why = "no memory";
                bad = i;
                break;
            }
            dst = scratch;
        }
        if (want &&
            !s_codec_decompress(codec, views[i].buf, (size_t)views[i].len, dst,
                                want, reason)) {
            snprintf(whybuf, sizeof whybuf, "does not decode: %s", reason);
            why = whybuf;
            bad = i;
            break;
        }
        if (ncols > 1) {
            size_t len = nrow[i] * (size_t)itemsize;
            for (Py_ssize_t c = 0; c < ncols; c++)
                memcpy((char *)out.buf +
                           ((size_t)c * total + off) * (size_t)itemsize,
                       scratch + (size_t)c * len, len);
        }
        off += nrow[i];
    }
    free(scratch);
    Py_END_ALLOW_THREADS if (bad >= 0) {
        if (why && strcmp(why, "no memory") == 0)
            PyErr_NoMemory();
        else
            PyErr_Format(cp_CorruptError,
                         "cpartd: PandasBlocks get: piece %zd of a block: %s "
                         "(%zu bytes where its header says %zu)",
                         bad, why ? why : "wrong size", claimed,
                         nrow[bad] * row);
        goto done;
    }
    ret = Py_NewRef(Py_None);
    goto done;
toobig:
    PyErr_SetString(PyExc_ValueError,
                    "concat_into: out does not have the size of the pieces");
done:
    for (Py_ssize_t i = 0; i < got && views; i++) PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(nrow);
    PyBuffer_Release(&out);
    return ret;
}
