/*
 * restique._index -- a compact table of the blobs of one type: 32-byte id -> (pack number,
 * offset, length, uncompressed length).
 *
 * The bulk of the table is an array of records sorted by id. The ids' first three bytes are in
 * a prefix directory (index_prefixes.c: most of their bits are implied by a record's position,
 * the rest take a few bits a record), so a record stores only the other 29 bytes. The four numbers
 * are in a second array, bit-packed back to back with widths chosen for the table's common
 * values (index_fields.c); a number that does not fit -- the offset of a blob deep in a rare
 * 300 MiB pack, the length of a 64 MiB tree -- leaves the all-ones sentinel in its field and
 * its value in a small exceptions table, so a repository of 16 MiB packs takes about 8-10 bytes
 * for them instead of 24. The pack is the table's own number of it (index_packs.c): a table of
 * trees refers to few packs.
 *
 * Additions go to an unsorted tail first (full ids, full numbers). Loading the index adds
 * millions without a query: the tail is sorted (by the ids' first two bytes, then within them)
 * and merged into the records in place each time it reaches an eighth of the table, and what is left at the first query.
 * A small tail -- new packs during a backup -- is answered through a hash table over it and
 * merged once it reaches 65,536 entries and an eighth of the table, so rebuilds cost O(1) a blob.
 *
 * Index files of the shape restic writes are parsed straight into the tables (index_parser.c);
 * anything else is left to the Python path, which owns the error messages.
 *
 * The first of several additions of one id wins, as the dict's setdefault did: the records are
 * older than every tail entry, and tail entries are ordered by their position in the tail.
 * Lookups are exact: every id bit is stored or implied by the record's place.
 *
 * All methods run with the GIL held, so a table is safe to share between threads.
 */
#include "index.h"
#ifdef __GLIBC__
#include <malloc.h>
#endif

static unsigned
bucket_of(const uint8_t *id)
{
    return (unsigned)id[0] << 8 | id[1];
}

/* --- the sorted records ------------------------------------------------------------------- */

static uint64_t
load_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

/* memcmp of two id tails, the first 8 bytes compared inline (they almost always differ) */
static int
compare_tails(const uint8_t *a, const uint8_t *b)
{
    uint64_t x = load_be64(a), y = load_be64(b);
    if (x != y)
        return x < y ? -1 : 1;
    return memcmp(a + 8, b + 8, ID_TAIL - 8);
}

/* The first PREFIX_BITS of an id, as a number. */
static uint32_t
prefix_of(const uint8_t *id)
{
    return (uint32_t)id[0] << 16 | (uint32_t)id[1] << 8 | id[2];
}

/* Record i against an id of the record's bucket: the prefix's low bits, then the rest. */
static int
compare_record(const Table *t, Py_ssize_t i, uint32_t low, const uint8_t *id)
{
    uint32_t own = prefixes_low(&t->prefixes, i);
    if (own != low)
        return own < low ? -1 : 1;
    return compare_tails(t->records + (size_t)i * ID_TAIL, id + 3);
}

static Py_ssize_t
find_record(const Table *t, const uint8_t *id)
{
    if (!t->count)
        return -1;
    uint32_t prefix = prefix_of(id), low = prefix & ((1u << t->prefixes.low_bits) - 1);
    Py_ssize_t lo, hi;
    prefixes_range(&t->prefixes, prefix, &lo, &hi);
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        int c = compare_record(t, mid, low, id);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* --- the tail and its hash ---------------------------------------------------------------- */

static size_t
slot_of(const uint8_t *id)
{
    uint64_t h;
    memcpy(&h, id + 8, 8); /* bytes the bucket does not use */
    return (size_t)(h * 0x9E3779B97F4A7C15ull >> 17);
}

static TailEntry *
find_tail(const Table *t, const uint8_t *id)
{
    if (!t->slots)
        return NULL;
    for (size_t s = slot_of(id) & t->slot_mask;; s = (s + 1) & t->slot_mask) {
        uint32_t k = t->slots[s];
        if (!k)
            return NULL;
        if (memcmp(t->tail[k - 1].id, id, 32) == 0)
            return &t->tail[k - 1];
    }
}

static void
insert_slot(Table *t, Py_ssize_t i)
{
    size_t s = slot_of(t->tail[i].id) & t->slot_mask;
    while (t->slots[s])
        s = (s + 1) & t->slot_mask;
    t->slots[s] = (uint32_t)(i + 1);
}

/* Hash the tail entries added since the last query, marking later copies of an id dead. */
static int
hash_new_tail(Table *t)
{
    size_t want = 1024;
    while (want < (size_t)t->tail_count * 2)
        want *= 2;
    if (!t->slots || want > t->slot_mask + 1) {
        uint32_t *slots = calloc(want, sizeof(uint32_t));
        if (!slots)
            return -1;
        free(t->slots);
        t->slots = slots;
        t->slot_mask = want - 1;
        for (Py_ssize_t i = 0; i < t->tail_hashed; i++)
            if (!t->tail[i].dead)
                insert_slot(t, i);
    }
    for (Py_ssize_t i = t->tail_hashed; i < t->tail_count; i++) {
        TailEntry *e = &t->tail[i];
        if (find_record(t, e->id) >= 0 || find_tail(t, e->id))
            e->dead = 1;
        else
            insert_slot(t, i);
    }
    t->tail_hashed = t->tail_count;
    return 0;
}

int
push_tail(Table *t, const TailEntry *e)
{
    if (t->tail_count == t->tail_cap) {
        Py_ssize_t cap = t->tail_cap ? t->tail_cap * 2 : 256;
        if (cap > UINT32_MAX - 1)
            return -1;
        TailEntry *grown = map_resize(t->tail, &t->tail_mapped, (size_t)cap * sizeof(TailEntry));
        if (!grown)
            return -1;
        t->tail = grown;
        t->tail_cap = cap;
    }
    t->tail[t->tail_count++] = *e;
    return 0;
}

/* --- sorting the tail -------------------------------------------------------------------- */

static int
compare_tail(const void *a, const void *b, void *tail)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    int c = memcmp(((TailEntry *)tail)[i].id, ((TailEntry *)tail)[j].id, 32);
    return c ? c : (i > j) - (i < j); /* equal ids: the earlier addition first */
}

static void
sort_bucket(uint32_t *order, size_t n, TailEntry *tail)
{
    if (n > INSERTION_SORT_MAX) {
        qsort_r(order, n, sizeof(uint32_t), compare_tail, tail);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        uint32_t v = order[i];
        size_t j = i;
        while (j && compare_tail(&order[j - 1], &v, tail) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
}

/* The live tail entries, grouped by bucket (starts[b]..starts[b+1]) and sorted in each. */
static uint32_t *
sorted_tail(Table *t, Py_ssize_t *starts, size_t *mapped)
{
    uint32_t *order = map_resize(NULL, mapped, (size_t)t->tail_count * sizeof(uint32_t));
    if (!order)
        return NULL;
    memset(starts, 0, (BUCKETS + 1) * sizeof(Py_ssize_t));
    for (Py_ssize_t i = 0; i < t->tail_count; i++)
        if (!t->tail[i].dead)
            starts[bucket_of(t->tail[i].id) + 1]++;
    for (unsigned b = 0; b < BUCKETS; b++)
        starts[b + 1] += starts[b];
    Py_ssize_t *fill = PyMem_Malloc(BUCKETS * sizeof(Py_ssize_t));
    if (!fill) {
        map_free(order, mapped);
        return NULL;
    }
    memcpy(fill, starts, BUCKETS * sizeof(Py_ssize_t));
    for (Py_ssize_t i = 0; i < t->tail_count; i++)
        if (!t->tail[i].dead)
            order[fill[bucket_of(t->tail[i].id)]++] = (uint32_t)i;
    PyMem_Free(fill);
    for (unsigned b = 0; b < BUCKETS; b++)
        sort_bucket(order + starts[b], starts[b + 1] - starts[b], t->tail);
    return order;
}

/* --- choosing the widths ------------------------------------------------------------------
 *
 * A width fits a field's common values; the rare larger ones (a 300 MiB pack's offsets, a
 * 64 MiB tree) go to the exceptions table, so they no longer widen every record. Each field's
 * width minimises its bits in all records plus an exception's size for each value it leaves
 * out (values of several fields in one record count once each: an upper bound).
 */

typedef struct Histogram {
    Py_ssize_t need[4][66]; /* values needing b bits to sit below the sentinel; 0 only for 0 */
    unsigned widest[4];     /* of any value: an upper bound of an exception's widths */
} Histogram;

static unsigned
bits_below_sentinel(uint64_t v)
{
    return !v ? 0 : v == UINT64_MAX ? 65 : bits_for(v + 1);
}

static void
count_fields(Histogram *h, const Fields *f)
{
    const uint64_t v[4] = {f->pack, f->offset, f->length, f->ulen};
    for (int k = 0; k < 4; k++) {
        unsigned b = bits_below_sentinel(v[k]);
        h->need[k][b]++;
        h->widest[k] = b > h->widest[k] ? b : h->widest[k];
    }
}

static void
choose_widths(const Histogram *h, Py_ssize_t n, unsigned *widths)
{
    unsigned value_bits = 0; /* an exception: its key and its value, at the widest field's width */
    for (int k = 0; k < 4; k++)
        value_bits = h->widest[k] > value_bits ? h->widest[k] : value_bits;
    unsigned exception_bits = 2 + bits_for((uint64_t)n) + value_bits;
    for (int k = 0; k < 4; k++) {
        Py_ssize_t left_out = n - h->need[k][0]; /* values above the width being tried */
        double best = left_out ? -1 : 0;
        widths[k] = 0; /* only when every value is 0 */
        for (unsigned w = 1; w <= 64 && left_out; w++) {
            left_out -= h->need[k][w];
            double cost = (double)n * w + (double)exception_bits * left_out;
            if (best < 0 || cost <= best)
                best = cost, widths[k] = w;
        }
    }
}

/* A live tail entry's numbers, its pack in the table's numbering. */
static void
tail_fields(const TailEntry *e, const PackMap *packs, uint64_t *v)
{
    v[0] = pack_map_get(packs, e->pack), v[1] = e->offset, v[2] = e->length, v[3] = e->ulen;
}

/* The widths for the records plus the n live tail entries, and the histogram of them all (for
 * the table to keep once the merge is done); NULL when out of memory: exact widths then. */
static Histogram *
widths_for(const Table *t, Py_ssize_t n, const PackMap *packs, unsigned *widths)
{
    Histogram *h = PyMem_Calloc(1, sizeof(Histogram));
    if (!h) { /* fall back to exact widths: no exceptions, just wider */
        for (int k = 0; k < 4; k++)
            widths[k] = 65;
        return NULL;
    }
    if (t->hist)
        memcpy(h, t->hist, sizeof(Histogram));
    for (Py_ssize_t i = 0; !t->hist && i < t->count; i++) {
        Fields f;
        decode_fields(t, i, &f);
        count_fields(h, &f);
    }
    for (Py_ssize_t i = 0; i < t->tail_count; i++) { /* in place: the order does not matter */
        uint64_t v[4];
        if (t->tail[i].dead)
            continue;
        tail_fields(&t->tail[i], packs, v);
        count_fields(h, &(Fields){v[0], v[1], v[2], v[3]});
    }
    choose_widths(h, t->count + n, widths);
    return h;
}

/* The table's pack numbering, extended by the packs of the live tail entries; -1 when out of
 * memory. The table keeps its old numbers: records merged before need no change. */
static int
number_packs(const Table *t, PackMap *packs, uint32_t **numbers)
{
    for (Py_ssize_t i = 0; i < t->pack_count; i++)
        if (pack_map_number(packs, t->pack_numbers[i]) == UINT32_MAX)
            return -1;
    for (Py_ssize_t i = 0; i < t->tail_count; i++)
        if (!t->tail[i].dead && pack_map_number(packs, t->tail[i].pack) == UINT32_MAX)
            return -1;
    uint32_t *grown = realloc(t->pack_numbers, (packs->count ? packs->count : 1) * sizeof(uint32_t));
    if (!grown)
        return -1;
    *numbers = grown;
    for (size_t s = 0; s <= packs->mask; s++)
        if (packs->slots[2 * s + 1] != UINT32_MAX)
            grown[packs->slots[2 * s + 1]] = packs->slots[2 * s];
    return 0;
}

/* --- merging the tail into the records ---------------------------------------------------- */

/* Drop the tail entries (in sorted order) whose id the records or an earlier tail entry hold:
 * the first addition of an id wins. Compacts order and starts, marks the dropped entries dead
 * (so that passes which need no order read the tail in place); returns the live count. */
static Py_ssize_t
drop_copies(Table *t, uint32_t *order, Py_ssize_t *starts)
{
    Py_ssize_t w = 0, from = starts[0];
    for (unsigned b = 0; b < BUCKETS; b++) {
        Py_ssize_t to = starts[b + 1];
        starts[b] = w;
        for (Py_ssize_t k = from; k < to; k++) {
            const uint8_t *id = t->tail[order[k]].id;
            if ((w > starts[b] && memcmp(t->tail[order[w - 1]].id, id, 32) == 0) || find_record(t, id) >= 0)
                t->tail[order[k]].dead = 1;
            else
                order[w++] = order[k];
        }
        from = to;
    }
    starts[BUCKETS] = w;
    return w;
}

/* The exceptions by key, bit-packed at the widths they need, into out (sized for the widest:
 * 64 + 64 bits each). */
static void
pack_exceptions(const Exception *list, Py_ssize_t n, uint8_t *out, unsigned *widths, unsigned *bits)
{
    uint64_t widest[2] = {0, 0};
    for (Py_ssize_t i = 0; i < n; i++)
        widest[0] |= list[i].key, widest[1] |= list[i].value;
    *bits = (widths[0] = bits_for(widest[0])) + (widths[1] = bits_for(widest[1]));
    uint64_t pos = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        put_bits(out, pos, widths[0], list[i].key);
        put_bits(out, pos + widths[0], widths[1], list[i].value);
        pos += *bits;
    }
}

#define EXCEPTION_MAX_BITS (64 + 64)

/* Merge the tail into the records in place, from the end backwards: a record only moves up
 * (tail entries sort in below it) and its numbers only widen (the widths never shrink), so a
 * write never reaches what is still to be read, and a merge needs no second copy of the
 * table -- loading merges in steps, and the peak is the table plus one step's tail.
 * Everything that can fail is allocated before the first record moves. */
static int
merge_tail(Table *t)
{
    Py_ssize_t *starts = PyMem_Malloc((BUCKETS + 1) * sizeof(Py_ssize_t));
    size_t order_mapped = 0, list_mapped = 0, packed_mapped = 0; /* scratch: mapped, see above */
    uint32_t *order = starts ? sorted_tail(t, starts, &order_mapped) : NULL;
    Py_ssize_t live = order ? drop_copies(t, order, starts) : 0, total = t->count + live;
    unsigned widths[4], bits = 0;
    Exception *list = NULL;
    uint8_t *packed = NULL;
    Histogram *hist = NULL;
    Prefixes prefixes = {0};
    PrefixCursor put, old;
    uint32_t *pack_numbers = t->pack_numbers;
    PackMap packs = {NULL};
    /* old values fit wider fields; a tail entry has at most four exceptions */
    size_t most = (size_t)t->exception_count + 4 * (size_t)live;
    int failed = !order || (size_t)total >= UINT32_MAX;
    if (!failed) {
        failed = number_packs(t, &packs, &pack_numbers) < 0;
        if (pack_numbers) /* realloc may have moved it even if a later step failed */
            t->pack_numbers = pack_numbers;
    }
    if (!failed) {
        hist = widths_for(t, live, &packs, widths);
        for (int k = 0; k < 4; k++) {
            widths[k] = widths[k] > 64 ? 64 : widths[k];
            if (t->count && widths[k] < t->widths[k])
                widths[k] = t->widths[k];
            bits += widths[k];
        }
        list = map_resize(NULL, &list_mapped, most * sizeof(Exception));
        packed = map_resize(NULL, &packed_mapped, (most * EXCEPTION_MAX_BITS + 7) / 8 + 8);
        int no_prefixes = prefixes_begin(&prefixes, total, &put) < 0;
        uint8_t *records = map_resize(t->records, &t->records_mapped, (size_t)total * ID_TAIL);
        if (records)
            t->records = records;
        uint8_t *numbers = map_resize(t->numbers, &t->numbers_mapped, ((size_t)total * bits + 7) / 8 + 8);
        if (numbers)
            t->numbers = numbers;
        failed = !list || !packed || no_prefixes || !records || !numbers;
    }
    if (failed) {
        pack_map_free(&packs);
        PyMem_Free(starts), map_free(order, &order_mapped);
        map_free(list, &list_mapped), map_free(packed, &packed_mapped);
        prefixes_free(&prefixes), PyMem_Free(hist);
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t j = total, exceptions = 0, r = t->count, k = live;
    if (r)
        prefixes_seek_last(&t->prefixes, r, &old);
    while (j > 0) { /* the records and the sorted live tail, both from their ends */
        const TailEntry *e = k ? &t->tail[order[k - 1]] : NULL;
        uint32_t prefix = r ? prefixes_at(&t->prefixes, &old, r - 1) : 0, tail_prefix = e ? prefix_of(e->id) : 0;
        uint64_t v[4];
        j--;
        if (r && (!e || prefix > tail_prefix ||
                  (prefix == tail_prefix && compare_tails(t->records + (size_t)(r - 1) * ID_TAIL, e->id + 3) > 0))) {
            Fields f;
            r--;
            decode_fields(t, r, &f); /* the old widths, until the merge is done */
            v[0] = f.pack, v[1] = f.offset, v[2] = f.length, v[3] = f.ulen;
            memmove(t->records + (size_t)j * ID_TAIL, t->records + (size_t)r * ID_TAIL, ID_TAIL);
            if (r)
                prefixes_previous(&t->prefixes, &old);
        } else {
            k--;
            prefix = tail_prefix;
            tail_fields(e, &packs, v);
            memcpy(t->records + (size_t)j * ID_TAIL, e->id + 3, ID_TAIL);
        }
        prefixes_put(&prefixes, &put, j, prefix);
        unsigned over = encode_fields(t->numbers, widths, bits, j, v);
        for (int field = 3; over && field >= 0; field--) /* the list ends up reversed */
            if (over >> field & 1)
                list[exceptions++] = (Exception){(uint64_t)j << 2 | (unsigned)field, v[field]};
    }
    prefixes_finish(&prefixes, &put);
    for (Py_ssize_t a = 0, z = exceptions - 1; a < z; a++, z--) { /* by key */
        Exception x = list[a];
        list[a] = list[z], list[z] = x;
    }
    pack_exceptions(list, exceptions, packed, t->exception_widths, &t->exception_bits);
    map_free(list, &list_mapped), map_free(t->exceptions, &t->exceptions_mapped);
    uint8_t *fitted = map_resize(packed, &packed_mapped, ((size_t)exceptions * t->exception_bits + 7) / 8 + 8);
    t->exceptions = fitted ? fitted : packed; /* shrinking in place: it does not fail */
    t->exceptions_mapped = packed_mapped;
    t->exception_count = exceptions;
    memcpy(t->widths, widths, sizeof widths);
    t->bits = bits;
    prefixes_free(&t->prefixes);
    t->prefixes = prefixes;
    t->count = total;
    t->pack_count = packs.count;
    pack_map_free(&packs);
    PyMem_Free(t->hist);
    t->hist = hist;
    PyMem_Free(starts), map_free(order, &order_mapped), free(t->slots);
    map_free(t->tail, &t->tail_mapped);
    t->tail = NULL, t->slots = NULL;
    t->tail_count = t->tail_cap = t->tail_hashed = 0;
    t->slot_mask = 0;
    return 0;
}

/* Make the table answer queries: merge a large tail, hash a small one. */
static int
settle(Table *t)
{
    if (!t->queried) { /* loading is over */
        t->queried = 1;
        int failed = t->tail_count && merge_tail(t) < 0;
#ifdef __GLIBC__
        malloc_trim(0); /* loading left the heap full of holes (index files' text): give them back */
#endif
        return failed ? -1 : 0;
    }
    if (t->tail_count == t->tail_hashed)
        return 0;
    if (t->tail_count >= MIN_MERGE && t->tail_count >= t->count / 8)
        return merge_tail(t);
    if (hash_new_tail(t) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Many additions before a query -- loading the index -- are merged in steps, so the tail never
 * holds them all: its entries are larger than records, and a step's merge needs no copy. */
int
merge_step(Table *t)
{
    if (t->tail_count >= MIN_MERGE && t->tail_count >= t->count / STEP_DIVISOR)
        return merge_tail(t);
    return 0;
}

/* --- lookups from Python ------------------------------------------------------------------ */

static int8_t HEX[256]; /* a hex digit's value, -1 for other bytes; filled at import */

static void
fill_hex_table(void)
{
    memset(HEX, -1, sizeof HEX);
    for (int i = 0; i < 10; i++)
        HEX['0' + i] = (int8_t)i;
    for (int i = 0; i < 6; i++)
        HEX['a' + i] = HEX['A' + i] = (int8_t)(10 + i);
}

/* The 32 bytes of 64 hex digits, without a branch per digit (ids are random: they would
 * mispredict); 0 if any is not a hex digit. */
int
decode_hex(const unsigned char *s, uint8_t *id)
{
    int bad = 0;
    for (int i = 0; i < 32; i++) {
        int hi = HEX[s[2 * i]], lo = HEX[s[2 * i + 1]];
        bad |= hi | lo;
        id[i] = (uint8_t)(hi << 4 | (lo & 15));
    }
    return bad >= 0;
}

/* 1 and the id's 32 bytes when obj is a str of 64 hex digits, else 0. */
int
parse_hex_id(PyObject *obj, uint8_t *id)
{
    if (!PyUnicode_Check(obj) || PyUnicode_READY(obj) < 0 || !PyUnicode_IS_ASCII(obj) ||
        PyUnicode_GET_LENGTH(obj) != 64)
        return 0;
    return decode_hex(PyUnicode_1BYTE_DATA(obj), id);
}

/* 1 with the blob's fields when the table holds the id, 0 when not, -1 on error. */
static int
table_find(Table *t, PyObject *hex, Fields *f)
{
    uint8_t id[32];
    if (!parse_hex_id(hex, id))
        return 0;
    if (settle(t) < 0)
        return -1;
    Py_ssize_t i = find_record(t, id);
    if (i >= 0) {
        decode_fields(t, i, f);
        f->pack = t->pack_numbers[f->pack];
        return 1;
    }
    TailEntry *e = find_tail(t, id);
    if (!e)
        return 0;
    f->pack = e->pack, f->offset = e->offset, f->length = e->length, f->ulen = e->ulen;
    return 1;
}

static PyObject *
numbers_tuple(int n, const uint64_t *v)
{
    PyObject *out = PyTuple_New(n);
    for (int i = 0; out && i < n; i++) {
        PyObject *item = PyLong_FromUnsignedLongLong(v[i]);
        if (!item)
            Py_CLEAR(out);
        else
            PyTuple_SET_ITEM(out, i, item);
    }
    return out;
}

static PyObject *
Table_has(Table *t, PyObject *hex)
{
    Fields f;
    int found = table_find(t, hex, &f);
    return found < 0 ? NULL : PyBool_FromLong(found);
}

static PyObject *
Table_get(Table *t, PyObject *hex)
{
    Fields f;
    int found = table_find(t, hex, &f);
    if (found <= 0)
        return found < 0 ? NULL : Py_NewRef(Py_None);
    return numbers_tuple(4, (uint64_t[]){f.pack, f.offset, f.length, f.ulen});
}

static PyObject *
Table_sizes(Table *t, PyObject *hex)
{
    Fields f;
    int found = table_find(t, hex, &f);
    if (found <= 0)
        return found < 0 ? NULL : Py_NewRef(Py_None);
    return numbers_tuple(2, (uint64_t[]){f.length, f.ulen});
}

static Py_ssize_t
Table_len(Table *t)
{
    if (settle(t) < 0 || (t->tail_count && merge_tail(t) < 0))
        return -1;
    return t->count;
}

/* The hex ids of records [start, stop) in id order, everything added merged first. */
static PyObject *
Table_hex_slice(Table *t, PyObject *args)
{
    Py_ssize_t start, stop;
    if (!PyArg_ParseTuple(args, "nn", &start, &stop) || Table_len(t) < 0)
        return NULL;
    start = start < 0 ? 0 : start > t->count ? t->count : start;
    stop = stop < start ? start : stop > t->count ? t->count : stop;
    PyObject *out = PyList_New(stop - start);
    if (!out)
        return NULL;
    static const char digits[] = "0123456789abcdef";
    PrefixCursor at;
    if (start < stop)
        prefixes_seek(&t->prefixes, start, &at);
    for (Py_ssize_t i = start; i < stop; i++) {
        if (i > start)
            prefixes_next(&t->prefixes, &at);
        uint32_t prefix = prefixes_at(&t->prefixes, &at, i);
        uint8_t id[32] = {(uint8_t)(prefix >> 16), (uint8_t)(prefix >> 8), (uint8_t)prefix};
        memcpy(id + 3, t->records + (size_t)i * ID_TAIL, ID_TAIL);
        PyObject *s = PyUnicode_New(64, 127);
        if (!s) {
            Py_DECREF(out);
            return NULL;
        }
        Py_UCS1 *p = PyUnicode_1BYTE_DATA(s);
        for (int k = 0; k < 32; k++)
            p[2 * k] = digits[id[k] >> 4], p[2 * k + 1] = digits[id[k] & 15];
        PyList_SET_ITEM(out, i - start, s);
    }
    return out;
}

/* --- additions ---------------------------------------------------------------------------- */

int
add_entry(Table *t, const uint8_t *id, uint64_t pack, uint64_t offset, uint64_t length, uint64_t ulen)
{
    if (pack > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "pack number out of range");
        return -1;
    }
    TailEntry e = {.offset = offset, .length = length, .ulen = ulen, .pack = (uint32_t)pack};
    memcpy(e.id, id, 32);
    if (push_tail(t, &e) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* An int that fits 64 bits, as an unsigned number; -1 with an exception otherwise. */
int
as_u64(PyObject *obj, uint64_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "an integer is required");
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static PyObject *
Table_add(Table *t, PyObject *args)
{
    Py_buffer id;
    PyObject *objs[4];
    uint64_t v[4];
    if (!PyArg_ParseTuple(args, "y*OOOO", &id, &objs[0], &objs[1], &objs[2], &objs[3]))
        return NULL;
    int bad = id.len != 32;
    if (bad)
        PyErr_SetString(PyExc_ValueError, "a blob id is 32 bytes");
    for (int k = 0; k < 4 && !bad; k++)
        bad = as_u64(objs[k], &v[k]) < 0;
    if (!bad)
        bad = add_entry(t, id.buf, v[0], v[1], v[2], v[3]) < 0 || merge_step(t) < 0;
    PyBuffer_Release(&id);
    return bad ? NULL : Py_NewRef(Py_None);
}

static PyObject *
Table_record_bits(Table *t, void *closure)
{
    return PyLong_FromUnsignedLong(8 * ID_TAIL + t->prefixes.low_bits + t->bits);
}

static PyObject *
Table_exception_count(Table *t, void *closure)
{
    return PyLong_FromSsize_t(t->exception_count);
}

static void
Table_dealloc(Table *t)
{
    map_free(t->records, &t->records_mapped), map_free(t->numbers, &t->numbers_mapped);
    map_free(t->tail, &t->tail_mapped);
    map_free(t->exceptions, &t->exceptions_mapped), free(t->slots);
    prefixes_free(&t->prefixes), PyMem_Free(t->hist);
    free(t->pack_numbers);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyMethodDef Table_methods[] = {
    {"has", (PyCFunction)Table_has, METH_O, "Whether the table holds the blob (hex id)."},
    {"get", (PyCFunction)Table_get, METH_O, "(pack number, offset, length, uncompressed length) or None."},
    {"sizes", (PyCFunction)Table_sizes, METH_O, "(length, uncompressed length) or None."},
    {"add", (PyCFunction)Table_add, METH_VARARGS,
     "add(id: 32 bytes, pack, offset, length, uncompressed_length); the first addition of an id wins."},
    {"hex_slice", (PyCFunction)Table_hex_slice, METH_VARARGS, "Hex ids of positions [start, stop), sorted."},
    {NULL},
};

static PyGetSetDef Table_getset[] = {
    {"record_bits", (getter)Table_record_bits, NULL, "bits per merged record: id (but its prefix's bucket) and numbers", NULL},
    {"exception_count", (getter)Table_exception_count, NULL, "numbers of merged records that did not fit their fields", NULL},
    {NULL},
};

static PySequenceMethods Table_as_sequence = {.sq_length = (lenfunc)Table_len};

PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "restique._index.BlobTable",
    .tp_basicsize = sizeof(Table),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Blobs of one type: 32-byte id -> (pack number, offset, length, uncompressed length).",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Table_dealloc,
    .tp_methods = Table_methods,
    .tp_getset = Table_getset,
    .tp_as_sequence = &Table_as_sequence,
};

static PyMethodDef module_methods[] = {
    {"load_index", load_index, METH_VARARGS,
     "load_index(data, tree, raw, pack_number) -> bool: add an index file of the shape restic writes."},
    {"add_packs", add_packs, METH_VARARGS,
     "add_packs(data, tree, packs, numbers) -> bool: the fast path of loading an index file."},
    {"pack_entries", pack_entries, METH_VARARGS,
     "pack_entries(raw) -> [(pack id, types, ids, numbers)] or None: an index file's packs, compactly."},
    {NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_index", "Compact blob index tables.", -1,
                                    module_methods};

PyMODINIT_FUNC
PyInit__index(void)
{
    fill_hex_table();
    if (PyType_Ready(&TableType) < 0 || PyType_Ready(&PackIdsType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddObjectRef(m, "BlobTable", (PyObject *)&TableType) < 0 ||
              PyModule_AddObjectRef(m, "PackIds", (PyObject *)&PackIdsType) < 0))
        Py_CLEAR(m);
    return m;
}
