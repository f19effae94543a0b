/*
 * restique._index.PackIds -- the pack ids a master index refers to, numbered in order of first
 * appearance: 32 bytes each in one array plus an open-addressing hash over them, instead of a
 * Python list and dict of 64-character strings (about 200 bytes a pack). Hex at the boundary.
 */
#include "index.h"

typedef struct {
    PyObject_HEAD
    uint8_t *ids;     /* 32 bytes per pack, by number */
    Py_ssize_t count, cap;
    uint32_t *slots;  /* number + 1, 0 = empty */
    size_t slot_mask;
} PackIds;

static size_t
pack_slot_of(const uint8_t *id)
{
    uint64_t h;
    memcpy(&h, id, 8);
    return (size_t)(h * 0x9E3779B97F4A7C15ull >> 17);
}

/* The slot holding id, or the empty slot where it belongs. */
static size_t
pack_slot(const PackIds *p, const uint8_t *id)
{
    size_t s = pack_slot_of(id) & p->slot_mask;
    while (p->slots[s] && memcmp(p->ids + (size_t)(p->slots[s] - 1) * 32, id, 32) != 0)
        s = (s + 1) & p->slot_mask;
    return s;
}

static int
pack_ids_grow(PackIds *p)
{
    Py_ssize_t cap = p->cap ? p->cap * 2 : 1024;
    if (cap >= UINT32_MAX)
        return -1;
    uint8_t *ids = realloc(p->ids, (size_t)cap * 32);
    uint32_t *slots = calloc((size_t)cap * 2, sizeof(uint32_t)); /* at most half full */
    if (ids)
        p->ids = ids;
    if (!ids || !slots) {
        free(slots);
        return -1;
    }
    free(p->slots);
    p->slots = slots, p->slot_mask = (size_t)cap * 2 - 1, p->cap = cap;
    for (Py_ssize_t n = 0; n < p->count; n++)
        p->slots[pack_slot(p, p->ids + (size_t)n * 32)] = (uint32_t)(n + 1);
    return 0;
}

/* A pack id is 64 lowercase hex digits: it names a file. */
static int
parse_pack_id(PyObject *obj, uint8_t *id)
{
    if (!parse_hex_id(obj, id))
        return 0;
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(obj);
    for (int i = 0; i < 64; i++)
        if (s[i] >= 'A' && s[i] <= 'F')
            return 0;
    return 1;
}

static PyObject *
PackIds_number(PackIds *p, PyObject *hex)
{
    uint8_t id[32];
    if (!parse_pack_id(hex, id)) {
        PyObject *shown = PyObject_Repr(hex);
        if (shown)
            PyErr_Format(PyExc_ValueError, "invalid id %U", shown);
        Py_XDECREF(shown);
        return NULL;
    }
    if (p->count == p->cap && pack_ids_grow(p) < 0)
        return PyErr_NoMemory();
    size_t s = pack_slot(p, id);
    if (!p->slots[s]) {
        memcpy(p->ids + (size_t)p->count * 32, id, 32);
        p->slots[s] = (uint32_t)++p->count;
    }
    return PyLong_FromUnsignedLong(p->slots[s] - 1);
}

static PyObject *
PackIds_hex(PackIds *p, PyObject *arg)
{
    Py_ssize_t n = PyNumber_AsSsize_t(arg, PyExc_IndexError);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0 || n >= p->count) {
        PyErr_SetString(PyExc_IndexError, "no such pack number");
        return NULL;
    }
    static const char digits[] = "0123456789abcdef";
    PyObject *s = PyUnicode_New(64, 127);
    if (!s)
        return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(s);
    const uint8_t *id = p->ids + (size_t)n * 32;
    for (int k = 0; k < 32; k++)
        out[2 * k] = digits[id[k] >> 4], out[2 * k + 1] = digits[id[k] & 15];
    return s;
}

static Py_ssize_t
PackIds_len(PackIds *p)
{
    return p->count;
}

static void
PackIds_dealloc(PackIds *p)
{
    free(p->ids), free(p->slots);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static PyMethodDef PackIds_methods[] = {
    {"number", (PyCFunction)PackIds_number, METH_O, "The pack's number (hex id), numbering it if new."},
    {"hex", (PyCFunction)PackIds_hex, METH_O, "The hex id of pack number n."},
    {NULL},
};

static PySequenceMethods PackIds_as_sequence = {.sq_length = (lenfunc)PackIds_len};

PyTypeObject PackIdsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "restique._index.PackIds",
    .tp_basicsize = sizeof(PackIds),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Pack ids numbered in order of first appearance: hex id <-> number.",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)PackIds_dealloc,
    .tp_methods = PackIds_methods,
    .tp_as_sequence = &PackIds_as_sequence,
};

/* --- a table's own pack numbers ------------------------------------------------------------
 * A merge numbers the packs of its tail entries in the table's own numbering: the master
 * index's number -> the table's, in a small open-addressing hash (packs are few next to blobs). */

static size_t
number_slot(const PackMap *m, uint32_t global)
{
    size_t s = (size_t)((uint64_t)global * 0x9E3779B97F4A7C15ull >> 32) & m->mask;
    while (m->slots[2 * s + 1] != UINT32_MAX && m->slots[2 * s] != global)
        s = (s + 1) & m->mask;
    return s;
}

uint32_t
pack_map_get(const PackMap *m, uint32_t global)
{
    if (!m->slots)
        return UINT32_MAX;
    return m->slots[2 * number_slot(m, global) + 1];
}

static int
pack_map_grow(PackMap *m)
{
    size_t size = m->slots ? (m->mask + 1) * 2 : 1024;
    uint32_t *old = m->slots, *slots = malloc(size * 2 * sizeof(uint32_t));
    if (!slots)
        return -1;
    memset(slots, 0xff, size * 2 * sizeof(uint32_t));
    size_t old_size = old ? m->mask + 1 : 0;
    m->slots = slots, m->mask = size - 1;
    for (size_t s = 0; s < old_size; s++)
        if (old[2 * s + 1] != UINT32_MAX) {
            size_t at = number_slot(m, old[2 * s]);
            slots[2 * at] = old[2 * s], slots[2 * at + 1] = old[2 * s + 1];
        }
    free(old);
    return 0;
}

/* The table's number of global, numbering it next (m->count) if new; UINT32_MAX when out of memory. */
uint32_t
pack_map_number(PackMap *m, uint32_t global)
{
    if ((!m->slots || (size_t)m->count >= (m->mask + 1) / 2) && pack_map_grow(m) < 0)
        return UINT32_MAX;
    size_t s = number_slot(m, global);
    if (m->slots[2 * s + 1] == UINT32_MAX) {
        m->slots[2 * s] = global;
        m->slots[2 * s + 1] = (uint32_t)m->count++;
    }
    return m->slots[2 * s + 1];
}

void
pack_map_free(PackMap *m)
{
    free(m->slots);
    m->slots = NULL, m->mask = 0, m->count = 0;
}
