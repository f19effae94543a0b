/*
 * restique._chunker -- content-defined chunking compatible with restic.
 *
 * restic (github.com/restic/chunker v0.4.0) cuts a stream with a Rabin
 * fingerprint over a sliding window of 64 bytes.  Write H(w) for the
 * fingerprint of the 64 bytes w, i.e. the polynomial whose coefficients are
 * the bits of w (first byte most significant) reduced modulo the chunker
 * polynomial P.  restic's rolling state looks stateful (a window that is
 * reset to "63 zero bytes followed by a 1" at every boundary, a skip of
 * MinSize-64 bytes that are never hashed), but the skip is exactly long
 * enough that the reset value has been pushed out of the window by the time
 * the first cut may happen.  So the rule is purely positional:
 *
 *   with the current chunk starting at offset s, it ends at offset p, the
 *   smallest p with
 *        p - s >= min_size  and  ( H(data[p-64:p]) & mask == 0
 *                                  or p - s == max_size ),
 *   or at the end of the stream if there is no such p.
 *
 * Because H at a position only depends on the 64 bytes before it, the scan
 * for the next candidate can be split into independent blocks that are
 * hashed in an interleaved fashion ("lanes").  A single rolling hash is a
 * chain of dependent operations (xor, shift, table load, xor) per byte and
 * runs at only a few hundred MB/s; four interleaved chains keep the CPU's
 * load units busy instead.  The earliest hit over the lanes (in order) is
 * the cut, so the result is identical to the sequential scan.
 *
 * No global mutable state: a Tables object is immutable once built and may
 * be shared between threads; a Scanner holds the state of one stream and
 * refuses to be used by two threads at once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>

#define WINDOW 64
#define LANES 4 /* lanes_round() is written out for exactly 4 */
#define LANE_BLOCK (16 * 1024) /* bytes per lane and round */
#define MIN_LANE_BLOCK 256     /* below LANES * this, scan with a single lane */
#define NO_CUT ((size_t)-1)

#if defined(__GNUC__)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define UNLIKELY(x) (x)
#endif

/* ------------------------------------------------------------------------
 * Arithmetic in GF(2)[x] on uint64 (only what building the tables needs).
 */

static int
pol_degree(uint64_t p)
{
#if defined(__GNUC__)
    return p ? 63 - __builtin_clzll(p) : -1;
#else
    int d = -1;
    while (p) {
        p >>= 1;
        d++;
    }
    return d;
#endif
}

static uint64_t
pol_mod(uint64_t x, uint64_t m)
{
    int dm = pol_degree(m);
    int dx;
    while ((dx = pol_degree(x)) >= dm)
        x ^= m << (dx - dm);
    return x;
}

/* ------------------------------------------------------------------------
 * Tables
 */

typedef struct {
    uint64_t out[256]; /* out[b] = H(b followed by 63 zero bytes)           */
    uint64_t mod[256]; /* mod[t] = (t * x^k mod P) | (t * x^k), k = deg(P) */
    unsigned shift;    /* k - 8: the top byte of a digest is d >> shift     */
} rabin_tables;

typedef struct {
    PyObject_HEAD
    uint64_t pol;
    rabin_tables t;
} TablesObject;

static int
tables_build(rabin_tables *t, uint64_t pol)
{
    int k = pol_degree(pol);
    if (k < 8 || k > 53)
        return -1;
    t->shift = (unsigned)(k - 8);
    for (unsigned b = 0; b < 256; b++) {
        /* The top byte above degree k is cancelled by the (b << k) part, the
         * rest of the table entry adds the remainder of b * x^k. */
        t->mod[b] = pol_mod((uint64_t)b << k, pol) | ((uint64_t)b << k);
    }
    for (unsigned b = 0; b < 256; b++) {
        uint64_t h = pol_mod(b, pol);
        for (int i = 1; i < WINDOW; i++)
            h = pol_mod(h << 8, pol);
        t->out[b] = h;
    }
    return 0;
}

static int
Tables_init(TablesObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"pol", NULL};
    PyObject *pol_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!:Tables", kwlist, &PyLong_Type, &pol_obj))
        return -1;
    unsigned long long pol = PyLong_AsUnsignedLongLong(pol_obj);
    if (pol == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "polynomial must be an integer in [0, 2**64)");
        return -1;
    }
    if (tables_build(&self->t, (uint64_t)pol) < 0) {
        PyErr_Format(PyExc_ValueError,
                     "invalid chunker polynomial 0x%llx: its degree must be between 8 and 53", pol);
        return -1;
    }
    self->pol = (uint64_t)pol;
    return 0;
}

static PyObject *
table_as_tuple(const uint64_t *tab)
{
    PyObject *res = PyTuple_New(256);
    if (!res)
        return NULL;
    for (Py_ssize_t i = 0; i < 256; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(tab[i]);
        if (!v) {
            Py_DECREF(res);
            return NULL;
        }
        PyTuple_SET_ITEM(res, i, v);
    }
    return res;
}

static PyObject *
Tables_get_pol(TablesObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->pol);
}

static PyObject *
Tables_get_out(TablesObject *self, void *closure)
{
    return table_as_tuple(self->t.out);
}

static PyObject *
Tables_get_mod(TablesObject *self, void *closure)
{
    return table_as_tuple(self->t.mod);
}

static PyGetSetDef Tables_getset[] = {
    {"pol", (getter)Tables_get_pol, NULL, "the polynomial", NULL},
    {"out_table", (getter)Tables_get_out, NULL, "table to slide a byte out of the window", NULL},
    {"mod_table", (getter)Tables_get_mod, NULL, "table for the reduction modulo the polynomial", NULL},
    {NULL},
};

static PyTypeObject TablesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "restique._chunker.Tables",
    .tp_doc = "Tables(pol): precomputed Rabin fingerprint tables for one polynomial (immutable).",
    .tp_basicsize = sizeof(TablesObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Tables_init,
    .tp_getset = Tables_getset,
};

/* ------------------------------------------------------------------------
 * The scanning core.  Nothing here touches Python objects; it runs without
 * the GIL.
 */

/* Append byte b to fingerprint d. */
static inline uint64_t
push(const rabin_tables *t, unsigned shift, uint64_t d, uint8_t b)
{
    return ((d << 8) | b) ^ t->mod[d >> shift];
}

/* Fingerprint of the 64 bytes just before end. */
static inline uint64_t
window_hash(const rabin_tables *t, unsigned shift, const uint8_t *end)
{
    uint64_t d = 0;
    for (const uint8_t *q = end - WINDOW; q < end; q++)
        d = push(t, shift, d, *q);
    return d;
}

/* First position p in [lo, hi] with (H(data[p-64:p]) & mask) == 0, or
 * NO_CUT.  data[lo-64 .. hi-1] must be readable. */
static size_t
find_single(const rabin_tables *t, uint64_t mask, const uint8_t *data, size_t lo, size_t hi)
{
    const unsigned shift = t->shift;
    uint64_t d = window_hash(t, shift, data + lo);
    if ((d & mask) == 0)
        return lo;
    for (size_t p = lo; p < hi; p++) {
        d ^= t->out[data[p - WINDOW]];
        d = push(t, shift, d, data[p]);
        if (UNLIKELY((d & mask) == 0))
            return p + 1;
    }
    return NO_CUT;
}

#if defined(__GNUC__)
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE static inline
#endif

/* One round of LANES interleaved rolling hashes: lane i looks at the
 * positions [lo + i*blk, lo + (i+1)*blk).  Returns the first hit of the round
 * or NO_CUT.  Inlined with constant blk and shift where possible, so that the
 * lanes are addressed as constant displacements from one pointer. */
ALWAYS_INLINE size_t
lanes_round(const rabin_tables *t, uint64_t mask, const uint8_t *data, size_t lo, size_t blk,
            unsigned shift)
{
    const uint8_t *b = data + lo;
    uint64_t d[LANES];
    size_t j = 0; /* offset j has been tested in every lane */

    for (int i = 0; i < LANES; i++)
        d[i] = window_hash(t, shift, b + i * blk);
    for (int i = 0; i < LANES; i++)
        if ((d[i] & mask) == 0)
            goto hit;

    /* Position offset j of lane i ends just before b + i*blk + j. */
#define ROLL(i)                                                                      \
    do {                                                                             \
        const uint8_t *e = b + (i) * blk + j;                                        \
        d[i] = push(t, shift, d[i] ^ t->out[e[-1 - WINDOW]], e[-1]);                 \
    } while (0)
#define TEST(i)                                                                      \
    if (UNLIKELY((d[i] & mask) == 0))                                                \
    goto hit
    for (j = 1; j < blk; j++) {
        ROLL(0);
        ROLL(1);
        ROLL(2);
        ROLL(3);
        TEST(0);
        TEST(1);
        TEST(2);
        TEST(3);
    }
#undef ROLL
#undef TEST
    return NO_CUT;

hit:
    /* No lane hit before offset j; of the lanes hitting at j the lowest wins,
     * unless a lower lane still has a hit after j. */
    for (int i = 0; i < LANES; i++) {
        if ((d[i] & mask) == 0)
            return lo + i * blk + j;
        if (j + 1 < blk) {
            size_t r = find_single(t, mask, data, lo + i * blk + j + 1, lo + i * blk + blk - 1);
            if (r != NO_CUT)
                return r;
        }
    }
    return NO_CUT; /* not reached */
}

ALWAYS_INLINE size_t
find_first_impl(const rabin_tables *t, uint64_t mask, const uint8_t *data, size_t lo, size_t hi,
                unsigned shift)
{
    size_t r;
    while (hi >= lo && hi - lo + 1 >= (size_t)LANES * LANE_BLOCK) {
        if ((r = lanes_round(t, mask, data, lo, LANE_BLOCK, shift)) != NO_CUT)
            return r;
        lo += (size_t)LANES * LANE_BLOCK;
    }
    while (hi >= lo && hi - lo + 1 >= (size_t)LANES * MIN_LANE_BLOCK) {
        size_t blk = (hi - lo + 1) / LANES;
        if ((r = lanes_round(t, mask, data, lo, blk, shift)) != NO_CUT)
            return r;
        lo += (size_t)LANES * blk;
    }
    if (hi >= lo)
        return find_single(t, mask, data, lo, hi);
    return NO_CUT;
}

/* Same contract as find_single, but several times faster on long ranges.
 * restic's polynomials have degree 53, for which the code is specialised. */
static size_t
find_first(const rabin_tables *t, uint64_t mask, const uint8_t *data, size_t lo, size_t hi)
{
    if (t->shift == 53 - 8)
        return find_first_impl(t, mask, data, lo, hi, 53 - 8);
    return find_first_impl(t, mask, data, lo, hi, t->shift);
}

typedef struct {
    const rabin_tables *t;
    uint64_t mask;
    size_t min_size, max_size;
    size_t count;           /* bytes of the unfinished chunk consumed so far */
    uint8_t ring[WINDOW];   /* the last 64 bytes of the stream consumed so far */
} scan_state;

/* Consume buf[start:end]; store the absolute offsets of the cuts found in
 * cuts[] (room for (end-start)/min_size + 1 entries); return their number. */
static size_t
scan_buffer(scan_state *st, const uint8_t *buf, size_t start, size_t end, size_t *cuts)
{
    size_t ncuts = 0;
    size_t pos = start;
    for (;;) {
        /* Chunk lengths min(min_size, count+1) .. max_size are still to be
         * tested; length c corresponds to the offset pos + (c - count). */
        size_t first_len = st->count + 1 > st->min_size ? st->count + 1 : st->min_size;
        size_t need = first_len - st->count;
        if (need > end - pos)
            break;
        size_t lo = pos + need;
        size_t limit = pos + (st->max_size - st->count); /* forced cut here */
        size_t hi = (limit - pos) <= end - pos ? limit : end;
        size_t cut = NO_CUT;

        if (lo < start + WINDOW) {
            /* The windows of the first positions reach back into earlier
             * buffers: look at them in a copy of ring + the buffer's head. */
            uint8_t tmp[2 * WINDOW];
            size_t m = end - start < WINDOW ? end - start : WINDOW;
            memcpy(tmp, st->ring, WINDOW);
            memcpy(tmp + WINDOW, buf + start, m);
            size_t tlo = lo - start + WINDOW;
            size_t thi = (hi < start + WINDOW - 1 ? hi : start + WINDOW - 1) - start + WINDOW;
            if (tlo <= thi) {
                size_t r = find_single(st->t, st->mask, tmp, tlo, thi);
                if (r != NO_CUT)
                    cut = r - WINDOW + start;
            }
            if (cut == NO_CUT && hi >= start + WINDOW)
                cut = find_first(st->t, st->mask, buf, start + WINDOW, hi);
        }
        else {
            cut = find_first(st->t, st->mask, buf, lo, hi);
        }
        if (cut == NO_CUT && hi == limit)
            cut = limit;
        if (cut == NO_CUT)
            break;
        cuts[ncuts++] = cut;
        pos = cut;
        st->count = 0;
    }
    st->count += end - pos;

    size_t n = end - start;
    if (n >= WINDOW) {
        memcpy(st->ring, buf + end - WINDOW, WINDOW);
    }
    else {
        memmove(st->ring, st->ring + n, WINDOW - n);
        memcpy(st->ring + WINDOW - n, buf + start, n);
    }
    return ncuts;
}

/* ------------------------------------------------------------------------
 * Scanner
 */

typedef struct {
    PyObject_HEAD
    TablesObject *tables;
    scan_state st;
    int busy;
} ScannerObject;

static int
Scanner_init(ScannerObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"tables", "min_size", "max_size", "average_bits", NULL};
    TablesObject *tables;
    Py_ssize_t min_size, max_size;
    int bits = 20;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!nn|i:Scanner", kwlist, &TablesType, &tables,
                                     &min_size, &max_size, &bits))
        return -1;
    if (min_size < WINDOW || max_size < min_size) {
        PyErr_SetString(PyExc_ValueError, "need 64 <= min_size <= max_size");
        return -1;
    }
    if (tables->pol == 0) {
        PyErr_SetString(PyExc_ValueError, "Tables object was not initialised");
        return -1;
    }
    if (bits < 0 || bits > 63) {
        PyErr_SetString(PyExc_ValueError, "average_bits must be in [0, 63]");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Scanner is in use by another thread");
        return -1;
    }
    Py_INCREF(tables);
    Py_XSETREF(self->tables, tables);
    memset(&self->st, 0, sizeof(self->st));
    self->st.t = &tables->t;
    self->st.mask = (((uint64_t)1) << bits) - 1;
    self->st.min_size = (size_t)min_size;
    self->st.max_size = (size_t)max_size;
    return 0;
}

static void
Scanner_dealloc(ScannerObject *self)
{
    Py_XDECREF(self->tables);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Scanner_scan(ScannerObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"buffer", "start", "end", NULL};
    Py_buffer view;
    Py_ssize_t start = 0, end = PY_SSIZE_T_MAX;
    if (self->tables == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Scanner not initialised");
        return NULL;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*|nn:scan", kwlist, &view, &start, &end))
        return NULL;
    if (end > view.len)
        end = view.len;
    if (start < 0 || start > end) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "need 0 <= start <= end <= len(buffer)");
        return NULL;
    }
    if (self->busy) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_RuntimeError, "Scanner is in use by another thread");
        return NULL;
    }
    size_t room = (size_t)(end - start) / self->st.min_size + 1;
    size_t *cuts = PyMem_RawMalloc(room * sizeof(size_t));
    if (!cuts) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    size_t ncuts;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    ncuts = scan_buffer(&self->st, (const uint8_t *)view.buf, (size_t)start, (size_t)end, cuts);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    PyBuffer_Release(&view);

    PyObject *res = PyList_New((Py_ssize_t)ncuts);
    if (res) {
        for (size_t i = 0; i < ncuts; i++) {
            PyObject *v = PyLong_FromSize_t(cuts[i]);
            if (!v) {
                Py_CLEAR(res);
                break;
            }
            PyList_SET_ITEM(res, (Py_ssize_t)i, v);
        }
    }
    PyMem_RawFree(cuts);
    return res;
}

static PyObject *
Scanner_reset(ScannerObject *self, PyObject *unused)
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Scanner is in use by another thread");
        return NULL;
    }
    self->st.count = 0;
    memset(self->st.ring, 0, WINDOW);
    Py_RETURN_NONE;
}

static PyObject *
Scanner_get_count(ScannerObject *self, void *closure)
{
    return PyLong_FromSize_t(self->st.count);
}

static PyMethodDef Scanner_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))Scanner_scan, METH_VARARGS | METH_KEYWORDS,
     "scan(buffer, start=0, end=len(buffer)) -> list of int\n\n"
     "Consume buffer[start:end] as the continuation of the stream and return the\n"
     "offsets (into buffer) at which chunks end.  The GIL is released meanwhile."},
    {"reset", (PyCFunction)Scanner_reset, METH_NOARGS, "Start a new stream."},
    {NULL},
};

static PyGetSetDef Scanner_getset[] = {
    {"count", (getter)Scanner_get_count, NULL,
     "number of bytes of the unfinished chunk consumed so far", NULL},
    {NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "restique._chunker.Scanner",
    .tp_doc = "Scanner(tables, min_size, max_size, average_bits=20): chunk boundary finder for one stream.",
    .tp_basicsize = sizeof(ScannerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scanner_init,
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_methods = Scanner_methods,
    .tp_getset = Scanner_getset,
};

/* ------------------------------------------------------------------------
 * Module
 */

/* all_zero(buffer) -> bool: whether every byte is zero. Disk images are mostly zeros, and
 * an all-zero chunk's id is known from its length alone (chunks of zeros are min_size long):
 * this is several times cheaper than hashing, without copying the chunk. */
static PyObject *
all_zero(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *p = view.buf;
    size_t n = (size_t)view.len;
    int zero;
    if (n == 0) {
        zero = 1;
    }
    else if (n < (1u << 16)) {
        zero = p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
    }
    else {
        Py_BEGIN_ALLOW_THREADS
        zero = p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(zero);
}

static PyMethodDef chunker_functions[] = {
    {"all_zero", all_zero, METH_O, "all_zero(buffer) -> bool: whether every byte is zero"},
    {NULL},
};

static struct PyModuleDef chunker_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "restique._chunker",
    .m_doc = "Rabin fingerprint content-defined chunking, compatible with restic's chunker.",
    .m_size = -1,
    .m_methods = chunker_functions,
};

PyMODINIT_FUNC
PyInit__chunker(void)
{
    if (PyType_Ready(&TablesType) < 0 || PyType_Ready(&ScannerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&chunker_module);
    if (!m)
        return NULL;
    Py_INCREF(&TablesType);
    if (PyModule_AddObject(m, "Tables", (PyObject *)&TablesType) < 0) {
        Py_DECREF(&TablesType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(m, "Scanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(&ScannerType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "WINDOW_SIZE", WINDOW) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
