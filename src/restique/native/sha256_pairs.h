/*
 * SHA-256 of several messages, two at a time on the SHA extensions (SHA-NI), for _seal.
 *
 * A SHA-NI round instruction waits for the one before it, so one message keeps the unit
 * half idle: interleaving two independent messages' rounds hashes ~1.5x the bytes per second
 * of OpenSSL's one-message code (2.4-2.8 against 1.7 GB/s on the bench machine's cores).
 * Restic's work has many independent messages to hash at once: every blob of a pack range
 * (restore, check --read-data, dump), and a pack file beside its blobs.
 *
 * sha256_pairs() keeps two lanes busy: when a lane's message runs out of whole blocks, its
 * tail is finished on its own and the lane takes the next message. Where the CPU or the
 * compiler lacks SHA-NI, sha256_pairs_available() is 0 and nothing else here is called;
 * _seal checks this path against the library at import.
 */
#ifndef RESTIQUE_SHA256_PAIRS_H
#define RESTIQUE_SHA256_PAIRS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#define SHA256_PAIRS 1
#include <immintrin.h>

#include "sha256_constants.h"

/* SHA-NI's instructions exist only in the legacy SSE encoding: run while the upper halves of
   the AVX registers hold something (left by other code of the process), they wait on those
   (3.2 -> 1.3 GB/s here). Where the CPU has AVX, sha256_pairs clears them first. */
static int sha256_pairs_clear_upper;

static int sha256_pairs_available(void)
{
    __builtin_cpu_init();
    sha256_pairs_clear_upper = __builtin_cpu_supports("avx");
    return __builtin_cpu_supports("sha") && __builtin_cpu_supports("sse4.1") && __builtin_cpu_supports("ssse3");
}

__attribute__((target("avx"))) static void sha256_pairs_zeroupper(void)
{
    _mm256_zeroupper();
}


/* A message being hashed: its state in SHA-NI's register order (ABEF, CDGH), the whole
   blocks left, and where its tail and digest are. */
struct sha256_lane {
    __m128i abef, cdgh;
    const unsigned char *at;
    size_t blocks;
    const unsigned char *msg;
    size_t len;
    unsigned char *out;
};

/* The next four message words of a block: the first four groups load them, the others
   extend the schedule from the four before (W[t] from W[t-16], W[t-15], W[t-7], W[t-2]). */
#define SHA256_PAIRS_WORDS(X, i, p, mask)                                                        \
    ((i) < 4 ? _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + 16 * (i))), mask)       \
             : _mm_sha256msg2_epu32(                                                             \
                   _mm_add_epi32(_mm_sha256msg1_epu32(X[(i) & 3], X[((i) + 1) & 3]),             \
                                 _mm_alignr_epi8(X[((i) + 3) & 3], X[((i) + 2) & 3], 4)),        \
                   X[((i) + 3) & 3]))

__attribute__((target("sha,sse4.1,ssse3"))) static void sha256_blocks_one(struct sha256_lane *l,
                                                                        const unsigned char *p,
                                                                        size_t blocks)
{
    const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i a = l->abef, c = l->cdgh;
    for (; blocks; blocks--, p += 64) {
        __m128i sa = a, sc = c, X[4];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            __m128i x = SHA256_PAIRS_WORDS(X, i, p, mask);
            X[i & 3] = x;
            __m128i m = _mm_add_epi32(x, _mm_loadu_si128((const __m128i *)(SHA256_ROUND_CONSTANTS + 4 * i)));
            c = _mm_sha256rnds2_epu32(c, a, m);
            a = _mm_sha256rnds2_epu32(a, c, _mm_shuffle_epi32(m, 0x0E));
        }
        a = _mm_add_epi32(a, sa);
        c = _mm_add_epi32(c, sc);
    }
    l->abef = a;
    l->cdgh = c;
}

/* blocks whole blocks of both lanes, their rounds interleaved. */
__attribute__((target("sha,sse4.1,ssse3"))) static void sha256_blocks_two(struct sha256_lane *l,
                                                                        struct sha256_lane *r,
                                                                        size_t blocks)
{
    const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    const unsigned char *p = l->at, *q = r->at;
    __m128i a = l->abef, c = l->cdgh, b = r->abef, d = r->cdgh;
    for (size_t n = blocks; n; n--, p += 64, q += 64) {
        __m128i sa = a, sc = c, sb = b, sd = d, X[4], Y[4];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            __m128i x = SHA256_PAIRS_WORDS(X, i, p, mask);
            __m128i y = SHA256_PAIRS_WORDS(Y, i, q, mask);
            X[i & 3] = x;
            Y[i & 3] = y;
            __m128i k = _mm_loadu_si128((const __m128i *)(SHA256_ROUND_CONSTANTS + 4 * i));
            __m128i m = _mm_add_epi32(x, k), o = _mm_add_epi32(y, k);
            c = _mm_sha256rnds2_epu32(c, a, m);
            d = _mm_sha256rnds2_epu32(d, b, o);
            a = _mm_sha256rnds2_epu32(a, c, _mm_shuffle_epi32(m, 0x0E));
            b = _mm_sha256rnds2_epu32(b, d, _mm_shuffle_epi32(o, 0x0E));
        }
        a = _mm_add_epi32(a, sa);
        c = _mm_add_epi32(c, sc);
        b = _mm_add_epi32(b, sb);
        d = _mm_add_epi32(d, sd);
    }
    l->abef = a;
    l->cdgh = c;
    r->abef = b;
    r->cdgh = d;
    l->at = p;
    r->at = q;
    l->blocks -= blocks;
    r->blocks -= blocks;
}

__attribute__((target("sha,sse4.1,ssse3"))) static void sha256_lane_start(struct sha256_lane *l,
                                                                        const unsigned char *msg,
                                                                        size_t len, unsigned char *out)
{
    static const uint32_t H[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    __m128i dcba = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)H), 0xB1);      /* CDAB */
    __m128i hgfe = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(H + 4)), 0x1B); /* EFGH */
    l->abef = _mm_alignr_epi8(dcba, hgfe, 8);
    l->cdgh = _mm_blend_epi16(hgfe, dcba, 0xF0);
    l->at = msg;
    l->blocks = len / 64;
    l->msg = msg;
    l->len = len;
    l->out = out;
}

/* The lane's last bytes and padding (one or two blocks), then its digest. */
__attribute__((target("sha,sse4.1,ssse3"))) static void sha256_lane_finish(struct sha256_lane *l)
{
    unsigned char tail[128] = {0};
    size_t rest = l->len % 64, n = rest < 56 ? 64 : 128;
    memcpy(tail, l->msg + (l->len - rest), rest);
    tail[rest] = 0x80;
    uint64_t bits = (uint64_t)l->len * 8;
    for (int i = 0; i < 8; i++)
        tail[n - 1 - i] = (unsigned char)(bits >> (8 * i));
    sha256_blocks_one(l, tail, n / 64);
    __m128i feba = _mm_shuffle_epi32(l->abef, 0x1B), dchg = _mm_shuffle_epi32(l->cdgh, 0xB1);
    uint32_t h[8];
    _mm_storeu_si128((__m128i *)h, _mm_blend_epi16(feba, dchg, 0xF0));     /* DCBA */
    _mm_storeu_si128((__m128i *)(h + 4), _mm_alignr_epi8(dchg, feba, 8)); /* HGFE */
    for (int i = 0; i < 8; i++) {
        l->out[4 * i] = (unsigned char)(h[i] >> 24);
        l->out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        l->out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        l->out[4 * i + 3] = (unsigned char)h[i];
    }
}

/* The first message from next on that is there (not NULL), or n. */
static size_t sha256_present(size_t n, const unsigned char *const *msgs, size_t next)
{
    while (next < n && msgs[next] == NULL)
        next++;
    return next;
}

/* outs + 32 * i = SHA-256(msgs[i], lens[i]) for i < n; a NULL message is skipped (its out is
   left as it is). */
static void sha256_pairs(size_t n, const unsigned char *const *msgs, const size_t *lens, unsigned char *outs)
{
    struct sha256_lane lane[2];
    int busy[2] = {0, 0};
    size_t next = sha256_present(n, msgs, 0);
    if (sha256_pairs_clear_upper)
        sha256_pairs_zeroupper();
    for (int i = 0; i < 2 && next < n; i++, next = sha256_present(n, msgs, next + 1)) {
        sha256_lane_start(&lane[i], msgs[next], lens[next], outs + 32 * next);
        busy[i] = 1;
    }
    while (busy[0] && busy[1]) {
        size_t both = lane[0].blocks < lane[1].blocks ? lane[0].blocks : lane[1].blocks;
        if (both)
            sha256_blocks_two(&lane[0], &lane[1], both);
        for (int i = 0; i < 2; i++) {
            if (lane[i].blocks)
                continue;
            sha256_lane_finish(&lane[i]);
            busy[i] = next < n;
            if (busy[i]) {
                sha256_lane_start(&lane[i], msgs[next], lens[next], outs + 32 * next);
                next = sha256_present(n, msgs, next + 1);
            }
        }
    }
    for (int i = 0; i < 2; i++) {
        if (!busy[i])
            continue;
        sha256_blocks_one(&lane[i], lane[i].at, lane[i].blocks);
        sha256_lane_finish(&lane[i]);
    }
}

#else
static int sha256_pairs_available(void) { return 0; }
static void sha256_pairs(size_t n, const unsigned char *const *msgs, const size_t *lens, unsigned char *outs)
{
    (void)n, (void)msgs, (void)lens, (void)outs;
}
#endif

#endif
