/*
 * What the sources of restique._index share: the table's layout and the functions one source
 * calls in another (index_fields.c: bit-packed numbers and mapped arrays; _index.c: the table,
 * its merges and lookups; index_prefixes.c: the ids' first bytes; index_parser.c: loading index
 * files; index_packs.c: pack ids).
 */
#ifndef RESTIQUE_INDEX_H
#define RESTIQUE_INDEX_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 65536            /* a merge sorts its tail by the ids' first 2 bytes first */
#define PREFIX_BITS 24           /* of an id, in the prefix directory (index_prefixes.c) */
#define ID_TAIL 29               /* id bytes a record stores: the ones after the prefix */
#define MIN_MERGE 65536          /* a tail this small stays hashed: a merge walks every bucket */
#define INSERTION_SORT_MAX 24
#define STEP_DIVISOR 8           /* additions merge once the tail is an eighth of the table */

typedef struct {
    uint8_t id[32];
    uint64_t offset, length, ulen;
    uint32_t pack;
    uint32_t dead; /* a later copy of an id already present */
} TailEntry;

typedef struct {
    uint64_t pack, offset, length, ulen;
} Fields;

/* The 24-bit prefixes of the records' ids (index_prefixes.c): their high bits as a bitmap of
 * buckets, a 0 per record and a 1 closing each bucket; their low bits per record. */
typedef struct {
    uint64_t *ends;
    uint64_t *samples; /* where in ends every 256th bucket starts */
    uint8_t *low;      /* low_bits per record */
    unsigned low_bits;
    size_t ends_mapped, samples_mapped, low_mapped;
} Prefixes;

/* A record's place in the bitmap and its bucket, while walking the records in order. */
typedef struct {
    uint64_t bucket, at;
} PrefixCursor;

/* A number that does not fit its field's width: the field holds the all-ones sentinel and the
 * exceptions table the value, under the key position * 4 + field (pack 0, offset 1, length 2,
 * ulen 3). The table keeps these bit-packed too (at the widths they need), this only in a merge. */
typedef struct {
    uint64_t key, value;
} Exception;

typedef struct {
    PyObject_HEAD
    uint8_t *records;   /* ID_TAIL bytes of id per record (after the prefix), in id order */
    Prefixes prefixes;  /* the first PREFIX_BITS of each record's id (none while count == 0) */
    uint8_t *numbers;   /* each record's four numbers, bit-packed back to back */
    Py_ssize_t count;
    unsigned widths[4]; /* bits of pack, offset, length, ulen */
    unsigned bits;      /* their sum: bits per record in numbers */
    uint8_t *exceptions; /* by key: each exception's key and value, bit-packed */
    unsigned exception_widths[2], exception_bits;
    Py_ssize_t exception_count;
    /* The records number their packs in the order the table first saw them (a table of trees
     * refers to a small share of the packs, so its pack field is narrower): the master index's
     * number of each, by the table's own. */
    uint32_t *pack_numbers;
    Py_ssize_t pack_count;
    TailEntry *tail;
    Py_ssize_t tail_count, tail_cap, tail_hashed;
    uint32_t *slots; /* open addressing over the tail: index + 1, 0 = empty */
    size_t slot_mask;
    int queried;     /* the first query merges what loading left in the tail */
    struct Histogram *hist; /* of the records' numbers, so a merge need not decode them for it */
    size_t records_mapped, numbers_mapped, exceptions_mapped, tail_mapped; /* bytes of their mappings */
} Table;

/* --- bit-packed fields (inline: every merge and lookup reads and writes them) -------------- */

/* Both take one 8-byte word when the field fits in it (every bit array has 8 bytes of slack
 * at its end); the byte loop is for the rest and for big-endian machines. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define WORD_BITS 1
#else
#define WORD_BITS 0
#endif

static inline void
put_bits(uint8_t *p, uint64_t pos, unsigned width, uint64_t v)
{
    unsigned shift = pos & 7;
    if (WORD_BITS && width && shift + width <= 64) {
        uint64_t word, mask = (width == 64 ? UINT64_MAX : (1ull << width) - 1) << shift;
        memcpy(&word, p + (pos >> 3), 8);
        word = (word & ~mask) | ((v << shift) & mask);
        memcpy(p + (pos >> 3), &word, 8);
        return;
    }
    while (width) {
        unsigned shift = pos & 7, take = 8 - shift;
        if (take > width)
            take = width;
        uint8_t mask = (uint8_t)(((1u << take) - 1) << shift);
        p[pos >> 3] = (uint8_t)((p[pos >> 3] & ~mask) | ((v << shift) & mask));
        v >>= take;
        pos += take;
        width -= take;
    }
}

static inline uint64_t
get_bits(const uint8_t *p, uint64_t pos, unsigned width)
{
    unsigned shift = pos & 7;
    if (WORD_BITS && width && shift + width <= 64) {
        uint64_t word;
        memcpy(&word, p + (pos >> 3), 8);
        word >>= shift;
        return width == 64 ? word : word & ((1ull << width) - 1);
    }
    uint64_t v = 0;
    unsigned got = 0;
    while (got < width) {
        unsigned shift = pos & 7, take = 8 - shift;
        if (take > width - got)
            take = width - got;
        v |= (uint64_t)((p[pos >> 3] >> shift) & ((1u << take) - 1)) << got;
        got += take;
        pos += take;
    }
    return v;
}

/* index_fields.c */
void *map_resize(void *p, size_t *mapped, size_t size);
void map_free(void *p, size_t *mapped);
unsigned bits_for(uint64_t v);
unsigned encode_fields(uint8_t *numbers, const unsigned *widths, unsigned bits, Py_ssize_t i, const uint64_t *v);
void decode_fields(const Table *t, Py_ssize_t i, Fields *f);

/* _index.c */
extern PyTypeObject TableType;
int add_entry(Table *t, const uint8_t *id, uint64_t pack, uint64_t offset, uint64_t length, uint64_t ulen);
int merge_step(Table *t);
int push_tail(Table *t, const TailEntry *e);
int as_u64(PyObject *obj, uint64_t *out);
int decode_hex(const unsigned char *s, uint8_t *id);
int parse_hex_id(PyObject *obj, uint8_t *id);

/* index_prefixes.c */
void prefixes_range(const Prefixes *d, uint32_t prefix, Py_ssize_t *lo, Py_ssize_t *hi);
uint32_t prefixes_low(const Prefixes *d, Py_ssize_t i);
void prefixes_seek(const Prefixes *d, Py_ssize_t i, PrefixCursor *c);
void prefixes_next(const Prefixes *d, PrefixCursor *c);
void prefixes_seek_last(const Prefixes *d, Py_ssize_t count, PrefixCursor *c);
void prefixes_previous(const Prefixes *d, PrefixCursor *c);
uint32_t prefixes_at(const Prefixes *d, const PrefixCursor *c, Py_ssize_t i);
int prefixes_begin(Prefixes *d, Py_ssize_t count, PrefixCursor *c);
void prefixes_put(Prefixes *d, PrefixCursor *c, Py_ssize_t i, uint32_t prefix);
void prefixes_finish(Prefixes *d, PrefixCursor *c);
void prefixes_free(Prefixes *d);

/* index_parser.c */
PyObject *add_packs(PyObject *module, PyObject *args);
PyObject *load_index(PyObject *module, PyObject *args);
PyObject *pack_entries(PyObject *module, PyObject *args);

/* index_packs.c */
extern PyTypeObject PackIdsType;

/* a master index's pack number -> a table's own (pairs of uint32: global, local; local
 * UINT32_MAX when the slot is empty) */
typedef struct {
    uint32_t *slots;
    size_t mask;
    Py_ssize_t count; /* numbered so far */
} PackMap;
uint32_t pack_map_get(const PackMap *m, uint32_t global);
uint32_t pack_map_number(PackMap *m, uint32_t global);
void pack_map_free(PackMap *m);

#endif
