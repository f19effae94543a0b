/*
 * AES-256-CTR on 512-bit registers (VAES + AVX-512), for _seal.
 *
 * OpenSSL's CTR mode encrypts one 128-bit block per AES instruction; with VAES an instruction
 * takes four, and a big file's backup spent ~0.16 s of its ~2 s of CPU there (per 512 MiB).
 * The counter is restic's (Go's cipher.NewCTR): the whole 16-byte IV as one big-endian number.
 * Here only its low 64 bits are counted: a range whose low half would wrap is left to the
 * library (aes256ctr_fast returns 0), which happens for one blob in ~2^44.
 *
 * Where the CPU or the compiler lacks VAES, aes256ctr_fast_available() is 0 and nothing else
 * here is called. _seal checks this path against the library and a published vector at import.
 */
#ifndef RESTIQUE_AES256_CTR_H
#define RESTIQUE_AES256_CTR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Whether n bytes from iv's counter on leave its low 64 bits unwrapped (aes256ctr_fast's condition). */
static inline int aes256ctr_fast_fits(const unsigned char *iv, size_t n)
{
    uint64_t lo = 0;
    for (int i = 8; i < 16; i++)
        lo = lo << 8 | iv[i];
    return lo <= UINT64_MAX - (n / 16 + 1);
}

#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#define AES256CTR_FAST 1
#include <immintrin.h>

struct aes256_fast_keys {
    __m128i rk[15];
};

static int aes256ctr_fast_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("vaes") && __builtin_cpu_supports("avx512f")
           && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("aes");
}

/* Each 32-bit word of v XORed with the words before it: the key schedule's running XOR. */
__attribute__((target("aes,sse4.1"))) static inline __m128i aes256_running_xor(__m128i v)
{
    v = _mm_xor_si128(v, _mm_slli_si128(v, 4));
    v = _mm_xor_si128(v, _mm_slli_si128(v, 4));
    return _mm_xor_si128(v, _mm_slli_si128(v, 4));
}

/* One step of AES-256's key schedule for an even round key: prev2 the key two rounds back,
 * assist aeskeygenassist() of the latest one. */
__attribute__((target("aes,sse4.1"))) static inline __m128i aes256_even(__m128i prev2, __m128i assist)
{
    return _mm_xor_si128(aes256_running_xor(prev2), _mm_shuffle_epi32(assist, 0xff));
}

/* ... and for an odd one: latest the even key just made. */
__attribute__((target("aes,sse4.1"))) static inline __m128i aes256_odd(__m128i prev2, __m128i latest)
{
    __m128i assist = _mm_aeskeygenassist_si128(latest, 0);
    return _mm_xor_si128(aes256_running_xor(prev2), _mm_shuffle_epi32(assist, 0xaa));
}

__attribute__((target("aes,sse4.1"))) static void aes256ctr_fast_keys(const unsigned char *key,
                                                                       struct aes256_fast_keys *k)
{
    __m128i *rk = k->rk;
    rk[0] = _mm_loadu_si128((const __m128i *)key);
    rk[1] = _mm_loadu_si128((const __m128i *)(key + 16));
    /* aeskeygenassist takes its round constant as an immediate: a macro per pair of rounds */
#define AES256_ROUND_KEYS(i, rcon)                                                   \
    rk[i] = aes256_even(rk[i - 2], _mm_aeskeygenassist_si128(rk[i - 1], rcon)); \
    rk[i + 1] = aes256_odd(rk[i - 1], rk[i])
    AES256_ROUND_KEYS(2, 0x01);
    AES256_ROUND_KEYS(4, 0x02);
    AES256_ROUND_KEYS(6, 0x04);
    AES256_ROUND_KEYS(8, 0x08);
    AES256_ROUND_KEYS(10, 0x10);
    AES256_ROUND_KEYS(12, 0x20);
#undef AES256_ROUND_KEYS
    rk[14] = aes256_even(rk[12], _mm_aeskeygenassist_si128(rk[13], 0x40));
}

static inline uint64_t aes256_load_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* One register of four counter blocks, encrypted: k the 15 round keys. */
#define AES256_ENCRYPT4(x, k)                                                                   \
    do {                                                                                        \
        x = _mm512_xor_si512(x, k[0]);                                                          \
        for (int r_ = 1; r_ < 14; r_++)                                                         \
            x = _mm512_aesenc_epi128(x, k[r_]);                                                 \
        x = _mm512_aesenclast_epi128(x, k[14]);                                                 \
    } while (0)

/* XOR n bytes of in into out with the keystream of the counter iv + block (out may be in):
 * 1, or 0 (nothing done) when the counter's low 64 bits would wrap on the way. Eight
 * registers (32 blocks) go through the rounds side by side, so that each instruction's
 * latency is hidden behind the others'. */
__attribute__((target("avx512f,avx512bw,vaes"))) static int
aes256ctr_fast(const struct aes256_fast_keys *k, const unsigned char *iv, uint64_t block,
               const unsigned char *in, unsigned char *out, size_t n)
{
    uint64_t hi = aes256_load_be64(iv), lo = aes256_load_be64(iv + 8);
    if (lo + block < lo || lo + block > UINT64_MAX - (n / 16 + 1))
        return 0;
    lo += block;
    __m512i key[15];
    for (int r = 0; r < 15; r++)
        key[r] = _mm512_broadcast_i32x4(k->rk[r]);
    /* each 128-bit lane [low 64 bits, high 64 bits] in little-endian order: reversing its bytes
     * gives the big-endian counter block */
    const __m512i reverse = _mm512_broadcast_i32x4(
        _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512i four = _mm512_set_epi64(0, 4, 0, 4, 0, 4, 0, 4);
    __m512i ctr = _mm512_set_epi64((long long)hi, (long long)(lo + 3), (long long)hi, (long long)(lo + 2),
                                   (long long)hi, (long long)(lo + 1), (long long)hi, (long long)lo);
    for (; n >= 512; in += 512, out += 512, n -= 512) {
        __m512i x0, x1, x2, x3, x4, x5, x6, x7;
        x0 = _mm512_shuffle_epi8(ctr, reverse), ctr = _mm512_add_epi64(ctr, four);
        x1 = _mm512_shuffle_epi8(ctr, reverse), ctr = _mm512_add_epi64(ctr, four);
        x2 = _mm512_shuffle_epi8(ctr, reverse), ctr = _mm512_add_epi64(ctr, four);
        x3 = _mm512_shuffle_epi8(ctr, reverse), ctr = _mm512_add_epi64(ctr, four);
        x4 = _mm512_shuffle_epi8(ctr, reverse), ctr = _mm512_add_epi64(ctr, four);
        x5 = _mm512_shuffle_epi8(ctr, reverse), ctr = _mm512_add_epi64(ctr, four);
        x6 = _mm512_shuffle_epi8(ctr, reverse), ctr = _mm512_add_epi64(ctr, four);
        x7 = _mm512_shuffle_epi8(ctr, reverse), ctr = _mm512_add_epi64(ctr, four);
        x0 = _mm512_xor_si512(x0, key[0]), x1 = _mm512_xor_si512(x1, key[0]);
        x2 = _mm512_xor_si512(x2, key[0]), x3 = _mm512_xor_si512(x3, key[0]);
        x4 = _mm512_xor_si512(x4, key[0]), x5 = _mm512_xor_si512(x5, key[0]);
        x6 = _mm512_xor_si512(x6, key[0]), x7 = _mm512_xor_si512(x7, key[0]);
#pragma GCC unroll 13
        for (int r = 1; r < 14; r++) {
            x0 = _mm512_aesenc_epi128(x0, key[r]), x1 = _mm512_aesenc_epi128(x1, key[r]);
            x2 = _mm512_aesenc_epi128(x2, key[r]), x3 = _mm512_aesenc_epi128(x3, key[r]);
            x4 = _mm512_aesenc_epi128(x4, key[r]), x5 = _mm512_aesenc_epi128(x5, key[r]);
            x6 = _mm512_aesenc_epi128(x6, key[r]), x7 = _mm512_aesenc_epi128(x7, key[r]);
        }
        x0 = _mm512_aesenclast_epi128(x0, key[14]), x1 = _mm512_aesenclast_epi128(x1, key[14]);
        x2 = _mm512_aesenclast_epi128(x2, key[14]), x3 = _mm512_aesenclast_epi128(x3, key[14]);
        x4 = _mm512_aesenclast_epi128(x4, key[14]), x5 = _mm512_aesenclast_epi128(x5, key[14]);
        x6 = _mm512_aesenclast_epi128(x6, key[14]), x7 = _mm512_aesenclast_epi128(x7, key[14]);
        _mm512_storeu_si512(out, _mm512_xor_si512(x0, _mm512_loadu_si512(in)));
        _mm512_storeu_si512(out + 64, _mm512_xor_si512(x1, _mm512_loadu_si512(in + 64)));
        _mm512_storeu_si512(out + 128, _mm512_xor_si512(x2, _mm512_loadu_si512(in + 128)));
        _mm512_storeu_si512(out + 192, _mm512_xor_si512(x3, _mm512_loadu_si512(in + 192)));
        _mm512_storeu_si512(out + 256, _mm512_xor_si512(x4, _mm512_loadu_si512(in + 256)));
        _mm512_storeu_si512(out + 320, _mm512_xor_si512(x5, _mm512_loadu_si512(in + 320)));
        _mm512_storeu_si512(out + 384, _mm512_xor_si512(x6, _mm512_loadu_si512(in + 384)));
        _mm512_storeu_si512(out + 448, _mm512_xor_si512(x7, _mm512_loadu_si512(in + 448)));
    }
    for (; n > 0; in += 64, out += 64, n = n > 64 ? n - 64 : 0) {  /* the last 0-7 registers */
        __mmask64 mask = n >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << n) - 1);
        __m512i x = _mm512_shuffle_epi8(ctr, reverse);
        ctr = _mm512_add_epi64(ctr, four);
        AES256_ENCRYPT4(x, key);
        _mm512_mask_storeu_epi8(out, mask, _mm512_xor_si512(x, _mm512_maskz_loadu_epi8(mask, in)));
    }
    _mm256_zeroupper();
    return 1;
}

#else

struct aes256_fast_keys {
    int unused;
};

static int aes256ctr_fast_available(void)
{
    return 0;
}

static void aes256ctr_fast_keys(const unsigned char *key, struct aes256_fast_keys *k)
{
    (void)key;
    (void)k;
}

static int aes256ctr_fast(const struct aes256_fast_keys *k, const unsigned char *iv, uint64_t block,
                          const unsigned char *in, unsigned char *out, size_t n)
{
    (void)k, (void)iv, (void)block, (void)in, (void)out, (void)n;
    return 0;
}

#endif
#endif
