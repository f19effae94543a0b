/* restique._index: the bit-packed numbers of the records and the mapped arrays they live in. */
#include "index.h"

#include <sys/mman.h>

/* --- large arrays ------------------------------------------------------------------------- *
 * The records, numbers, exceptions, tail and a merge's scratch have mappings of their own: they grow by mremap without a copy
 * or a second peak, and freeing one gives it back to the system. From the heap, the holes that
 * growing arrays leave behind stayed resident (about 4 bytes a blob). */

static size_t
page_rounded(size_t size)
{
    size_t page = 4096;
    return (size + page - 1) / page * page;
}

/* p (of *mapped bytes, NULL when 0) resized to hold size bytes; NULL and p intact on failure. */
void *
map_resize(void *p, size_t *mapped, size_t size)
{
    size = page_rounded(size ? size : 1);
    if (size == *mapped)
        return p;
    void *q = *mapped ? mremap(p, *mapped, size, MREMAP_MAYMOVE)
                      : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (q == MAP_FAILED)
        return NULL;
    *mapped = size;
    return q;
}

void
map_free(void *p, size_t *mapped)
{
    if (*mapped)
        munmap(p, *mapped);
    *mapped = 0;
}

/* --- bit-packed fields -------------------------------------------------------------------- */

unsigned
bits_for(uint64_t v)
{
    return v ? 64 - __builtin_clzll(v) : 0;
}

static uint64_t
sentinel(unsigned width)
{
    return width >= 64 ? UINT64_MAX : (1ull << width) - 1;
}

/* Whether a value needs the exceptions table: it does not fit below the sentinel. A field of
 * width 0 holds only zeros and has no sentinel (widths_for sees to it). */
static int
overflows(unsigned width, uint64_t v)
{
    return width && v >= sentinel(width);
}

/* Write record i's numbers (pack, offset, length, ulen); a bit per field whose value does not
 * fit (1 << field): that field holds the sentinel, and the value goes to the exceptions. The
 * widths leave no non-zero value in a field of width 0 (widths_for counts every value). */
unsigned
encode_fields(uint8_t *numbers, const unsigned *widths, unsigned bits, Py_ssize_t i, const uint64_t *v)
{
    unsigned over = 0;
    uint64_t pos = (uint64_t)i * bits;
    for (int k = 0; k < 4; k++) {
        int out = overflows(widths[k], v[k]);
        over |= (unsigned)out << k;
        put_bits(numbers, pos, widths[k], out ? sentinel(widths[k]) : v[k]);
        pos += widths[k];
    }
    return over;
}

/* The value of exception key (position * 4 + field) into *value; 0 when it is not there. */
static int
find_exception(const Table *t, uint64_t key, uint64_t *value)
{
    Py_ssize_t lo = 0, hi = t->exception_count;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        uint64_t pos = (uint64_t)mid * t->exception_bits;
        uint64_t at = get_bits(t->exceptions, pos, t->exception_widths[0]);
        if (at == key) {
            *value = get_bits(t->exceptions, pos + t->exception_widths[0], t->exception_widths[1]);
            return 1;
        }
        if (at < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* Record i's numbers; the pack is the table's own number of it. */
void
decode_fields(const Table *t, Py_ssize_t i, Fields *f)
{
    uint64_t pos = (uint64_t)i * t->bits, v[4];
    for (int k = 0; k < 4; k++) {
        v[k] = get_bits(t->numbers, pos, t->widths[k]);
        if (t->widths[k] && v[k] == sentinel(t->widths[k]))
            find_exception(t, (uint64_t)i << 2 | (unsigned)k, &v[k]);
        pos += t->widths[k];
    }
    f->pack = v[0], f->offset = v[1], f->length = v[2], f->ulen = v[3];
}
