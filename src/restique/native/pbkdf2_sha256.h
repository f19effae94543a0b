/*
 * PBKDF2-HMAC-SHA256 with one iteration (RFC 8018, FIPS 180-4), all scrypt needs around its
 * ROMix. Our own instead of OpenSSL's so that restique._kdf does not load libcrypto and set up
 * OpenSSL first: that took about 5 ms of the time before a command's key derivation can start,
 * and the derivation is a command's longest step.
 *
 * Included by _kdf.c only (static functions).
 */
#ifndef RESTIQUE_PBKDF2_SHA256_H
#define RESTIQUE_PBKDF2_SHA256_H

#include <stdint.h>
#include <string.h>

#include "sha256_constants.h"

#define SHA256_BLOCK 64
#define SHA256_DIGEST 32

struct sha256 {
    uint32_t state[8];
    uint64_t length; /* bytes absorbed */
    unsigned char buffer[SHA256_BLOCK];
    size_t buffered;
};


#define SHA256_ROTR(v, k) (((v) >> (k)) | ((v) << (32 - (k))))

static void sha256_compress(uint32_t state[8], const unsigned char block[SHA256_BLOCK])
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
               (uint32_t)block[4 * i + 2] << 8 | (uint32_t)block[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = SHA256_ROTR(w[i - 15], 7) ^ SHA256_ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = SHA256_ROTR(w[i - 2], 17) ^ SHA256_ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (SHA256_ROTR(e, 6) ^ SHA256_ROTR(e, 11) ^ SHA256_ROTR(e, 25)) +
                      ((e & f) ^ (~e & g)) + SHA256_ROUND_CONSTANTS[i] + w[i];
        uint32_t t2 = (SHA256_ROTR(a, 2) ^ SHA256_ROTR(a, 13) ^ SHA256_ROTR(a, 22)) +
                      ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

static void sha256_init(struct sha256 *ctx)
{
    static const uint32_t initial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(ctx->state, initial, sizeof(initial));
    ctx->length = 0;
    ctx->buffered = 0;
}

static void sha256_update(struct sha256 *ctx, const unsigned char *data, size_t len)
{
    ctx->length += len;
    if (ctx->buffered) {
        size_t take = SHA256_BLOCK - ctx->buffered < len ? SHA256_BLOCK - ctx->buffered : len;
        memcpy(ctx->buffer + ctx->buffered, data, take);
        ctx->buffered += take;
        data += take;
        len -= take;
        if (ctx->buffered < SHA256_BLOCK)
            return;
        sha256_compress(ctx->state, ctx->buffer);
        ctx->buffered = 0;
    }
    for (; len >= SHA256_BLOCK; data += SHA256_BLOCK, len -= SHA256_BLOCK)
        sha256_compress(ctx->state, data);
    memcpy(ctx->buffer, data, len);
    ctx->buffered = len;
}

static void sha256_final(struct sha256 *ctx, unsigned char digest[SHA256_DIGEST])
{
    uint64_t bits = ctx->length * 8;
    unsigned char pad[SHA256_BLOCK + 8] = {0x80};
    size_t padlen = (ctx->buffered < 56 ? 56 : 120) - ctx->buffered;
    for (int i = 0; i < 8; i++)
        pad[padlen + i] = (unsigned char)(bits >> (56 - 8 * i));
    sha256_update(ctx, pad, padlen + 8);
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (unsigned char)(ctx->state[i] >> 24);
        digest[4 * i + 1] = (unsigned char)(ctx->state[i] >> 16);
        digest[4 * i + 2] = (unsigned char)(ctx->state[i] >> 8);
        digest[4 * i + 3] = (unsigned char)ctx->state[i];
    }
}

/* out = PBKDF2-HMAC-SHA256(pass, salt, 1 iteration, outlen bytes) */
static void pbkdf2_sha256_once(const unsigned char *pass, size_t passlen, const unsigned char *salt,
                               size_t saltlen, unsigned char *out, size_t outlen)
{
    unsigned char key[SHA256_BLOCK] = {0}, pad[SHA256_BLOCK], digest[SHA256_DIGEST];
    struct sha256 inner, outer, ctx;
    if (passlen > SHA256_BLOCK) { /* HMAC: a long key is hashed first */
        sha256_init(&ctx);
        sha256_update(&ctx, pass, passlen);
        sha256_final(&ctx, key);
    } else {
        memcpy(key, pass, passlen);
    }
    for (int i = 0; i < SHA256_BLOCK; i++)
        pad[i] = key[i] ^ 0x36;
    sha256_init(&inner);
    sha256_update(&inner, pad, SHA256_BLOCK);
    for (int i = 0; i < SHA256_BLOCK; i++)
        pad[i] = key[i] ^ 0x5c;
    sha256_init(&outer);
    sha256_update(&outer, pad, SHA256_BLOCK);
    for (uint32_t index = 1; outlen > 0; index++) {
        unsigned char counter[4] = {(unsigned char)(index >> 24), (unsigned char)(index >> 16),
                                    (unsigned char)(index >> 8), (unsigned char)index};
        ctx = inner;
        sha256_update(&ctx, salt, saltlen);
        sha256_update(&ctx, counter, 4);
        sha256_final(&ctx, digest);
        ctx = outer;
        sha256_update(&ctx, digest, SHA256_DIGEST);
        sha256_final(&ctx, digest);
        size_t take = outlen < SHA256_DIGEST ? outlen : SHA256_DIGEST;
        memcpy(out, digest, take);
        out += take;
        outlen -= take;
    }
    /* the padded key and the HMAC states are the password in all but name */
    explicit_bzero(key, sizeof(key));
    explicit_bzero(pad, sizeof(pad));
    explicit_bzero(digest, sizeof(digest));
    explicit_bzero(&inner, sizeof(inner));
    explicit_bzero(&outer, sizeof(outer));
    explicit_bzero(&ctx, sizeof(ctx));
}

#endif
