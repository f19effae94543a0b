/*
 * restique._kdf: scrypt (RFC 7914) with a vectorised Salsa20/8, for the key derivation every
 * command pays once.
 *
 * scrypt(P, S, N, r, p) = PBKDF2-SHA256(P, ROMix(B_1) .. ROMix(B_p), 1, dklen),
 * with B_1 .. B_p = PBKDF2-SHA256(P, S, 1, p * 128 * r) (pbkdf2_sha256.h). Its Salsa20/8 is a chain of dependent steps, so what counts is keeping the state in
 * registers, not reloading it between the 2r Salsa20/8 calls of a BlockMix, and folding the
 * X ^ V[j] of the second loop into the BlockMix that consumes it.
 *
 * Memory: one V array (128 * r * N bytes) reused by every lane, as OpenSSL's scrypt; lanes run
 * one after the other (running them at once would need one V array each).
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

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define WORDS_PER_BLOCK 16 /* one Salsa20 block: 64 bytes */
#define HUGE_PAGE (2u << 20)

/*
 * Word order inside each 64-byte block. The SSE2 code stores word (5 * i) mod 16 at position i:
 * then the four vectors hold the diagonals of the Salsa20 4x4 matrix, so the four quarter-rounds
 * of a column round run in the four lanes at once, and one lane rotation per vector lines the
 * rows up. Word 0 stays at position 0 (integerify reads it), word 1 moves to position 13.
 */
#ifdef __SSE2__
#define STORED_POSITION_OF_WORD(w) ((13 * (w)) % 16) /* 13 = 5^-1 mod 16 */
#else
#define STORED_POSITION_OF_WORD(w) (w)
#endif

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

/* bytes -> words in the stored order, for 2r blocks */
static void import_blocks(uint32_t *dst, const unsigned char *src, size_t r)
{
    for (size_t k = 0; k < 2 * r; k++)
        for (unsigned w = 0; w < WORDS_PER_BLOCK; w++)
            dst[k * WORDS_PER_BLOCK + STORED_POSITION_OF_WORD(w)] =
                load_le32(src + (k * WORDS_PER_BLOCK + w) * 4);
}

static void export_blocks(unsigned char *dst, const uint32_t *src, size_t r)
{
    for (size_t k = 0; k < 2 * r; k++)
        for (unsigned w = 0; w < WORDS_PER_BLOCK; w++)
            store_le32(dst + (k * WORDS_PER_BLOCK + w) * 4,
                       src[k * WORDS_PER_BLOCK + STORED_POSITION_OF_WORD(w)]);
}

#ifdef __SSE2__

/* dst ^= (sum <<< k) */
#define XOR_ROTATED(dst, sum, k)                                      \
    do {                                                              \
        __m128i sum_ = (sum);                                         \
        dst = _mm_xor_si128(dst, _mm_slli_epi32(sum_, (k)));          \
        dst = _mm_xor_si128(dst, _mm_srli_epi32(sum_, 32 - (k)));     \
    } while (0)

/* (x0..x3) = Salsa20/8(x0..x3), state in diagonal order */
#define SALSA20_8(x0, x1, x2, x3)                                     \
    do {                                                              \
        __m128i a = x0, b = x1, c = x2, d = x3;                       \
        for (int round = 0; round < 8; round += 2) {                  \
            /* columns: lane i of a, b, c, d is one column */         \
            XOR_ROTATED(b, _mm_add_epi32(a, d), 7);                   \
            XOR_ROTATED(c, _mm_add_epi32(b, a), 9);                   \
            XOR_ROTATED(d, _mm_add_epi32(c, b), 13);                  \
            XOR_ROTATED(a, _mm_add_epi32(d, c), 18);                  \
            /* rows: rotate lanes so lane i of a, d, c, b is row i */ \
            b = _mm_shuffle_epi32(b, 0x93);                           \
            c = _mm_shuffle_epi32(c, 0x4E);                           \
            d = _mm_shuffle_epi32(d, 0x39);                           \
            XOR_ROTATED(d, _mm_add_epi32(a, b), 7);                   \
            XOR_ROTATED(c, _mm_add_epi32(d, a), 9);                   \
            XOR_ROTATED(b, _mm_add_epi32(c, d), 13);                  \
            XOR_ROTATED(a, _mm_add_epi32(b, c), 18);                  \
            b = _mm_shuffle_epi32(b, 0x39);                           \
            c = _mm_shuffle_epi32(c, 0x4E);                           \
            d = _mm_shuffle_epi32(d, 0x93);                           \
        }                                                             \
        x0 = _mm_add_epi32(x0, a);                                    \
        x1 = _mm_add_epi32(x1, b);                                    \
        x2 = _mm_add_epi32(x2, c);                                    \
        x3 = _mm_add_epi32(x3, d);                                    \
    } while (0)

/*
 * out = BlockMix(in ^ mix) (mix may be NULL: plain BlockMix); out must not overlap in.
 * Returns Integerify(out) (the first 64 bits of its last block), read from the registers.
 * Always inlined so that the two callers (mix NULL or not) each get a copy without the test.
 */
static inline __attribute__((always_inline)) uint64_t
blockmix(const uint32_t *in_words, const uint32_t *mix_words, uint32_t *out_words, size_t r)
{
    const __m128i *in = (const __m128i *)in_words;
    const __m128i *mix = (const __m128i *)mix_words;
    __m128i *out = (__m128i *)out_words;
    size_t last = (2 * r - 1) * 4;
    __m128i x0 = in[last], x1 = in[last + 1], x2 = in[last + 2], x3 = in[last + 3];
    if (mix) {
        x0 = _mm_xor_si128(x0, mix[last]);
        x1 = _mm_xor_si128(x1, mix[last + 1]);
        x2 = _mm_xor_si128(x2, mix[last + 2]);
        x3 = _mm_xor_si128(x3, mix[last + 3]);
    }
    for (size_t i = 0; i < 2 * r; i++) {
        const __m128i *src = in + 4 * i;
        __m128i s0 = src[0], s1 = src[1], s2 = src[2], s3 = src[3];
        if (mix) { /* in ^ mix first: it does not wait for the previous Salsa20/8 */
            const __m128i *m = mix + 4 * i;
            s0 = _mm_xor_si128(s0, m[0]);
            s1 = _mm_xor_si128(s1, m[1]);
            s2 = _mm_xor_si128(s2, m[2]);
            s3 = _mm_xor_si128(s3, m[3]);
        }
        x0 = _mm_xor_si128(x0, s0);
        x1 = _mm_xor_si128(x1, s1);
        x2 = _mm_xor_si128(x2, s2);
        x3 = _mm_xor_si128(x3, s3);
        SALSA20_8(x0, x1, x2, x3);
        /* even blocks to the first half, odd ones to the second */
        __m128i *dst = out + 4 * (i / 2 + (i & 1) * r);
        dst[0] = x0;
        dst[1] = x1;
        dst[2] = x2;
        dst[3] = x3;
    }
    /* x0 lane 0 is word 0 of the last block; word 1 is at position 13: x3 lane 1 */
    return (uint32_t)_mm_cvtsi128_si32(x0) |
           (uint64_t)(uint32_t)_mm_cvtsi128_si32(_mm_shuffle_epi32(x3, 0x01)) << 32;
}

#endif

/* The portable code: the fallback where SSE2 is missing, and always the yardstick the key
 * calibration times (plain scalar code, as fast as restic's Go scrypt), so a key made here is
 * as strong as the one restic would make on the same machine, whichever code derives it. */

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

/* as the SSE2 blockmix above, words in their natural order */
static inline uint64_t blockmix_portable(const uint32_t *in, const uint32_t *mix, uint32_t *out, size_t r)
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

#ifndef __SSE2__
#define blockmix blockmix_portable
#endif

/* Start fetching the 128r-byte block V[j] that the next BlockMix will read. */
static inline void prefetch_block(const uint32_t *block, size_t r)
{
    const char *p = (const char *)block;
    for (size_t off = 0; off < 128 * r; off += 64)
        __builtin_prefetch(p + off, 0, 0);
}

/*
 * x = ROMix(x), words in the stored order. v holds n blocks of 32r words, y one (scratch).
 * n is a power of two. Also built for AVX (picked at load time where the CPU has it): the
 * same SSE2 operations, but their three-operand encodings spare the register copies two-operand
 * SSE2 needs in every step, about a tenth of the time.
 */
#if defined(__SSE2__) && defined(__x86_64__) && defined(__GNUC__) && !defined(__AVX__)
__attribute__((target_clones("avx", "default")))
#endif
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
    sigset_t all, old; /* signals stay with the interpreter's threads */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    job->running = pthread_create(&job->thread, NULL, prefault_pages, job) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
#endif
}

static void finish_prefault(struct prefault *job)
{
    if (job->running)
        pthread_join(job->thread, NULL);
    job->running = 0;
}

/* 0 on success, -1 when out of memory. */
static int scrypt_raw(const unsigned char *pass, size_t passlen, const unsigned char *salt,
                      size_t saltlen, uint64_t n, size_t r, size_t p, unsigned char *out,
                      size_t dklen)
{
    size_t block_bytes = 128 * r;
    unsigned char *b = malloc(block_bytes * p);
    uint32_t *xy = alloc_work_area(2 * block_bytes);
    uint32_t *v = alloc_work_area(block_bytes * (size_t)n);
    struct prefault prefault = {.running = 0};
    int rc = 0;
    if (!b || !xy || !v) {
        rc = -1;
        goto done;
    }
    start_prefault(&prefault, v, block_bytes * (size_t)n);
    pbkdf2_sha256_once(pass, passlen, salt, saltlen, b, block_bytes * p);
    for (size_t lane = 0; lane < p; lane++) {
        import_blocks(xy, b + lane * block_bytes, r);
        romix(xy, xy + 32 * r, v, n, r);
        export_blocks(b + lane * block_bytes, xy, r);
    }
    pbkdf2_sha256_once(pass, passlen, b, block_bytes * p, out, dklen);
done:
    finish_prefault(&prefault); /* before V is freed */
    /* B and X are the secrets the output is made of; V is given back to the kernel, which
     * clears pages before anyone else gets them, and clearing 32 MiB costs milliseconds. */
    if (b)
        explicit_bzero(b, block_bytes * p);
    if (xy)
        explicit_bzero(xy, 2 * block_bytes);
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
    static char *keywords[] = {"password", "salt", "n", "r", "p", "dklen", NULL};
    Py_buffer pass, salt;
    uint64_t n, r, p, dklen;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*O&O&O&O&:scrypt", keywords, &pass, &salt,
                                     to_uint64, &n, to_uint64, &r, to_uint64, &p, to_uint64,
                                     &dklen))
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
                    (size_t)p, (unsigned char *)PyBytes_AS_STRING(result), (size_t)dklen);
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

/* One ROMix lane of the portable code over zeros, for calibration (the data does not change
 * the time it takes); the GIL is released. */
static PyObject *kdf_reference_lane(PyObject *self, PyObject *args)
{
    unsigned long long n, r;
    if (!PyArg_ParseTuple(args, "KK:reference_lane", &n, &r))
        return NULL;
    const char *problem = invalid_parameters(n, r, 1, 64, 0, 0);
    if (problem) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    size_t words = 32 * (size_t)r;
    uint32_t *xy = calloc(2 * words, 4), *v = alloc_work_area(words * 4 * (size_t)n);
    if (!xy || !v) {
        free(xy);
        free(v);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    memcpy(v, xy, words * 4);
    for (uint64_t i = 0; i + 1 < n; i++)
        blockmix_portable(v + i * words, NULL, v + (i + 1) * words, (size_t)r);
    uint64_t j = blockmix_portable(v + (n - 1) * words, NULL, xy, (size_t)r) & (n - 1);
    for (uint64_t i = 0; i < n; i++)
        j = blockmix_portable(i & 1 ? xy + words : xy, v + j * words, i & 1 ? xy : xy + words,
                              (size_t)r) & (n - 1);
    Py_END_ALLOW_THREADS
    free(xy);
    free(v);
    Py_RETURN_NONE;
}

static PyMethodDef kdf_methods[] = {
    {"reference_lane", kdf_reference_lane, METH_VARARGS,
     "reference_lane(n, r): one ROMix lane of the plain scalar code, for timing."},
    {"scrypt", (PyCFunction)(void (*)(void))kdf_scrypt, METH_VARARGS | METH_KEYWORDS,
     "scrypt(password, salt, n, r, p, dklen) -> bytes: RFC 7914 scrypt; releases the GIL."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef kdf_module = {
    PyModuleDef_HEAD_INIT, "_kdf", "scrypt key derivation (RFC 7914).", -1, kdf_methods,
};

PyMODINIT_FUNC PyInit__kdf(void)
{
    return PyModule_Create(&kdf_module);
}
