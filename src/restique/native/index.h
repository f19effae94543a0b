/*
 * What the sources of restique._index share: the table's layout and the functions one source
 * calls in another (index_fields.c: bit-packed numbers and mapped arrays; _index.c: the table,
 * its merges and lookups; index_parser.c: loading index files; index_packs.c: pack ids).
 */
#ifndef RESTIQUE_INDEX_H
#define RESTIQUE_INDEX_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 65536
#define ID_TAIL 30               /* id bytes a record stores; the bucket implies the first 2 */
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

/* A number that does not fit its field's width: the field holds the all-ones sentinel and the
 * exceptions table the value, under the key position * 4 + field (pack 0, offset 1, length 2,
 * ulen 3). The table keeps these bit-packed too (at the widths they need), this only in a merge. */
typedef struct {
    uint64_t key, value;
} Exception;

typedef struct {
    PyObject_HEAD
    uint8_t *records;   /* ID_TAIL bytes of id per record, in id order */
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
    /* where each of the BUCKETS + 1 buckets starts (NULL while count == 0): a 32-bit base per
     * group of 256 buckets plus 16-bit offsets, or 32-bit starts when a group spans more */
    uint32_t *bucket_base, *bucket_wide;
    uint16_t *bucket_off;
    TailEntry *tail;
    Py_ssize_t tail_count, tail_cap, tail_hashed;
    uint32_t *slots; /* open addressing over the tail: index + 1, 0 = empty */
    size_t slot_mask;
    int queried;     /* the first query merges what loading left in the tail */
    struct Histogram *hist; /* of the records' numbers, so a merge need not decode them for it */
    size_t records_mapped, numbers_mapped, exceptions_mapped, tail_mapped; /* bytes of their mappings */
} Table;

/* index_fields.c */
void *map_resize(void *p, size_t *mapped, size_t size);
void map_free(void *p, size_t *mapped);
unsigned bits_for(uint64_t v);
void put_bits(uint8_t *p, uint64_t pos, unsigned width, uint64_t v);
uint64_t get_bits(const uint8_t *p, uint64_t pos, unsigned width);
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

/* index_parser.c */
PyObject *add_packs(PyObject *module, PyObject *args);
PyObject *load_index(PyObject *module, PyObject *args);

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
