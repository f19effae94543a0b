/*
 * restique._index: the first three bytes of the records' ids, Elias-Fano coded.
 *
 * The records are sorted by id, so their 24-bit prefixes are a sorted sequence. A prefix's high
 * bits pick a bucket and are implied by where the record sits: a bitmap holds, bucket by
 * bucket, a 0 for each record and a 1 closing the bucket. Its low bits (low_bits, chosen so
 * that there are about as many buckets as records) are stored per record. That takes about
 * 2 + low_bits bits a record -- 5.5 for a table of 1.4 million -- where a byte of id plus a
 * table of 65,536 bucket starts took 8.7; the records store the other 29 bytes.
 *
 * A bucket's records are found from a sample of where every 256th bucket starts and a popcount
 * over the bitmap words after it (a few words). Merges build a new directory as they write the
 * records, backwards, and read the old one backwards too.
 */
#include "index.h"

#define SAMPLE_SHIFT 8 /* a sample every 256 buckets */

static int
bit_at(const uint64_t *bits, uint64_t q)
{
    return (int)(bits[q >> 6] >> (q & 63) & 1);
}

/* The low bits for n records: about as many buckets as records, at least 2^16, at most 2^24. */
static unsigned
low_bits_for(Py_ssize_t n)
{
    unsigned low = 8;
    while (low && (uint64_t)n << low > (1u << PREFIX_BITS))
        low--;
    return low;
}

static uint64_t
bucket_count(const Prefixes *d)
{
    return (uint64_t)1 << (PREFIX_BITS - d->low_bits);
}

/* Records [*lo, *hi) are those whose prefix has the high bits of prefix (its bucket). */
void
prefixes_range(const Prefixes *d, uint32_t prefix, Py_ssize_t *lo, Py_ssize_t *hi)
{
    uint64_t b = prefix >> d->low_bits, p = d->samples[b >> SAMPLE_SHIFT];
    unsigned skip = (unsigned)(b & ((1u << SAMPLE_SHIFT) - 1)); /* closing bits to pass */
    size_t wi = p >> 6;
    uint64_t w = d->ends[wi] & (~0ull << (p & 63));
    if (skip) {
        unsigned c;
        while ((c = (unsigned)__builtin_popcountll(w)) < skip) {
            skip -= c;
            w = d->ends[++wi];
        }
        while (--skip)
            w &= w - 1;
        p = (uint64_t)wi * 64 + (unsigned)__builtin_ctzll(w) + 1; /* after bucket b - 1 closes */
        wi = p >> 6;
        w = d->ends[wi] & (~0ull << (p & 63));
    }
    while (!w)
        w = d->ends[++wi];
    *lo = (Py_ssize_t)(p - b);
    *hi = (Py_ssize_t)((uint64_t)wi * 64 + (unsigned)__builtin_ctzll(w) - b);
}

uint32_t
prefixes_low(const Prefixes *d, Py_ssize_t i)
{
    return (uint32_t)get_bits(d->low, (uint64_t)i * d->low_bits, d->low_bits);
}

/* --- walking the records in order --------------------------------------------------------- */

/* A cursor at record i (0 <= i < count) of the count records the directory holds. */
void
prefixes_seek(const Prefixes *d, Py_ssize_t i, PrefixCursor *c)
{
    uint64_t lo = 0, hi = bucket_count(d); /* the last bucket starting at or before i holds it */
    while (hi - lo > 1) {
        uint64_t mid = (lo + hi) / 2;
        Py_ssize_t start, end;
        prefixes_range(d, (uint32_t)(mid << d->low_bits), &start, &end);
        if (start <= i)
            lo = mid;
        else
            hi = mid;
    }
    c->bucket = lo;
    c->at = (uint64_t)i + lo;
}

void
prefixes_next(const Prefixes *d, PrefixCursor *c)
{
    c->at++;
    while (bit_at(d->ends, c->at))
        c->at++, c->bucket++;
}

/* A cursor at the last of count records, or nowhere when there are none. */
void
prefixes_seek_last(const Prefixes *d, Py_ssize_t count, PrefixCursor *c)
{
    c->bucket = bucket_count(d) - 1;
    c->at = (uint64_t)count + bucket_count(d) - 1; /* the last bucket's closing bit */
    if (count)
        prefixes_previous(d, c);
}

void
prefixes_previous(const Prefixes *d, PrefixCursor *c)
{
    c->at--;
    while (bit_at(d->ends, c->at))
        c->at--, c->bucket--;
}

/* The 24-bit prefix of record i, the cursor's. */
uint32_t
prefixes_at(const Prefixes *d, const PrefixCursor *c, Py_ssize_t i)
{
    return (uint32_t)(c->bucket << d->low_bits) | prefixes_low(d, i);
}

/* --- building one, backwards -------------------------------------------------------------- */

/* An empty directory for count records; -1 when out of memory (d untouched then). */
int
prefixes_begin(Prefixes *d, Py_ssize_t count, PrefixCursor *c)
{
    Prefixes fresh = {.low_bits = low_bits_for(count)};
    uint64_t bits = (uint64_t)count + bucket_count(&fresh);
    fresh.ends = map_resize(NULL, &fresh.ends_mapped, (bits + 63) / 64 * 8 + 8);
    fresh.samples = map_resize(NULL, &fresh.samples_mapped, (bucket_count(&fresh) >> SAMPLE_SHIFT) * 8);
    fresh.low = map_resize(NULL, &fresh.low_mapped, ((uint64_t)count * fresh.low_bits + 7) / 8 + 8);
    if (!fresh.ends || !fresh.samples || !fresh.low) {
        prefixes_free(&fresh);
        return -1;
    }
    *d = fresh; /* mappings are zeroed: no closing bits yet */
    c->bucket = bucket_count(d) - 1;
    c->at = bits - 1;
    d->ends[c->at >> 6] |= 1ull << (c->at & 63);
    return 0;
}

/* Record i has prefix; records come from the last to the first. */
void
prefixes_put(Prefixes *d, PrefixCursor *c, Py_ssize_t i, uint32_t prefix)
{
    uint64_t b = prefix >> d->low_bits;
    while (c->bucket > b) { /* close the buckets between */
        c->at--, c->bucket--;
        d->ends[c->at >> 6] |= 1ull << (c->at & 63);
    }
    c->at--;
    put_bits(d->low, (uint64_t)i * d->low_bits, d->low_bits, prefix & ((1u << d->low_bits) - 1));
}

/* Close the buckets before the first record and sample where every 256th starts. */
void
prefixes_finish(Prefixes *d, PrefixCursor *c)
{
    while (c->bucket > 0) {
        c->at--, c->bucket--;
        d->ends[c->at >> 6] |= 1ull << (c->at & 63);
    }
    uint64_t buckets = bucket_count(d), closed = 0, mask = (1u << SAMPLE_SHIFT) - 1;
    d->samples[0] = 0;
    for (size_t wi = 0; closed + 1 < buckets; wi++) {
        uint64_t w = d->ends[wi];
        unsigned c = (unsigned)__builtin_popcountll(w);
        if (((closed + c) & ~mask) == (closed & ~mask)) { /* no sample in this word */
            closed += c;
            continue;
        }
        for (; w; w &= w - 1)
            if (!(++closed & mask) && closed < buckets)
                d->samples[closed >> SAMPLE_SHIFT] = (uint64_t)wi * 64 + (unsigned)__builtin_ctzll(w) + 1;
    }
}

void
prefixes_free(Prefixes *d)
{
    map_free(d->ends, &d->ends_mapped), map_free(d->samples, &d->samples_mapped);
    map_free(d->low, &d->low_mapped);
    d->ends = NULL, d->samples = NULL, d->low = NULL;
}
