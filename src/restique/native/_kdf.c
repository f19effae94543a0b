/*
 * restique._kdf: scrypt (RFC 7914), for the key derivation every command pays once.
 *
 * scrypt(P, S, N, r, p) = PBKDF2-SHA256(P, ROMix(B_1) .. ROMix(B_p), 1, dklen),
 * with B_1 .. B_p = PBKDF2-SHA256(P, S, 1, p * 128 * r) (pbkdf2_sha256.h).
 *
 * Salsa20/8 is a chain of dependent steps (add, rotate, xor), four quarter-rounds side by side.
 * Two lanes compute the same function:
 * - the portable lane, plain scalar code: the compiler keeps the 16 words in registers and the
 *   CPU runs the four quarter-rounds at once (54-62 ms for N=2^15, r=8 here; restic's Go lane
 *   takes about 66 ms).
 * - the vector lane, where the CPU has AVX-512VL: the block lives in four 128-bit rows laid
 *   along Salsa20's diagonals, so a step is one add, one rotate (vprold: a single instruction;
 *   with SSE2 alone a rotate takes three, which made a vector lane slower than the scalar one)
 *   and one xor for all four quarter-rounds, and the row shuffles between rounds fall off the
 *   critical path (38-44 ms here). V holds the blocks in that diagonal order. The chain is as
 *   fast on 512-bit registers, so the vector lane derives two to four lanes at once, side by
 *   side in their quarters (romix_wide): p=7 in 0.18 s instead of 0.31.
 * The portable lane is also what key calibration times (keys.py): the strength chosen is what
 * a derivation of restic's speed fits into restic's time, and the vector lane only makes it
 * cheaper to pay.
 *
 * Memory: one V array (128 * r * N bytes) reused by every lane, as OpenSSL's scrypt; lanes run
 * one after the other, or two or four at once each keeping every second or fourth block of its
 * V in the same memory (running them at once with whole V arrays would need one each). A caller that can
 * spare some memory more (helper_memory) gets a helper thread on another core that takes lanes
 * from the other end with a sparse V: every 2^k-th block only, the others recomputed from the
 * one before them when a lookup needs them (scrypt's time-memory trade-off), so a quarter of
 * V costs 1.75 times a lane's work and still takes two of restic's seven lanes off the first.
 * A helper may wait until the core is lent (lend_core: a backup's prescan uses it first), and
 * takes its memory only once it has a lane to spend it on.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "pbkdf2_sha256.h"

#define WORDS_PER_BLOCK 16 /* one Salsa20 block: 64 bytes */
#define HUGE_PAGE (2u << 20)

static inline uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void store_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* Word orders of a block in memory: as the bytes have them (the portable lane), or along
 * Salsa20's diagonals, the rows (x0 x5 x10 x15) (x4 x9 x14 x3) (x8 x13 x2 x7) (x12 x1 x6 x11),
 * so that each of a round's four steps is one operation on whole rows (the vector lane). */
static const unsigned char IN_ORDER[WORDS_PER_BLOCK] = {0, 1, 2,  3,  4,  5,  6,  7,
                                                        8, 9, 10, 11, 12, 13, 14, 15};
static const unsigned char DIAGONAL[WORDS_PER_BLOCK] = {0, 5,  10, 15, 4,  9, 14, 3,
                                                        8, 13, 2,  7,  12, 1, 6,  11};

/* bytes -> little-endian words, for 2r blocks; word w of a block is the order[w]-th */
static void import_blocks(uint32_t *dst, const unsigned char *src, size_t r,
                          const unsigned char *order)
{
    for (size_t k = 0; k < 2 * r; k++)
        for (unsigned w = 0; w < WORDS_PER_BLOCK; w++)
            dst[k * WORDS_PER_BLOCK + w] = load_le32(src + (k * WORDS_PER_BLOCK + order[w]) * 4);
}

static void export_blocks(unsigned char *dst, const uint32_t *src, size_t r,
                          const unsigned char *order)
{
    for (size_t k = 0; k < 2 * r; k++)
        for (unsigned w = 0; w < WORDS_PER_BLOCK; w++)
            store_le32(dst + (k * WORDS_PER_BLOCK + order[w]) * 4, src[k * WORDS_PER_BLOCK + w]);
}

#define ROTL32(v, k) (((v) << (k)) | ((v) >> (32 - (k))))

static inline void salsa20_8(uint32_t b[16])
{
    uint32_t x[16];
    memcpy(x, b, sizeof(x));
    for (int round = 0; round < 8; round += 2) {
#define QUARTER(a, b_, c, d)             \
    x[b_] ^= ROTL32(x[a] + x[d], 7);    \
    x[c] ^= ROTL32(x[b_] + x[a], 9);    \
    x[d] ^= ROTL32(x[c] + x[b_], 13);   \
    x[a] ^= ROTL32(x[d] + x[c], 18);
        QUARTER(0, 4, 8, 12) QUARTER(5, 9, 13, 1) QUARTER(10, 14, 2, 6) QUARTER(15, 3, 7, 11)
        QUARTER(0, 1, 2, 3) QUARTER(5, 6, 7, 4) QUARTER(10, 11, 8, 9) QUARTER(15, 12, 13, 14)
#undef QUARTER
    }
    for (int i = 0; i < 16; i++)
        b[i] += x[i];
}

/*
 * out = BlockMix(in ^ mix) (mix may be NULL: plain BlockMix); out must not overlap in.
 * Returns Integerify(out), the first 64 bits of its last block. Always inlined so that the two
 * callers (mix NULL or not) each get a copy without the test.
 */
static inline __attribute__((always_inline)) uint64_t
blockmix(const uint32_t *in, const uint32_t *mix, uint32_t *out, size_t r)
{
    uint32_t x[16];
    size_t last = (2 * r - 1) * WORDS_PER_BLOCK;
    for (int w = 0; w < 16; w++)
        x[w] = in[last + w] ^ (mix ? mix[last + w] : 0);
    for (size_t i = 0; i < 2 * r; i++) {
        for (int w = 0; w < 16; w++)
            x[w] ^= in[i * WORDS_PER_BLOCK + w] ^ (mix ? mix[i * WORDS_PER_BLOCK + w] : 0);
        salsa20_8(x);
        memcpy(out + (i / 2 + (i & 1) * r) * WORDS_PER_BLOCK, x, sizeof(x));
    }
    return (uint64_t)x[0] | (uint64_t)x[1] << 32;
}

/* Start fetching the 128r-byte block V[j] that the next BlockMix will read. */
static inline void prefetch_block(const uint32_t *block, size_t r)
{
    const char *p = (const char *)block;
    for (size_t off = 0; off < 128 * r; off += 64)
        __builtin_prefetch(p + off, 0, 0);
}

/* x = ROMix(x). v holds n blocks of 32r words, y one (scratch); n is a power of two. */
static void romix(uint32_t *x, uint32_t *y, uint32_t *v, uint64_t n, size_t r)
{
    size_t words = 32 * r;
    memcpy(v, x, words * 4);
    for (uint64_t i = 0; i + 1 < n; i++)
        blockmix(v + i * words, NULL, v + (i + 1) * words, r);
    uint64_t j = blockmix(v + (n - 1) * words, NULL, x, r) & (n - 1);
    for (uint64_t i = 0; i < n; i += 2) {
        prefetch_block(v + j * words, r);
        j = blockmix(x, v + j * words, y, r) & (n - 1);
        prefetch_block(v + j * words, r);
        j = blockmix(y, v + j * words, x, r) & (n - 1);
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_VECTOR_LANE 1
#include <immintrin.h>

#define VECTOR_TARGET __attribute__((target("avx512f,avx512vl")))

/*
 * Salsa20/8 and BlockMix over rows, one body for two register widths: the 128-bit rows of one
 * lane (salsa20_8_rows, mix_rows) and the 512-bit rows of four lanes side by side, a lane in
 * each quarter (salsa20_8_wide, mix_wide: see romix_wide). V is the register type, the others
 * its instructions. A step of four quarter-rounds is x ^= (a + b) <<< k on whole rows: the
 * column round's rows are each column's words in turn (B = (x4 x9 x14 x3) its second, ...),
 * the row round runs the same steps on the rows turned into place (A stays). mix_* is
 * blockmix() on blocks of four rows (in diagonal order): out = BlockMix(in ^ mix), mix may be
 * NULL.
 */
#define DEFINE_ROW_FUNCTIONS(suffix, V, add, rol, xor, shuffle)                                     \
    VECTOR_TARGET static inline __attribute__((always_inline)) void                               \
    salsa20_8_##suffix(V *a, V *b, V *c, V *d)                                                    \
    {                                                                                             \
        V A = *a, B = *b, C = *c, D = *d;                                                         \
        for (int round = 0; round < 8; round += 2) {                                              \
            B = xor(B, rol(add(A, D), 7));                                                        \
            C = xor(C, rol(add(B, A), 9));                                                        \
            D = xor(D, rol(add(C, B), 13));                                                       \
            A = xor(A, rol(add(D, C), 18));                                                       \
            V rb = shuffle(D, 0x39), rc = shuffle(C, 0x4e), rd = shuffle(B, 0x93);                \
            rb = xor(rb, rol(add(A, rd), 7));                                                     \
            rc = xor(rc, rol(add(rb, A), 9));                                                     \
            rd = xor(rd, rol(add(rc, rb), 13));                                                   \
            A = xor(A, rol(add(rd, rc), 18));                                                     \
            D = shuffle(rb, 0x93);                                                                \
            C = shuffle(rc, 0x4e);                                                                \
            B = shuffle(rd, 0x39);                                                                \
        }                                                                                         \
        *a = add(*a, A);                                                                          \
        *b = add(*b, B);                                                                          \
        *c = add(*c, C);                                                                          \
        *d = add(*d, D);                                                                          \
    }                                                                                             \
                                                                                                  \
    VECTOR_TARGET static inline __attribute__((always_inline)) void                               \
    mix_##suffix(const V *in, const V *mix, V *out, size_t r)                                     \
    {                                                                                             \
        const size_t last = (2 * r - 1) * 4;                                                      \
        V A = in[last], B = in[last + 1], C = in[last + 2], D = in[last + 3];                     \
        if (mix) {                                                                                \
            A = xor(A, mix[last]);                                                                \
            B = xor(B, mix[last + 1]);                                                            \
            C = xor(C, mix[last + 2]);                                                            \
            D = xor(D, mix[last + 3]);                                                            \
        }                                                                                         \
        for (size_t i = 0; i < 2 * r; i++) {                                                      \
            const V *block = in + i * 4;                                                          \
            A = xor(A, block[0]);                                                                 \
            B = xor(B, block[1]);                                                                 \
            C = xor(C, block[2]);                                                                 \
            D = xor(D, block[3]);                                                                 \
            if (mix) {                                                                            \
                const V *other = mix + i * 4;                                                     \
                A = xor(A, other[0]);                                                             \
                B = xor(B, other[1]);                                                             \
                C = xor(C, other[2]);                                                             \
                D = xor(D, other[3]);                                                             \
            }                                                                                     \
            salsa20_8_##suffix(&A, &B, &C, &D);                                                   \
            V *to = out + (i / 2 + (i & 1) * r) * 4;                                              \
            to[0] = A;                                                                            \
            to[1] = B;                                                                            \
            to[2] = C;                                                                            \
            to[3] = D;                                                                            \
        }                                                                                         \
    }

DEFINE_ROW_FUNCTIONS(rows, __m128i, _mm_add_epi32, _mm_rol_epi32, _mm_xor_si128, _mm_shuffle_epi32)
DEFINE_ROW_FUNCTIONS(wide, __m512i, _mm512_add_epi32, _mm512_rol_epi32, _mm512_xor_si512, _mm512_shuffle_epi32)

/* blockmix() over blocks of four rows (in diagonal order); the same Integerify, read from
 * out's last block: x0 is its first row's first word, x1 its last row's second. */
VECTOR_TARGET static inline __attribute__((always_inline)) uint64_t
blockmix_rows(const __m128i *in, const __m128i *mix, __m128i *out, size_t r)
{
    mix_rows(in, mix, out, r);
    const uint32_t *w = (const uint32_t *)(out + (2 * r - 1) * 4);
    return (uint64_t)w[0] | (uint64_t)w[3 * 4 + 1] << 32;
}

/* romix() in diagonal order; x, y and v 16-byte aligned. */
VECTOR_TARGET static void romix_rows(uint32_t *x32, uint32_t *y32, uint32_t *v32, uint64_t n, size_t r)
{
    __m128i *x = (__m128i *)x32, *y = (__m128i *)y32, *v = (__m128i *)v32;
    const size_t rows = 8 * r; /* a 128r-byte block */
    memcpy(v, x, rows * sizeof(__m128i));
    for (uint64_t i = 0; i + 1 < n; i++)
        blockmix_rows(v + i * rows, NULL, v + (i + 1) * rows, r);
    uint64_t j = blockmix_rows(v + (n - 1) * rows, NULL, x, r) & (n - 1);
    for (uint64_t i = 0; i < n; i += 2) {
        prefetch_block((const uint32_t *)(v + j * rows), r);
        j = blockmix_rows(x, v + j * rows, y, r) & (n - 1);
        prefetch_block((const uint32_t *)(v + j * rows), r);
        j = blockmix_rows(y, v + j * rows, x, r) & (n - 1);
    }
}

static int vector_lane_available(void)
{
    static int available = -1;
    if (available < 0) {
        __builtin_cpu_init();
        available = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
    }
    return available;
}
#else
static int vector_lane_available(void)
{
    return 0;
}
#endif

/* One BlockMix (of in ^ mix, mix may be NULL) as a function, for the helper's sparse lane: a call
 * costs nothing next to the 2r Salsa20/8 cores it runs. */
typedef uint64_t (*blockmix_fn)(const uint32_t *in, const uint32_t *mix, uint32_t *out, size_t r);

static uint64_t blockmix_plain(const uint32_t *in, const uint32_t *mix, uint32_t *out, size_t r)
{
    return mix ? blockmix(in, mix, out, r) : blockmix(in, NULL, out, r);
}

#ifdef HAVE_VECTOR_LANE
VECTOR_TARGET static uint64_t blockmix_vector(const uint32_t *in, const uint32_t *mix, uint32_t *out,
                                              size_t r)
{
    if (mix)
        return blockmix_rows((const __m128i *)in, (const __m128i *)mix, (__m128i *)out, r);
    return blockmix_rows((const __m128i *)in, NULL, (__m128i *)out, r);
}
#endif

/* lanes run at once on the vector lane (romix_wide); WIDE_WORK: their blocks of scratch (each
 * lane's own, a wide block of all, and four wide blocks for romix_wide) */
#define WIDE 4
#define WIDE_SHIFT 2
#define WIDE_WORK (6 * WIDE)

#ifdef HAVE_VECTOR_LANE
/*
 * Four lanes at once. A core runs Salsa20/8's chain of dependent steps as fast on 512-bit
 * registers as on 128-bit ones (29 ms a million cores either way here), so four lanes side
 * by side, lane l's row q in the l-th quarter of register q (a "wide" block: 8r registers),
 * cost what one costs. Each lane needs its own V, and four would need four times the memory:
 * in the same memory, each keeps every 4th block (V laid out as wide blocks, n/4 of them), and
 * a lookup recomputes the block from the kept one below it, the four lanes in step, each
 * taking its block at its own count (j mod 4). That is N BlockMix rounds for the first loop
 * and ~3.6 N for the second, four lanes' worth: 1.7 times as fast as one lane after another.
 */

/* mix_wide() with each lane's Integerify of out in j[l] (as blockmix_rows reads it, in the
 * lane's quarter of each row). */
VECTOR_TARGET static inline __attribute__((always_inline)) void
blockmix_wide(const __m512i *in, const __m512i *mix, __m512i *out, size_t r, uint64_t j[WIDE])
{
    mix_wide(in, mix, out, r);
    const uint32_t *w = (const uint32_t *)(out + (2 * r - 1) * 4);
    for (int l = 0; l < WIDE; l++)
        j[l] = (uint64_t)w[4 * l] | (uint64_t)w[3 * 4 * WIDE + 4 * l + 1] << 32;
}

/* wide[q] = row q of block[0] .. block[width - 1] in their quarters (zeros in the others), for
 * the `rows` rows; a block's row q is block[l][stride * q]. */
VECTOR_TARGET static inline __attribute__((always_inline)) void
gather_wide(__m512i *wide, const __m128i *const block[WIDE], size_t rows, size_t stride, unsigned width)
{
    for (size_t q = 0; q < rows; q++) {
        __m512i w = _mm512_zextsi128_si512(_mm_load_si128(block[0] + stride * q));
        w = _mm512_inserti32x4(w, _mm_load_si128(block[1] + stride * q), 1);
        if (width == WIDE) {
            w = _mm512_inserti32x4(w, _mm_load_si128(block[2] + stride * q), 2);
            w = _mm512_inserti32x4(w, _mm_load_si128(block[3] + stride * q), 3);
        }
        wide[q] = w;
    }
}

VECTOR_TARGET static void scatter_wide(__m128i *const block[WIDE], const __m512i *wide, size_t rows)
{
    for (size_t q = 0; q < rows; q++) {
        block[0][q] = _mm512_extracti32x4_epi32(wide[q], 0);
        block[1][q] = _mm512_extracti32x4_epi32(wide[q], 1);
        block[2][q] = _mm512_extracti32x4_epi32(wide[q], 2);
        block[3][q] = _mm512_extracti32x4_epi32(wide[q], 3);
    }
}

/* x = ROMix(x) for `width` lanes (4, or 2 in the first two quarters of each register: the
 * others compute what nobody reads): x a wide block, v n / width kept blocks of the lanes'
 * quarters (every width-th block of each lane's V: the size of one lane's whole V), scratch
 * four wide blocks; n >= width. */
VECTOR_TARGET static void romix_wide(__m512i *x, __m512i *scratch, unsigned char *v, uint64_t n, size_t r,
                                     unsigned width)
{
    const size_t rows = 8 * r, kept_bytes = rows * width * sizeof(__m128i);
    const unsigned shift = width == WIDE ? WIDE_SHIFT : 1;
    __m512i *cur = x, *next = scratch, *kept = scratch + rows, *ahead = scratch + 2 * rows,
            *want = scratch + 3 * rows;
    uint64_t j[WIDE], unused[WIDE];
    for (uint64_t i = 0; i < n; i++) {
        if ((i & (width - 1)) == 0) {
            unsigned char *to = v + (i >> shift) * kept_bytes;
            if (width == WIDE)
                memcpy(to, cur, rows * sizeof(__m512i));
            else
                for (size_t q = 0; q < rows; q++)
                    _mm256_store_si256((__m256i *)to + q, _mm512_castsi512_si256(cur[q]));
        }
        blockmix_wide(cur, NULL, next, r, j);
        __m512i *done = cur;
        cur = next;
        next = done;
    }
    for (uint64_t i = 0; i < n; i++) {
        const __m128i *from[WIDE];
        unsigned count[WIDE] = {0}, most = 0;
        for (unsigned l = 0; l < width; l++) {
            uint64_t jl = j[l] & (n - 1);
            count[l] = (unsigned)(jl & (width - 1));
            most = count[l] > most ? count[l] : most;
            from[l] = (const __m128i *)(v + (jl >> shift) * kept_bytes) + l;
        }
        gather_wide(kept, from, rows, width, width); /* each lane's kept block, from its own quarter */
        const __m512i *lookup = kept;
        if (most > 0) {
            memcpy(want, kept, rows * sizeof(__m512i));
            const __m512i *src = kept;
            for (unsigned k = 1; k <= most; k++) {
                __m512i *dst = src == ahead ? kept : ahead;
                blockmix_wide(src, NULL, dst, r, unused);
                __mmask16 taken = 0;
                for (unsigned l = 0; l < width; l++)
                    if (count[l] == k)
                        taken |= (__mmask16)(0xF << (4 * l));
                if (taken)
                    for (size_t q = 0; q < rows; q++)
                        want[q] = _mm512_mask_blend_epi32(taken, want[q], dst[q]);
                src = dst;
            }
            lookup = want;
        }
        blockmix_wide(cur, lookup, next, r, j);
        __m512i *done = cur;
        cur = next;
        next = done;
    }
    if (cur != x)
        memcpy(x, cur, rows * sizeof(__m512i));
}
#endif

/*
 * x = ROMix(x) with V[i] kept only for i a multiple of 2^shift (v: n >> shift blocks): a lookup
 * of V[j] starts from the kept block below j and runs BlockMix j mod 2^shift times. The same
 * function as romix(), in 1 + (2^shift - 1) / 4 of its work on average and 1 / 2^shift of its
 * memory. work: three blocks of scratch.
 */
static void romix_sparse(uint32_t *x, uint32_t *work, uint32_t *v, uint64_t n, size_t r,
                         unsigned shift, blockmix_fn mix)
{
    size_t words = 32 * r;
    uint64_t kept = (uint64_t)1 << shift, j = 0;
    uint32_t *cur = x, *next = work, *a = work + words, *b = work + 2 * words;
    for (uint64_t i = 0; i < n; i++) {
        if ((i & (kept - 1)) == 0)
            memcpy(v + (i >> shift) * words, cur, words * 4);
        j = mix(cur, NULL, next, r) & (n - 1);
        uint32_t *done = cur;
        cur = next;
        next = done;
    }
    for (uint64_t i = 0; i < n; i++) {
        const uint32_t *vj = v + (j >> shift) * words;
        for (uint64_t step = 0; step < (j & (kept - 1)); step++) {
            uint32_t *into = vj == a ? b : a;
            mix(vj, NULL, into, r);
            vj = into;
        }
        j = mix(cur, vj, next, r) & (n - 1);
        uint32_t *done = cur;
        cur = next;
        next = done;
    }
    if (cur != x)
        memcpy(x, cur, words * 4);
}

/* A 2 MiB-aligned block, on transparent huge pages where the kernel allows it: V is read at
 * random, and with 4 KiB pages nearly every read of a 1 KiB block would also miss the TLB. */
static void *alloc_work_area(size_t size)
{
    void *p = NULL;
    size_t align = size >= HUGE_PAGE ? HUGE_PAGE : 64;
    if (posix_memalign(&p, align, size) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (align == HUGE_PAGE)
        (void)madvise(p, size, MADV_HUGEPAGE); /* advice only: a refusal changes nothing */
#endif
    return p;
}

/* 1 when a thread runs fn(arg), with every signal blocked in it: signals stay with the
 * interpreter's threads. */
static int start_thread_without_signals(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int started = pthread_create(thread, NULL, fn, arg) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return started;
}

/*
 * The kernel clears every page of V before its first write (32 MiB: several milliseconds), and
 * ROMix's first loop would wait for each clearing in turn. A helper thread has the pages made
 * writable ahead of it (MADV_POPULATE_WRITE touches no data, so the two never race over V's
 * contents), on another core when there is one. Best effort: without the helper (an older
 * kernel, no thread) the first loop faults the pages in itself, as before.
 */
struct prefault {
    pthread_t thread;
    void *start;
    size_t size;
    int running;
};

static void *prefault_pages(void *arg)
{
    struct prefault *job = arg;
#ifdef MADV_POPULATE_WRITE
    (void)madvise(job->start, job->size, MADV_POPULATE_WRITE);
#endif
    return NULL;
}

static void start_prefault(struct prefault *job, void *start, size_t size)
{
    job->start = start;
    job->size = size;
    job->running = 0;
#ifdef MADV_POPULATE_WRITE
    if (size < HUGE_PAGE)
        return; /* a small V is cleared quicker than a thread starts */
    job->running = start_thread_without_signals(&job->thread, prefault_pages, job);
#endif
}

static void finish_prefault(struct prefault *job)
{
    if (job->running)
        pthread_join(job->thread, NULL);
    job->running = 0;
}

/* The lanes of one derivation, shared by the calling thread and the helper: the unclaimed ones
 * are [front, back); the caller takes them from the front, the helper from the back. */
struct lanes {
    pthread_mutex_t lock;
    size_t front, back;
    unsigned char *b; /* B_1 .. B_p, each lane's block replaced by its ROMix */
    uint64_t n;
    size_t r;
    int vector;
};

/* The helper takes a lane from the back only while two are left: a lone last lane is the
 * caller's, which finishes it sooner than the helper's sparse lane would. Under lanes->lock. */
static int helper_may_take(const struct lanes *lanes)
{
    return lanes->back - lanes->front >= 2;
}

static int claim_back(struct lanes *lanes, size_t *lane)
{
    pthread_mutex_lock(&lanes->lock);
    int claimed = helper_may_take(lanes);
    if (claimed)
        *lane = --lanes->back;
    pthread_mutex_unlock(&lanes->lock);
    return claimed;
}

static const unsigned char *lane_order(const struct lanes *lanes)
{
    return lanes->vector ? DIAGONAL : IN_ORDER;
}

/* Up to `most` unclaimed lanes from the front for the caller: how many, from *first on. */
static size_t claim_front(struct lanes *lanes, size_t most, size_t *first)
{
    pthread_mutex_lock(&lanes->lock);
    size_t left = lanes->back - lanes->front, got = left < most ? left : most;
    *first = lanes->front;
    lanes->front += got;
    pthread_mutex_unlock(&lanes->lock);
    return got;
}

/* The caller's lane, on the whole V; xy: two blocks of scratch. */
static void run_full_lane(struct lanes *lanes, size_t lane, uint32_t *xy, uint32_t *v)
{
    size_t r = lanes->r, block_bytes = 128 * r;
    import_blocks(xy, lanes->b + lane * block_bytes, r, lane_order(lanes));
#ifdef HAVE_VECTOR_LANE
    if (lanes->vector)
        romix_rows(xy, xy + 32 * r, v, lanes->n, r);
    else
#endif
        romix(xy, xy + 32 * r, v, lanes->n, r);
    export_blocks(lanes->b + lane * block_bytes, xy, r, lane_order(lanes));
}

#ifdef HAVE_VECTOR_LANE
/* count lanes (2 to 4) from first on at once (romix_wide, 2 wide or 4 wide), in V's memory;
 * the quarters no lane of these uses compute copies of lane `first`, their results dropped.
 * work: WIDE_WORK blocks of scratch. */
VECTOR_TARGET static void run_wide_lanes(struct lanes *lanes, size_t first, size_t count, uint32_t *work,
                                         uint32_t *v)
{
    size_t r = lanes->r, block_bytes = 128 * r, words = 32 * r, rows = 8 * r;
    __m128i *lane_block[WIDE];
    for (size_t l = 0; l < WIDE; l++) {
        lane_block[l] = (__m128i *)(work + l * words);
        import_blocks((uint32_t *)lane_block[l], lanes->b + (first + (l < count ? l : 0)) * block_bytes, r,
                      DIAGONAL);
    }
    __m512i *x = (__m512i *)(work + WIDE * words); /* a wide block: WIDE blocks */
    gather_wide(x, (const __m128i *const *)lane_block, rows, 1, WIDE);
    romix_wide(x, x + rows, (unsigned char *)v, lanes->n, r, count > 2 ? WIDE : 2);
    scatter_wide(lane_block, x, rows);
    for (size_t l = 0; l < count; l++)
        export_blocks(lanes->b + (first + l) * block_bytes, (uint32_t *)lane_block[l], r, DIAGONAL);
}
#endif

/* The caller's lanes: two to four at a time on the vector lane (run_wide_lanes), else one by
 * one on the whole V. work: WIDE_WORK blocks of scratch. */
static void run_full_lanes(struct lanes *lanes, uint32_t *work, uint32_t *v)
{
    size_t first, got;
    int wide = 0;
#ifdef HAVE_VECTOR_LANE
    wide = lanes->vector && lanes->n >= WIDE;
#endif
    while ((got = claim_front(lanes, wide ? WIDE : 1, &first)) > 0) {
#ifdef HAVE_VECTOR_LANE
        if (got >= 2) {
            run_wide_lanes(lanes, first, got, work, v);
            continue;
        }
#endif
        for (size_t lane = first; lane < first + got; lane++)
            run_full_lane(lanes, lane, work, v);
    }
}

/* Lanes the helper derived in the latest derivation (helper_lanes(): for tests, which cannot
 * see the thread otherwise). */
static size_t latest_helper_lanes;

/* Whether the other core is free for a helper that waits for it (lend_core(): a backup's
 * prescan walks the tree on it while the key is derived, and lends it once done). The gate is
 * process-wide, as the core is; its lock and condition also carry a derivation's end. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_changed = PTHREAD_COND_INITIALIZER;
static int core_lent;

struct helper {
    struct lanes *lanes;
    size_t lanes_done;
    uint32_t *work; /* four blocks: x and romix_sparse's scratch */
    uint32_t *v;    /* n >> shift blocks */
    unsigned shift;
    int waits;      /* for the core to be lent before it takes a lane */
    int caller_done; /* the caller has no lane left: a waiting helper gives up (under gate_lock) */
    pthread_t thread;
    int running;
};

/* 1 once the helper may go on: at once unless it waits for the core; 0 when the caller got
 * done first. */
static int wait_for_core(struct helper *h)
{
    pthread_mutex_lock(&gate_lock);
    while (h->waits && !core_lent && !h->caller_done)
        pthread_cond_wait(&gate_changed, &gate_lock);
    int go = !h->caller_done;
    pthread_mutex_unlock(&gate_lock);
    return go;
}

/* Whether a lane is left for the helper to take, without taking it. */
static int lane_left(struct lanes *lanes)
{
    pthread_mutex_lock(&lanes->lock);
    int left = helper_may_take(lanes);
    pthread_mutex_unlock(&lanes->lock);
    return left;
}

static void *run_sparse_lanes(void *arg)
{
    struct helper *h = arg;
    struct lanes *lanes = h->lanes;
    size_t r = lanes->r, block_bytes = 128 * r, lane;
    blockmix_fn mix = blockmix_plain;
#ifdef HAVE_VECTOR_LANE
    if (lanes->vector)
        mix = blockmix_vector;
#endif
    /* its memory is taken only when there is a lane to spend it on: a helper let in near the
     * end costs nothing */
    if (!wait_for_core(h) || !lane_left(lanes))
        return NULL;
    h->work = alloc_work_area(4 * block_bytes);
    h->v = alloc_work_area((lanes->n >> h->shift) * block_bytes);
    if (!h->work || !h->v)
        return NULL;
    while (claim_back(lanes, &lane)) {
        import_blocks(h->work, lanes->b + lane * block_bytes, r, lane_order(lanes));
        romix_sparse(h->work, h->work + 32 * r, h->v, lanes->n, r, h->shift, mix);
        export_blocks(lanes->b + lane * block_bytes, h->work, r, lane_order(lanes));
        h->lanes_done++;
    }
    return NULL;
}

/* Keeping every 8th block at most: past that a sparse lane costs nearly three full ones. */
#define MAX_SPARSE_SHIFT 3

/* Start the helper when p leaves it a lane to take and memory bytes hold a sparse V (waits:
 * it takes lanes only once the core is lent); without it (no memory, no thread) the caller
 * derives every lane, as before. */
static void start_helper(struct helper *h, struct lanes *lanes, size_t p, size_t memory, int waits)
{
    size_t block_bytes = 128 * lanes->r;
    *h = (struct helper){.lanes = lanes, .waits = waits};
    if (p < 2)
        return;
    unsigned shift = 0;
    while (shift <= MAX_SPARSE_SHIFT && (lanes->n >> shift) * block_bytes > memory)
        shift++;
    if (shift > MAX_SPARSE_SHIFT || (lanes->n >> shift) < 2)
        return;
    h->shift = shift;
    h->running = start_thread_without_signals(&h->thread, run_sparse_lanes, h);
}

static void finish_helper(struct helper *h)
{
    pthread_mutex_lock(&gate_lock);
    h->caller_done = 1;
    pthread_cond_broadcast(&gate_changed);
    pthread_mutex_unlock(&gate_lock);
    if (h->running)
        pthread_join(h->thread, NULL);
    h->running = 0;
    latest_helper_lanes = h->lanes_done;
    if (h->work)
        explicit_bzero(h->work, 4 * 128 * h->lanes->r);
    free(h->work);
    free(h->v);
}

/* 0 on success, -1 when out of memory. helper_memory: bytes a helper lane may use (0: none);
 * helper_waits: the helper starts on lanes only once the core is lent (lend_core). */
static int scrypt_raw(const unsigned char *pass, size_t passlen, const unsigned char *salt,
                      size_t saltlen, uint64_t n, size_t r, size_t p, unsigned char *out,
                      size_t dklen, int portable, size_t helper_memory, int helper_waits)
{
    size_t block_bytes = 128 * r;
    unsigned char *b = malloc(block_bytes * p);
    uint32_t *xy = alloc_work_area(WIDE_WORK * block_bytes);
    uint32_t *v = alloc_work_area(block_bytes * (size_t)n);
    struct prefault prefault = {.running = 0};
    int rc = 0;
    if (!b || !xy || !v) {
        rc = -1;
        goto done;
    }
    start_prefault(&prefault, v, block_bytes * (size_t)n);
    pbkdf2_sha256_once(pass, passlen, salt, saltlen, b, block_bytes * p);
    struct lanes lanes = {.lock = PTHREAD_MUTEX_INITIALIZER, .front = 0, .back = p, .b = b, .n = n,
                          .r = r, .vector = !portable && vector_lane_available()};
    struct helper helper;
    start_helper(&helper, &lanes, p, helper_memory, helper_waits);
    run_full_lanes(&lanes, xy, v);
    finish_helper(&helper);
    pbkdf2_sha256_once(pass, passlen, b, block_bytes * p, out, dklen);
done:
    finish_prefault(&prefault); /* before V is freed */
    /* B and X are the secrets the output is made of; V is given back to the kernel, which
     * clears pages before anyone else gets them, and clearing 32 MiB costs milliseconds. */
    if (b)
        explicit_bzero(b, block_bytes * p);
    if (xy)
        explicit_bzero(xy, WIDE_WORK * block_bytes);
    free(b);
    free(xy);
    free(v);
    return rc;
}

/* "O&" converter: a non-negative int that fits 64 bits, else ValueError (TypeError if no int). */
static int to_uint64(PyObject *obj, void *result)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "an integer is required, not %.100s", Py_TYPE(obj)->tp_name);
        return 0;
    }
    uint64_t v = PyLong_AsUnsignedLongLong(obj);
    if (v == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "scrypt parameter out of range");
        return 0;
    }
    *(uint64_t *)result = v;
    return 1;
}

static const char *invalid_parameters(uint64_t n, uint64_t r, uint64_t p, uint64_t dklen,
                                      Py_ssize_t passlen, Py_ssize_t saltlen)
{
    if (n < 2 || (n & (n - 1)))
        return "n must be a power of 2 greater than 1";
    if (r < 1 || p < 1 || r >= (1u << 30) || p >= (1u << 30) || r * p >= (1u << 30))
        return "r and p must be positive and r * p below 2^30";
    if (dklen < 1 || dklen > INT_MAX)
        return "dklen must be between 1 and 2^31 - 1";
    if (passlen > INT_MAX || saltlen > INT_MAX)
        return "password and salt must be shorter than 2 GiB";
    if (128 * r * p > INT_MAX)
        return "128 * r * p must be below 2 GiB";
    if (n > SIZE_MAX / 128 / r)
        return "128 * r * n does not fit in memory";
    return NULL;
}

static PyObject *kdf_scrypt(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"password", "salt", "n", "r", "p", "dklen", "portable", "helper_memory",
                               "helper_waits", NULL};
    Py_buffer pass, salt;
    uint64_t n, r, p, dklen, helper_memory = 0;
    int portable = 0, helper_waits = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*O&O&O&O&|$pO&p:scrypt", keywords, &pass,
                                     &salt, to_uint64, &n, to_uint64, &r, to_uint64, &p,
                                     to_uint64, &dklen, &portable, to_uint64, &helper_memory,
                                     &helper_waits))
        return NULL;
    PyObject *result = NULL;
    const char *problem = invalid_parameters(n, r, p, dklen, pass.len, salt.len);
    if (problem) {
        PyErr_SetString(PyExc_ValueError, problem);
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)dklen);
    if (!result)
        goto done;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = scrypt_raw(pass.buf, (size_t)pass.len, salt.buf, (size_t)salt.len, n, (size_t)r,
                    (size_t)p, (unsigned char *)PyBytes_AS_STRING(result), (size_t)dklen,
                    portable, helper_memory > SIZE_MAX ? SIZE_MAX : (size_t)helper_memory,
                    helper_waits);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        Py_CLEAR(result);
        PyErr_NoMemory();
    }
done:
    PyBuffer_Release(&pass);
    PyBuffer_Release(&salt);
    return result;
}

static PyObject *kdf_helper_lanes(PyObject *self, PyObject *unused)
{
    return PyLong_FromSize_t(latest_helper_lanes);
}

/* lend_core(lent=True): whether the other core is free for a waiting helper (see core_lent) */
static PyObject *kdf_lend_core(PyObject *self, PyObject *args)
{
    int lent = 1;
    if (!PyArg_ParseTuple(args, "|p:lend_core", &lent))
        return NULL;
    pthread_mutex_lock(&gate_lock);
    core_lent = lent;
    pthread_cond_broadcast(&gate_changed);
    pthread_mutex_unlock(&gate_lock);
    Py_RETURN_NONE;
}

static PyObject *kdf_vector_lane(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(vector_lane_available());
}

static PyMethodDef kdf_methods[] = {
    {"scrypt", (PyCFunction)(void (*)(void))kdf_scrypt, METH_VARARGS | METH_KEYWORDS,
     "scrypt(password, salt, n, r, p, dklen, *, portable=False, helper_memory=0, helper_waits=False) "
     "-> bytes: RFC 7914 scrypt; releases the GIL. portable: the scalar lane even where the vector "
     "lane is available. helper_memory: bytes a helper thread may use for lanes of its own (a sparse "
     "V), besides V; helper_waits: it takes lanes only once lend_core() was called (taking its "
     "memory then, and only if two lanes are left)."},
    {"lend_core", kdf_lend_core, METH_VARARGS,
     "lend_core(lent=True): the other core is free (or, lent=False, busy again) for a helper that "
     "waits for it, in this derivation and later ones."},
    {"helper_lanes", kdf_helper_lanes, METH_NOARGS,
     "helper_lanes() -> int: the lanes the helper thread derived in the latest scrypt() call."},
    {"vector_lane", kdf_vector_lane, METH_NOARGS,
     "vector_lane() -> bool: whether scrypt() runs on the AVX-512 vector lane here."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef kdf_module = {
    PyModuleDef_HEAD_INIT, "_kdf", "scrypt key derivation (RFC 7914).", -1, kdf_methods,
};

PyMODINIT_FUNC PyInit__kdf(void)
{
    return PyModule_Create(&kdf_module);
}
