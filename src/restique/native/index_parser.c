/* restique._index: loading index files straight into the tables. */
#include "index.h"

/* --- the fast path of loading an index file ----------------------------------------------- */

/* A dict's int value as uint64: 1, or 0 when it is missing (absent_ok: then 0 is stored) or
 * anything but an exact int that fits; the caller falls back to the Python path then. */
static int
int_field(PyObject *blob, const char *key, int absent_ok, uint64_t *out)
{
    PyObject *v = PyDict_GetItemString(blob, key);
    if (!v || v == Py_None) {
        *out = 0;
        return absent_ok;
    }
    if (!PyLong_CheckExact(v))
        return 0;
    unsigned long long n = PyLong_AsUnsignedLongLong(v);
    if (n == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *out = n;
    return 1;
}

/* Add one blob of the canonical shape; 0 for anything else. */
static int
add_canonical_blob(PyObject *blob, Table *data, Table *tree, uint64_t pack)
{
    if (!PyDict_CheckExact(blob))
        return 0;
    PyObject *type = PyDict_GetItemString(blob, "type");
    PyObject *hex = PyDict_GetItemString(blob, "id");
    Table *t = NULL;
    if (type && PyUnicode_CheckExact(type))
        t = PyUnicode_CompareWithASCIIString(type, "data") == 0   ? data
            : PyUnicode_CompareWithASCIIString(type, "tree") == 0 ? tree
                                                                  : NULL;
    uint8_t id[32];
    Fields f;
    if (!t || !hex || !PyUnicode_CheckExact(hex) || !parse_hex_id(hex, id) ||
        !int_field(blob, "offset", 0, &f.offset) || !int_field(blob, "length", 0, &f.length) ||
        !int_field(blob, "uncompressed_length", 1, &f.ulen))
        return 0;
    return add_entry(t, id, pack, f.offset, f.length, f.ulen) < 0 ? -1 : 1;
}

/* add_packs(data, tree, packs, numbers): add the blobs of an index file's "packs" (as orjson
 * parsed them; numbers[i] is packs[i]'s pack number) when every pack and blob has the canonical
 * shape, and return True; else add nothing and return False. */
PyObject *
add_packs(PyObject *module, PyObject *args)
{
    Table *data, *tree;
    PyObject *packs, *numbers;
    if (!PyArg_ParseTuple(args, "O!O!O!O!", &TableType, &data, &TableType, &tree, &PyList_Type, &packs,
                          &PyList_Type, &numbers))
        return NULL;
    Py_ssize_t data_mark = data->tail_count, tree_mark = tree->tail_count;
    int ok = PyList_GET_SIZE(packs) == PyList_GET_SIZE(numbers);
    for (Py_ssize_t i = 0; ok > 0 && i < PyList_GET_SIZE(packs); i++) {
        PyObject *pack = PyList_GET_ITEM(packs, i), *blobs;
        uint64_t number;
        ok = PyDict_CheckExact(pack) && as_u64(PyList_GET_ITEM(numbers, i), &number) == 0;
        if (ok <= 0)
            break;
        blobs = PyDict_GetItemString(pack, "blobs");
        if (!blobs || blobs == Py_None)
            continue;
        if (!PyList_CheckExact(blobs)) {
            ok = 0;
            break;
        }
        for (Py_ssize_t k = 0; ok > 0 && k < PyList_GET_SIZE(blobs); k++)
            ok = add_canonical_blob(PyList_GET_ITEM(blobs, k), data, tree, number);
    }
    if (ok > 0)
        return merge_step(data) < 0 || merge_step(tree) < 0 ? NULL : Py_NewRef(Py_True);
    data->tail_count = data_mark, tree->tail_count = tree_mark; /* nothing hashed past them */
    if (ok < 0 || PyErr_Occurred())
        return NULL;
    Py_RETURN_FALSE;
}

/* --- a parser of the index files restic writes --------------------------------------------
 *
 * It accepts only a strict subset of JSON: the object layout with the keys "supersedes" (an
 * array of lowercase hex ids) and "packs"; packs with "id" and "blobs"; blobs with "id", "type"
 * ("data" or "tree"), "offset", "length" and optionally "uncompressed_length" (plain decimal
 * numbers); ids of 64 hex digits; no escapes, no duplicate or other keys. For anything else it
 * says "not mine" and adds nothing, and the orjson path -- which raises whatever errors an index
 * file has -- takes over. So it never accepts an index the Python path would refuse.
 */

typedef struct {
    const char *p, *end;
    const char **pack_ids; /* where each pack's id starts in the text */
    Py_ssize_t packs, packs_cap;
} Reader;

static void
skip_ws(Reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
}

static int
expect(Reader *r, char c)
{
    skip_ws(r);
    if (r->p < r->end && *r->p == c) {
        r->p++;
        return 1;
    }
    return 0;
}

/* A string without escapes or control or non-ASCII bytes: its start and length. */
static int
read_string(Reader *r, const char **s, Py_ssize_t *len)
{
    if (!expect(r, '"'))
        return 0;
    const char *start = r->p;
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p;
        if (c == '\\' || c < 0x20 || c >= 0x80)
            return 0;
        r->p++;
    }
    if (r->p == r->end)
        return 0;
    *s = start;
    *len = r->p++ - start;
    return 1;
}

static int
is_key(const char *s, Py_ssize_t len, const char *key)
{
    return (size_t)len == strlen(key) && memcmp(s, key, len) == 0;
}

/* A hex id string; lowercase only when pack ids (they become file names). */
static int
read_id(Reader *r, uint8_t *id, int lowercase_only)
{
    const char *s;
    Py_ssize_t len;
    if (!read_string(r, &s, &len) || len != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (lowercase_only && s[i] >= 'A' && s[i] <= 'F')
            return 0;
    return decode_hex((const unsigned char *)s, id);
}

static int
read_number(Reader *r, uint64_t *out)
{
    skip_ws(r);
    const char *start = r->p;
    uint64_t v = 0;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        unsigned d = *r->p - '0';
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
        r->p++;
    }
    if (r->p == start || (*start == '0' && r->p - start > 1))
        return 0;
    *out = v;
    return 1;
}

/* Calls item(r, ctx) for each element of an array (possibly empty). */
static int
read_array(Reader *r, int (*item)(Reader *, void *), void *ctx)
{
    if (!expect(r, '['))
        return 0;
    if (expect(r, ']'))
        return 1;
    do {
        int rc = item(r, ctx);
        if (rc <= 0)
            return rc;
    } while (expect(r, ','));
    return expect(r, ']');
}

/* Calls member(r, key, key_len, ctx) for each member of an object; each key at most once. */
static int
read_object(Reader *r, int (*member)(Reader *, const char *, Py_ssize_t, void *), void *ctx)
{
    if (!expect(r, '{'))
        return 0;
    if (expect(r, '}'))
        return 1;
    do {
        const char *key;
        Py_ssize_t len;
        if (!read_string(r, &key, &len) || !expect(r, ':'))
            return 0;
        int rc = member(r, key, len, ctx);
        if (rc <= 0)
            return rc;
    } while (expect(r, ','));
    return expect(r, '}');
}

/* pack_entries' output: each pack's blobs in three arrays, made into a tuple at its end */
typedef struct {
    PyObject *packs; /* list of (pack id, types, ids, numbers) */
    char *types;     /* 'd' or 't' a blob */
    uint8_t *ids;    /* 32 bytes a blob */
    uint64_t *numbers; /* offset, length, uncompressed length a blob */
    Py_ssize_t count, cap;
} Collected;

typedef struct {
    Table *data, *tree, *table;
    uint8_t id[32];
    uint64_t fields[3]; /* offset, length, ulen */
    unsigned seen, pack_seen, index_seen; /* a bit per key read, at each level */
    uint64_t pack;      /* the pack's position in the file, until the ids are registered */
    Collected *collected; /* pack_entries: blobs go here instead of into the tables */
} BlobCtx;

static int
collect_blob(BlobCtx *b)
{
    Collected *c = b->collected;
    if (c->count == c->cap) {
        Py_ssize_t cap = c->cap ? c->cap * 2 : 1024;
        char *types = PyMem_Realloc(c->types, cap);
        if (types)
            c->types = types;
        uint8_t *ids = types ? PyMem_Realloc(c->ids, cap * 32) : NULL;
        if (ids)
            c->ids = ids;
        uint64_t *numbers = ids ? PyMem_Realloc(c->numbers, cap * 3 * sizeof(uint64_t)) : NULL;
        if (!numbers) {
            PyErr_NoMemory();
            return -1;
        }
        c->numbers = numbers, c->cap = cap;
    }
    c->types[c->count] = b->table == b->data ? 'd' : 't';
    memcpy(c->ids + 32 * c->count, b->id, 32);
    for (int k = 0; k < 3; k++)
        c->numbers[3 * c->count + k] = b->fields[k];
    c->count++;
    return 1;
}

/* The pack just read, as a tuple appended to the output; its blobs are cleared. */
static int
collect_pack(Reader *r, BlobCtx *b)
{
    Collected *c = b->collected;
    /* a pack without blobs before any blob was read: no arrays yet, and y# makes None of NULL */
    static const char none[1] = "";
    PyObject *item = Py_BuildValue("(s#y#y#y#)", r->pack_ids[b->pack], (Py_ssize_t)64, c->types ? c->types : none,
                                   c->count, c->ids ? (const char *)c->ids : none, 32 * c->count,
                                   c->numbers ? (const char *)c->numbers : none,
                                   (Py_ssize_t)(3 * sizeof(uint64_t)) * c->count);
    int rc = item ? PyList_Append(c->packs, item) : -1;
    Py_XDECREF(item);
    c->count = 0;
    return rc < 0 ? -1 : 1;
}

static int
blob_member(Reader *r, const char *key, Py_ssize_t len, void *ctx)
{
    BlobCtx *b = ctx;
    static const char *const keys[] = {"id", "type", "offset", "length", "uncompressed_length"};
    int k = 0;
    while (k < 5 && !is_key(key, len, keys[k]))
        k++;
    if (k == 5 || b->seen & (1u << k))
        return 0;
    b->seen |= 1u << k;
    if (k == 0)
        return read_id(r, b->id, 0);
    if (k >= 2)
        return read_number(r, &b->fields[k - 2]);
    const char *s;
    Py_ssize_t n;
    if (!read_string(r, &s, &n))
        return 0;
    b->table = is_key(s, n, "data") ? b->data : is_key(s, n, "tree") ? b->tree : NULL;
    return b->table != NULL;
}

static int
blob_item(Reader *r, void *ctx)
{
    BlobCtx *b = ctx;
    b->seen = 0;
    b->fields[2] = 0;
    int rc = read_object(r, blob_member, b);
    if (rc <= 0 || (b->seen & 0xF) != 0xF)
        return rc < 0 ? -1 : 0;
    if (b->collected)
        return collect_blob(b);
    return add_entry(b->table, b->id, b->pack, b->fields[0], b->fields[1], b->fields[2]) == 0 ? 1 : -1;
}

static int
pack_member(Reader *r, const char *key, Py_ssize_t len, void *ctx)
{
    BlobCtx *b = ctx;
    uint8_t id[32];
    if (is_key(key, len, "id") && !(b->pack_seen & 1)) {
        b->pack_seen |= 1;
        skip_ws(r);
        r->pack_ids[b->pack] = r->p + 1;
        return read_id(r, id, 1);
    }
    if (is_key(key, len, "blobs") && !(b->pack_seen & 2)) {
        b->pack_seen |= 2;
        return read_array(r, blob_item, b);
    }
    return 0;
}

static int
pack_item(Reader *r, void *ctx)
{
    BlobCtx *b = ctx;
    if (r->packs == r->packs_cap) {
        Py_ssize_t cap = r->packs_cap ? r->packs_cap * 2 : 64;
        const char **grown = PyMem_Realloc(r->pack_ids, cap * sizeof(char *));
        if (!grown)
            return -1;
        r->pack_ids = grown, r->packs_cap = cap;
    }
    b->pack = r->packs;
    b->pack_seen = 0;
    int rc = read_object(r, pack_member, b);
    if (rc <= 0 || !(b->pack_seen & 1))
        return rc < 0 ? -1 : 0;
    if (b->collected && collect_pack(r, b) < 0)
        return -1;
    r->packs++;
    return 1;
}

static int
skip_id(Reader *r, void *ctx)
{
    uint8_t id[32];
    return read_id(r, id, 1);
}

static int
index_member(Reader *r, const char *key, Py_ssize_t len, void *ctx)
{
    BlobCtx *b = ctx;
    if (is_key(key, len, "packs") && !(b->index_seen & 1)) {
        b->index_seen |= 1;
        return read_array(r, pack_item, b);
    }
    if (is_key(key, len, "supersedes") && !(b->index_seen & 2)) {
        b->index_seen |= 2;
        return read_array(r, skip_id, b);
    }
    return 0;
}

/* The pack numbers of the file's packs, from pack_number(hex id) in file order. */
static uint32_t *
register_packs(Reader *r, PyObject *pack_number)
{
    uint32_t *numbers = PyMem_Malloc((r->packs ? r->packs : 1) * sizeof(uint32_t));
    for (Py_ssize_t i = 0; numbers && i < r->packs; i++) {
        PyObject *hex = PyUnicode_FromStringAndSize(r->pack_ids[i], 64);
        PyObject *n = hex ? PyObject_CallOneArg(pack_number, hex) : NULL;
        uint64_t v;
        int bad = !n || as_u64(n, &v) < 0 || v > UINT32_MAX;
        Py_XDECREF(hex), Py_XDECREF(n);
        if (bad) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_OverflowError, "pack number out of range");
            PyMem_Free(numbers);
            return NULL;
        }
        numbers[i] = (uint32_t)v;
    }
    return numbers;
}

/* Move the staged entries into dst's tail, their file positions replaced by pack numbers. */
static int
commit_stage(Table *dst, Table *stage, const uint32_t *numbers)
{
    for (Py_ssize_t i = 0; i < stage->tail_count; i++) {
        stage->tail[i].pack = numbers[stage->tail[i].pack];
        if (push_tail(dst, &stage->tail[i]) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

/* load_index(data, tree, raw, pack_number): add an index file of the shape restic writes and
 * return True, registering its packs with pack_number(hex id) -> int in file order; else add
 * nothing and return False. The blobs are staged until the packs are registered: the callback
 * may let other threads query the tables, which must not see unregistered pack positions. */
PyObject *
load_index(PyObject *module, PyObject *args)
{
    Table *tables[2];
    Py_buffer raw;
    PyObject *pack_number;
    if (!PyArg_ParseTuple(args, "O!O!y*O", &TableType, &tables[0], &TableType, &tables[1], &raw, &pack_number))
        return NULL;
    Table stage[2] = {{.count = 0}, {.count = 0}};
    Reader r = {.p = raw.buf, .end = (const char *)raw.buf + raw.len};
    BlobCtx b = {.data = &stage[0], .tree = &stage[1]};
    int ok = read_object(&r, index_member, &b);
    skip_ws(&r);
    if (ok > 0)
        ok = (b.index_seen & 1) && r.p == r.end;
    uint32_t *numbers = ok > 0 ? register_packs(&r, pack_number) : NULL;
    if (ok > 0 && (!numbers || commit_stage(tables[0], &stage[0], numbers) < 0 ||
                   commit_stage(tables[1], &stage[1], numbers) < 0))
        ok = -1;
    PyMem_Free(numbers), PyMem_Free(r.pack_ids);
    map_free(stage[0].tail, &stage[0].tail_mapped), map_free(stage[1].tail, &stage[1].tail_mapped);
    PyBuffer_Release(&raw);
    if (ok > 0)
        return merge_step(tables[0]) < 0 || merge_step(tables[1]) < 0 ? NULL : Py_NewRef(Py_True);
    return PyErr_Occurred() ? NULL : Py_NewRef(Py_False);
}

/* pack_entries(raw): the packs of an index file of the shape restic writes, in file order (a
 * pack as often as the file lists it), each as (pack id, types, ids, numbers): a letter ('d' or
 * 't'), 32 raw bytes and three native uint64 (offset, length, uncompressed length or 0) a
 * blob; None for any other shape (the Python parser decides then). No Python object a blob. */
PyObject *
pack_entries(PyObject *module, PyObject *args)
{
    Py_buffer raw;
    if (!PyArg_ParseTuple(args, "y*", &raw))
        return NULL;
    Table tables[2] = {{.count = 0}, {.count = 0}}; /* only told apart, never filled */
    Collected collected = {.packs = PyList_New(0)};
    Reader r = {.p = raw.buf, .end = (const char *)raw.buf + raw.len};
    BlobCtx b = {.data = &tables[0], .tree = &tables[1], .collected = &collected};
    int ok = collected.packs ? read_object(&r, index_member, &b) : -1;
    skip_ws(&r);
    if (ok > 0)
        ok = (b.index_seen & 1) && r.p == r.end;
    PyMem_Free(collected.types), PyMem_Free(collected.ids), PyMem_Free(collected.numbers);
    PyMem_Free(r.pack_ids);
    PyBuffer_Release(&raw);
    if (ok > 0)
        return collected.packs;
    Py_XDECREF(collected.packs);
    return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
}
