/*
 * restique._seal: restic's blob sealing in one call that does not hold the GIL.
 *
 * seal:  [zstd compress] -> AES-256-CTR with a random IV -> Poly1305-AES MAC over the
 *        ciphertext, then decode the result again and compare it with the input.
 * open:  check the MAC in constant time -> decrypt -> [zstd decompress].
 *
 * Format (restic's): IV(16) || ciphertext || MAC(16). The Poly1305 key is r || AES-128_k(IV),
 * r clamped. A backup seals one blob per small file, so the Python-level cost of building
 * cipher objects per blob (and of giving up and retaking the GIL in several library calls)
 * dominated; here each blob costs one GIL release.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zstd.h>

#include "aes256_ctr.h"
#include "sha256_pairs.h"

#define IV_SIZE 16
#define MAC_SIZE 16
#define OVERHEAD (IV_SIZE + MAC_SIZE)

static PyObject *SealError;
static int fast_sha;  /* sha256_pairs agreed with the library at import */

/* Fetched once: implicit fetches on every call cost more than the work on small blobs. */
static EVP_CIPHER *aes256ctr;
static EVP_CIPHER *aes128ecb;
static EVP_MAC *poly1305;

/* Opening (and decompressing) fewer bytes than this is done holding the GIL: giving the GIL
 * up is cheap, but taking it back waits while another thread runs Python (up to the 5 ms
 * switch interval), for work of a few microseconds on a small tree. Sealing always lets go of
 * it: compressing a tree takes long enough that the other threads' Python (a backup's walk)
 * gains more than the sealing thread loses. */
#define GIL_RELEASE_MIN (64 * 1024)

static inline PyThreadState *release_gil_for(size_t bytes)
{
    return bytes >= GIL_RELEASE_MIN ? PyEval_SaveThread() : NULL;
}

static inline void take_gil_back(PyThreadState *released)
{
    if (released != NULL)
        PyEval_RestoreThread(released);
}

/* zstd contexts are expensive to create; keep one of each per thread. */
static __thread ZSTD_CCtx *tls_cctx;
static __thread ZSTD_DCtx *tls_dctx;

/* Whether AES-256-CTR runs on 512-bit registers here (aes256_ctr.h): set at import, once the
 * path agreed with the library (fast_ctr_agrees). */
static int fast_ctr;

static int ctr_crypt_library(const unsigned char *key32, const unsigned char *iv, const unsigned char *in,
                             size_t n, unsigned char *out);

static int ctr_crypt(const unsigned char *key32, const unsigned char *iv, const unsigned char *in,
                     size_t n, unsigned char *out)
{
    if (fast_ctr) {
        struct aes256_fast_keys keys;
        aes256ctr_fast_keys(key32, &keys);
        int done = aes256ctr_fast(&keys, iv, 0, in, out, n);
        OPENSSL_cleanse(&keys, sizeof keys);
        if (done)
            return 1;
    }
    return ctr_crypt_library(key32, iv, in, n, out);
}

static int ctr_crypt_library(const unsigned char *key32, const unsigned char *iv, const unsigned char *in,
                             size_t n, unsigned char *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int ok = ctx != NULL;
    int len = 0, fin = 0;
    size_t done = 0;
    ok = ok && EVP_EncryptInit_ex2(ctx, aes256ctr, key32, iv, NULL);
    /* EVP takes int lengths; blobs are below 2 GiB but loop to be safe */
    while (ok && done < n) {
        size_t step = n - done > (1u << 30) ? (1u << 30) : n - done;
        ok = EVP_EncryptUpdate(ctx, out + done, &len, in + done, (int)step);
        done += (size_t)len;
    }
    ok = ok && EVP_EncryptFinal_ex(ctx, out + done, &fin);
    EVP_CIPHER_CTX_free(ctx);
    return ok && done == n;
}

static int poly1305_aes(const unsigned char *mac_k, const unsigned char *mac_r, const unsigned char *iv,
                        const unsigned char *msg, size_t n, unsigned char *tag)
{
    static const unsigned char mask[16] = {0xff, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f,
                                           0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f};
    unsigned char key[32];
    int len = 0, ok;
    size_t taglen = 0;
    EVP_CIPHER_CTX *ecb = EVP_CIPHER_CTX_new();
    for (int i = 0; i < 16; i++)
        key[i] = mac_r[i] & mask[i];
    ok = ecb != NULL && EVP_EncryptInit_ex2(ecb, aes128ecb, mac_k, NULL, NULL);
    ok = ok && EVP_CIPHER_CTX_set_padding(ecb, 0);
    ok = ok && EVP_EncryptUpdate(ecb, key + 16, &len, iv, 16) && len == 16;
    EVP_CIPHER_CTX_free(ecb);
    if (!ok)
        return 0;
    EVP_MAC_CTX *mctx = EVP_MAC_CTX_new(poly1305);
    ok = mctx != NULL && EVP_MAC_init(mctx, key, 32, NULL);
    ok = ok && EVP_MAC_update(mctx, msg, n);
    ok = ok && EVP_MAC_final(mctx, tag, &taglen, MAC_SIZE) && taglen == MAC_SIZE;
    EVP_MAC_CTX_free(mctx);
    OPENSSL_cleanse(key, sizeof key);
    return ok;
}

static int get_key(PyObject *obj, Py_buffer *view, Py_ssize_t size, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0)
        return 0;
    if (view->len != size) {
        PyErr_Format(PyExc_ValueError, "%s must be %zd bytes", what, size);
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

static void release_keys(Py_buffer *key, Py_buffer *mk, Py_buffer *mr)
{
    PyBuffer_Release(key);
    PyBuffer_Release(mk);
    PyBuffer_Release(mr);
}

/* The three key parts as buffers; on failure none stays acquired. */
static int get_key_parts(PyObject *ko, PyObject *mko, PyObject *mro, Py_buffer *key, Py_buffer *mk,
                         Py_buffer *mr)
{
    if (!get_key(ko, key, 32, "enc_key"))
        return 0;
    if (!get_key(mko, mk, 16, "mac_k")) {
        PyBuffer_Release(key);
        return 0;
    }
    if (!get_key(mro, mr, 16, "mac_r")) {
        PyBuffer_Release(key);
        PyBuffer_Release(mk);
        return 0;
    }
    return 1;
}

/* The three key parts and the payload as buffers; on failure nothing stays acquired. */
static int get_keys(PyObject *ko, PyObject *mko, PyObject *mro, PyObject *payload, Py_buffer *key,
                    Py_buffer *mk, Py_buffer *mr, Py_buffer *data)
{
    if (!get_key_parts(ko, mko, mro, key, mk, mr))
        return 0;
    if (PyObject_GetBuffer(payload, data, PyBUF_SIMPLE) < 0) {
        release_keys(key, mk, mr);
        return 0;
    }
    return 1;
}

struct scratch {
    unsigned char *buf[5]; /* 0: decoding a blob; 1: restore_range's window; 2, 3: seal; 4: prepare_batch */
    size_t cap[5];
};

static pthread_key_t scratch_key;
static EVP_MD *sha256_md;

static void free_scratch(void *p)
{
    struct scratch *s = p;
    for (int i = 0; i < 5; i++)
        free(s->buf[i]);
    free(s);
}

static unsigned char *scratch_get(int which, size_t n)
{
    struct scratch *s = pthread_getspecific(scratch_key);
    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL || pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (s->cap[which] < n) {
        unsigned char *p = realloc(s->buf[which], n);
        if (p == NULL)
            return NULL;
        s->buf[which] = p;
        s->cap[which] = n;
    }
    return s->buf[which];
}

/* seal's scratch buffers grow to the largest chunk seen; past this they are given back, so a
 * few 8 MiB chunks do not pin memory in every saver thread for the rest of the process. */
#define SCRATCH_KEEP (4u << 20)

/* restore_range and open_range decode this many bytes of plaintext (or one blob) before they
 * check the ids of the blobs decoded, two hashed at a time, while they are in the cache. */
#define OPEN_WINDOW (1u << 20)

/* prepare_batch's room for the compressed copies of a batch of small files (4 MiB and one
 * more file at most): kept up to this size. */
#define BATCH_SCRATCH_KEEP (8u << 20)

static void scratch_trim(int which)
{
    struct scratch *s = pthread_getspecific(scratch_key);
    if (s != NULL && s->cap[which] > (which == 4 ? BATCH_SCRATCH_KEEP : SCRATCH_KEEP)) {
        free(s->buf[which]);
        s->buf[which] = NULL;
        s->cap[which] = 0;
    }
}

/* What prepare() left for seal_into() (below); anything else that uses scratch slot 2
 * clears it. */
struct prepared {
    const void *data;       /* the input prepare saw, and its length */
    size_t n;
    size_t payload;         /* bytes to encrypt */
    int compressed;         /* the payload is the scratch buffer's compressed copy */
    int ready;
};
static __thread struct prepared tls_prepared;

/* Whether zstd may save space on data: samples spread over all of it (SAMPLE bytes of every
 * SAMPLE_STRIDE) are compressed together at level 1, and the full attempt is made unless they
 * save nothing. Random data never compresses, so this skips ~7/8 of zstd's work per byte
 * there; any compressible stretch longer than a stride (text, zeros, a half-random chunk)
 * shows in the samples, so such a chunk is still compressed. Short data is always tried. */
#define SAMPLE 4096
#define SAMPLE_STRIDE (32 * 1024)
#define SAMPLED_FROM (2 * SAMPLE_STRIDE)

static int may_compress(const unsigned char *data, size_t n, const char **failure)
{
    tls_prepared.ready = 0;
    if (n < SAMPLED_FROM)
        return 1;
    size_t count = (n - SAMPLE) / SAMPLE_STRIDE + 1, s = count * SAMPLE;
    size_t bound = ZSTD_compressBound(s);
    unsigned char *samples = scratch_get(2, s + bound);
    if (samples == NULL) {
        *failure = "out of memory";
        return 0;
    }
    for (size_t i = 0; i < count; i++)  /* the last sample ends at the data's end */
        memcpy(samples + i * SAMPLE, data + (i + 1 == count ? n - SAMPLE : i * SAMPLE_STRIDE), SAMPLE);
    size_t got = ZSTD_compressCCtx(tls_cctx, samples + s, bound, samples, s, 1);
    /* an incompressible frame is the input plus block headers: > s. A saving under 1/256 of
     * the samples would not pay for the full attempt's time either. */
    return ZSTD_isError(got) || got + s / 256 < s;
}

/* Compress data into packed (room for ZSTD_compressBound(n) bytes) and check that it decodes
 * to data again (a compression bug must never reach the repository): the compressed length,
 * or 0 when it is not kept (no saving and not always). */
static size_t compress_checked(const unsigned char *data, size_t n, int level, int always,
                               unsigned char *packed, const char **failure)
{
    size_t got = ZSTD_compressCCtx(tls_cctx, packed, ZSTD_compressBound(n), data, n, level);
    if (ZSTD_isError(got)) {
        *failure = "zstd compression failed";
        return 0;
    }
    if (got >= n && !always)
        return 0;
    unsigned char *plain = scratch_get(3, n);
    if (tls_dctx == NULL)
        tls_dctx = ZSTD_createDCtx();
    size_t back = plain && tls_dctx ? ZSTD_decompressDCtx(tls_dctx, plain, n, packed, got) : 0;
    if (plain == NULL || tls_dctx == NULL)
        *failure = "out of memory";
    else if (ZSTD_isError(back) || back != n || memcmp(plain, data, n) != 0)
        *failure = "sealed blob did not decode to its content";
    scratch_trim(3);
    return *failure ? 0 : got;
}

/* Whether zstd is tried on data at level (0: stored as is); sets *failure when it cannot be. */
static int worth_compressing(const unsigned char *data, size_t n, int level, int always, const char **failure)
{
    if (level <= 0 || n == 0)
        return 0;
    if (tls_cctx == NULL)
        tls_cctx = ZSTD_createCCtx();
    if (tls_cctx == NULL) {
        *failure = "out of memory";
        return 0;
    }
    return always || may_compress(data, n, failure);
}

/* The payload to encrypt for data (without the GIL): data itself, or its compressed copy in
 * scratch slot 2 when level > 0 and compression saves space (with always, whatever its size).
 * Sets *src, *payload and *ulen (0: stored uncompressed); returns NULL or what failed. */
static const char *choose_payload(const unsigned char *data, size_t n, int level, int always,
                                  const unsigned char **src, size_t *payload, size_t *ulen)
{
    const char *failure = NULL;
    *src = data;
    *payload = n;
    *ulen = 0;
    if (!worth_compressing(data, n, level, always, &failure))
        return failure;
    tls_prepared.ready = 0;
    unsigned char *packed = scratch_get(2, ZSTD_compressBound(n));
    if (packed == NULL)
        return "out of memory";
    size_t got = compress_checked(data, n, level, always, packed, &failure);
    if (got) {
        *src = packed;
        *payload = got;
        *ulen = n;
    }
    return failure;
}

/* Checked once at import: AES-256-CTR (NIST SP 800-38A F.5.5), AES-128 (FIPS-197 C.1) and
 * Poly1305 (RFC 8439 2.5.2) give their published answers. seal() does not decrypt what it
 * encrypted again: CTR decryption is the same keystream XOR as encryption, so a library that
 * computes a wrong keystream would pass such a round trip while restic could not read the
 * blob. A known-answer test catches exactly that; compressed blobs are still decoded and
 * compared (compress_checked), as compression is where a content bug could hide. */
static int primitives_ok;

static int known_answers(void)
{
    static const unsigned char ctr_key[32] = {
        0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d, 0x77, 0x81,
        0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4};
    static const unsigned char ctr_iv[16] = {0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7,
                                             0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff};
    static const unsigned char ctr_in[32] = {
        0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93, 0x17, 0x2a,
        0xae, 0x2d, 0x8a, 0x57, 0x1e, 0x03, 0xac, 0x9c, 0x9e, 0xb7, 0x6f, 0xac, 0x45, 0xaf, 0x8e, 0x51};
    static const unsigned char ctr_out[32] = {
        0x60, 0x1e, 0xc3, 0x13, 0x77, 0x57, 0x89, 0xa5, 0xb7, 0xa7, 0xf5, 0x04, 0xbb, 0xf3, 0xd2, 0x28,
        0xf4, 0x43, 0xe3, 0xca, 0x4d, 0x62, 0xb5, 0x9a, 0xca, 0x84, 0xe9, 0x90, 0xca, 0xca, 0xf5, 0xc5};
    static const unsigned char ecb_in[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                             0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    static const unsigned char ecb_out[16] = {0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30,
                                              0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a};
    static const unsigned char poly_key[32] = {
        0x85, 0xd6, 0xbe, 0x78, 0x57, 0x55, 0x6d, 0x33, 0x7f, 0x44, 0x52, 0xfe, 0x42, 0xd5, 0x06, 0xa8,
        0x01, 0x03, 0x80, 0x8a, 0xfb, 0x0d, 0xb2, 0xfd, 0x4a, 0xbf, 0xf6, 0xaf, 0x41, 0x49, 0xf5, 0x1b};
    static const unsigned char poly_tag[16] = {0xa8, 0x06, 0x1d, 0xc1, 0x30, 0x51, 0x36, 0xc6,
                                               0xc2, 0x2b, 0x8b, 0xaf, 0x0c, 0x01, 0x27, 0xa9};
    static const char poly_msg[] = "Cryptographic Forum Research Group";
    unsigned char out[32], ecb_key[16], tag[16];
    int len = 0, ok;
    size_t taglen = 0;
    if (!ctr_crypt(ctr_key, ctr_iv, ctr_in, sizeof ctr_in, out) || memcmp(out, ctr_out, sizeof out) != 0)
        return 0;
    for (int i = 0; i < 16; i++)
        ecb_key[i] = (unsigned char)i;
    EVP_CIPHER_CTX *ecb = EVP_CIPHER_CTX_new();
    ok = ecb != NULL && EVP_EncryptInit_ex2(ecb, aes128ecb, ecb_key, NULL, NULL);
    ok = ok && EVP_CIPHER_CTX_set_padding(ecb, 0);
    ok = ok && EVP_EncryptUpdate(ecb, out, &len, ecb_in, 16) && len == 16 && memcmp(out, ecb_out, 16) == 0;
    EVP_CIPHER_CTX_free(ecb);
    EVP_MAC_CTX *mctx = ok ? EVP_MAC_CTX_new(poly1305) : NULL;
    ok = mctx != NULL && EVP_MAC_init(mctx, poly_key, 32, NULL);
    ok = ok && EVP_MAC_update(mctx, (const unsigned char *)poly_msg, sizeof poly_msg - 1);
    ok = ok && EVP_MAC_final(mctx, tag, &taglen, 16) && taglen == 16 && memcmp(tag, poly_tag, 16) == 0;
    EVP_MAC_CTX_free(mctx);
    return ok;
}

/* Whether the two-lane SHA-256 gives the library's digests: messages of lengths around the
 * block and padding sizes, paired with shorter, equal and longer ones, some skipped (NULL:
 * their digests left alone), and a lone one. Checked once at import. */
static int fast_sha_agrees(void)
{
    enum { MAX = 3 * 64 + 57, COUNT = 24 };
    static unsigned char in[MAX + 64];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (unsigned char)(i * 167 + 11);
    const unsigned char *msgs[COUNT];
    size_t lens[COUNT];
    unsigned char got[COUNT * 32], want[32];
    static const size_t lengths[] = {0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, MAX};
    enum { L = sizeof lengths / sizeof lengths[0] };
    for (int round = 0; round < 3; round++) {
        size_t n = round == 2 ? 1 : COUNT;
        for (size_t i = 0; i < n; i++) {
            lens[i] = lengths[(i * (round + 1) + round * 5) % L];
            msgs[i] = round == 1 && i % 5 < 2 ? NULL : in + (i * 7) % 64;
        }
        memset(got, 0xAB, sizeof got);
        sha256_pairs(n, msgs, lens, got);
        for (size_t i = 0; i < n; i++) {
            unsigned int dlen = 0;
            if (msgs[i] == NULL) {
                memset(want, 0xAB, 32);
            } else if (!EVP_Digest(msgs[i], lens[i], want, &dlen, sha256_md, NULL) || dlen != 32) {
                return 0;
            }
            if (memcmp(want, got + 32 * i, 32) != 0)
                return 0;
        }
    }
    return 1;
}

/* Whether the 512-bit AES-256-CTR gives the library's keystream: over lengths around its
 * register and loop sizes, from several counters, and from a block offset (sealing goes on
 * from one). Checked once at import, before known_answers (which then checks it too). */
static int fast_ctr_agrees(void)
{
    enum { MAX = 4 * 512 + 77 };  /* four of the fast loop's 512-byte steps and a tail */
    static unsigned char in[MAX], fast[MAX], slow[MAX];
    unsigned char key[32], iv[16], moved[16];
    for (size_t i = 0; i < MAX; i++)
        in[i] = (unsigned char)(i * 131 + 7);
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)(i * 29 + 3);
    struct aes256_fast_keys keys;
    aes256ctr_fast_keys(key, &keys);
    static const size_t lengths[] = {0, 1, 15, 16, 17, 63, 64, 65, 511, 512, 513, 1000, MAX};
    int ok = 1;
    for (int v = 0; ok && v < 256; v += 37) {
        for (int i = 0; i < 16; i++)
            iv[i] = (unsigned char)(v + i * 17);
        iv[8] = 0x7f;  /* far from wrapping: both paths must count alike */
        for (size_t l = 0; ok && l < sizeof lengths / sizeof lengths[0]; l++) {
            size_t n = lengths[l];
            ok = aes256ctr_fast(&keys, iv, 0, in, fast, n) && ctr_crypt_library(key, iv, in, n, slow)
                 && memcmp(fast, slow, n) == 0;
        }
        /* from block 3 on: the library's stream from the IV plus 3 */
        memcpy(moved, iv, 16);
        for (int i = 15, carry = 3; i >= 0 && carry; i--) {
            int sum = moved[i] + carry;
            moved[i] = (unsigned char)sum;
            carry = sum >> 8;
        }
        ok = ok && aes256ctr_fast(&keys, iv, 3, in, fast, 700) && ctr_crypt_library(key, moved, in, 700, slow)
             && memcmp(fast, slow, 700) == 0;
    }
    OPENSSL_cleanse(&keys, sizeof keys);
    return ok;
}

/* seal(enc_key, mac_k, mac_r, data, level[, always]) -> (sealed: bytes, uncompressed_length: int)
 * level 0 stores uncompressed; otherwise the zstd level, kept only when it saves space
 * unless always is true (restic stores every tree blob of format 2 compressed). */
static PyObject *seal(PyObject *self, PyObject *args)
{
    PyObject *ko, *mko, *mro, *datao;
    int level, always = 0;
    if (!PyArg_ParseTuple(args, "OOOOi|p", &ko, &mko, &mro, &datao, &level, &always))
        return NULL;
    if (!primitives_ok) {
        PyErr_SetString(SealError, "the crypto library failed its known-answer test");
        return NULL;
    }
    Py_buffer key, mk, mr, data;
    if (!get_keys(ko, mko, mro, datao, &key, &mk, &mr, &data))
        return NULL;
    tls_prepared.ready = 0;  /* its scratch may be trimmed below */
    size_t n = (size_t)data.len;
    /* room for the data as is; compressed output is only kept when smaller, except for
     * `always`, which may need zstd's bound. Shrinking the result later does not copy. */
    size_t room = level > 0 && always ? ZSTD_compressBound(n) : 0;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(OVERHEAD + (room > n ? room : n)));
    const char *failure = NULL;
    size_t ulen = 0, payload = n;
    if (out != NULL) {
        unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS  /* always: compressing even a small tree takes a while */
        const unsigned char *src;
        failure = choose_payload(data.buf, n, level, always, &src, &payload, &ulen);
        if (!failure && RAND_bytes(o, IV_SIZE) != 1)
            failure = "no random bytes for the IV";
        if (!failure && !ctr_crypt(key.buf, o, src, payload, o + IV_SIZE))
            failure = "encryption failed";
        if (!failure && !poly1305_aes(mk.buf, mr.buf, o, o + IV_SIZE, payload, o + IV_SIZE + payload))
            failure = "MAC computation failed";
        scratch_trim(2);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&mk);
    PyBuffer_Release(&mr);
    PyBuffer_Release(&data);
    if (out == NULL)
        return NULL;
    if (failure) {
        Py_DECREF(out);
        PyErr_SetString(SealError, failure);
        return NULL;
    }
    if ((size_t)PyBytes_GET_SIZE(out) != OVERHEAD + payload && _PyBytes_Resize(&out, (Py_ssize_t)(OVERHEAD + payload)) < 0)
        return NULL;
    return Py_BuildValue("(Nn)", out, (Py_ssize_t)ulen);
}

/* --- sealing into a caller's buffer, in two steps -------------------------------------------
 * A pack being filled keeps its blobs in one reused buffer; a blob's exact sealed length is
 * only known once compression was tried, and its place in the pack must be taken (under the
 * store's lock) before it is written there. So:
 *   prepare(data, level[, always]) -> (payload length, uncompressed length or 0)
 *       tries compression (checked to decode to data) and keeps the compressed payload in this
 *       thread's scratch buffer;
 *   seal_into(enc_key, mac_k, mac_r, data, out) seals the prepared payload into out (exactly
 *       payload length + 32 bytes): IV, AES-256-CTR ciphertext, Poly1305-AES tag.
 * A thread's seal_into must follow its own prepare of the same data; it is refused otherwise.
 * prepare_batch and seal_batch do the same for many blobs (a directory's small files) in one
 * call each. */

#define SEAL_BLOCK (64 * 1024)

/* The cipher and MAC contexts of one sealing call, set up once for all its blobs: making
 * them costs more than sealing a small file's blob. */
struct sealer {
    EVP_CIPHER_CTX *ecb;  /* AES-128 with mac_k: the Poly1305 key's second half from the IV */
    EVP_CIPHER_CTX *ctr;  /* AES-256-CTR with the encryption key; each blob sets its IV */
    EVP_MAC_CTX *mac;
    unsigned char r[16];  /* mac_r, clamped */
    struct aes256_fast_keys fast;  /* the encryption key's round keys, when fast_ctr */
};

static void sealer_free(struct sealer *s)
{
    EVP_CIPHER_CTX_free(s->ecb);
    EVP_CIPHER_CTX_free(s->ctr);
    EVP_MAC_CTX_free(s->mac);
    OPENSSL_cleanse(s->r, sizeof s->r);
    OPENSSL_cleanse(&s->fast, sizeof s->fast);
}

static int sealer_init(struct sealer *s, const unsigned char *key32, const unsigned char *mac_k,
                       const unsigned char *mac_r)
{
    static const unsigned char mask[16] = {0xff, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f,
                                           0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f};
    for (int i = 0; i < 16; i++)
        s->r[i] = mac_r[i] & mask[i];
    s->ecb = EVP_CIPHER_CTX_new();
    s->ctr = EVP_CIPHER_CTX_new();
    s->mac = EVP_MAC_CTX_new(poly1305);
    int ok = s->ecb != NULL && s->ctr != NULL && s->mac != NULL;
    ok = ok && EVP_EncryptInit_ex2(s->ecb, aes128ecb, mac_k, NULL, NULL);
    ok = ok && EVP_CIPHER_CTX_set_padding(s->ecb, 0);
    ok = ok && EVP_EncryptInit_ex2(s->ctr, aes256ctr, key32, NULL, NULL);
    if (fast_ctr)
        aes256ctr_fast_keys(key32, &s->fast);
    if (!ok)
        sealer_free(s);
    return ok;
}

/* Seal n bytes of in into out (n + OVERHEAD bytes): a random IV, the AES-256-CTR ciphertext
 * and its Poly1305-AES tag. The ciphertext is MACed block by block as it is written, while
 * the block is in cache. */
static int ctr_poly_into(struct sealer *s, const unsigned char *in, size_t n, unsigned char *out)
{
    unsigned char polykey[32];
    unsigned char *iv = out, *ct = out + IV_SIZE;
    int len = 0, ok;
    size_t taglen = 0, done = 0;
    if (RAND_bytes(iv, IV_SIZE) != 1)
        return 0;
    memcpy(polykey, s->r, 16);
    ok = EVP_EncryptUpdate(s->ecb, polykey + 16, &len, iv, 16) && len == 16;
    ok = ok && EVP_EncryptInit_ex2(s->ctr, NULL, NULL, iv, NULL);  /* the key stays, the counter restarts */
    ok = ok && EVP_MAC_init(s->mac, polykey, 32, NULL);
    int fast = fast_ctr && aes256ctr_fast_fits(iv, n);
    while (ok && done < n) {
        size_t step = n - done > SEAL_BLOCK ? SEAL_BLOCK : n - done;
        if (fast)  /* steps are whole blocks but the last: block done / 16 goes on from the IV */
            ok = aes256ctr_fast(&s->fast, iv, done / 16, in + done, ct + done, step);
        else
            ok = EVP_EncryptUpdate(s->ctr, ct + done, &len, in + done, (int)step) && (size_t)len == step;
        ok = ok && EVP_MAC_update(s->mac, ct + done, step);
        done += step;
    }
    ok = ok && EVP_EncryptFinal_ex(s->ctr, ct + done, &len) && len == 0;
    ok = ok && EVP_MAC_final(s->mac, ct + n, &taglen, MAC_SIZE) && taglen == MAC_SIZE;
    OPENSSL_cleanse(polykey, sizeof polykey);
    return ok;
}

static PyObject *prepare(PyObject *self, PyObject *args)
{
    Py_buffer data;
    int level, always = 0;
    if (!PyArg_ParseTuple(args, "y*i|p", &data, &level, &always))
        return NULL;
    size_t n = (size_t)data.len;
    const char *failure = NULL;
    size_t payload = n, ulen = 0;
    const unsigned char *src;
    tls_prepared.ready = 0;
    if (level > 0 && n > 0) {
        Py_BEGIN_ALLOW_THREADS
        failure = choose_payload(data.buf, n, level, always, &src, &payload, &ulen);
        Py_END_ALLOW_THREADS
    }
    if (failure) {
        PyBuffer_Release(&data);
        PyErr_SetString(SealError, failure);
        return NULL;
    }
    tls_prepared = (struct prepared){data.buf, n, payload, ulen != 0, 1};
    PyBuffer_Release(&data);
    return Py_BuildValue("(nn)", (Py_ssize_t)payload, (Py_ssize_t)ulen);
}

static PyObject *seal_into(PyObject *self, PyObject *args)
{
    PyObject *ko, *mko, *mro, *datao;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "OOOOw*", &ko, &mko, &mro, &datao, &out))
        return NULL;
    if (!primitives_ok) {
        PyBuffer_Release(&out);
        PyErr_SetString(SealError, "the crypto library failed its known-answer test");
        return NULL;
    }
    Py_buffer key, mk, mr, data;
    if (!get_keys(ko, mko, mro, datao, &key, &mk, &mr, &data)) {
        PyBuffer_Release(&out);
        return NULL;
    }
    struct prepared p = tls_prepared;
    tls_prepared.ready = 0;
    const char *failure = NULL;
    if (!p.ready || p.data != data.buf || p.n != (size_t)data.len)
        failure = "seal_into without a prepare of the same data in this thread";
    else if ((size_t)out.len != p.payload + OVERHEAD)
        failure = "seal_into needs exactly the prepared length plus 32 bytes";
    if (!failure) {
        const unsigned char *src = data.buf;
        Py_BEGIN_ALLOW_THREADS
        if (p.compressed)
            src = scratch_get(2, 0);  /* still holds prepare's payload: never shrunk by a get */
        struct sealer sealer;
        if (!sealer_init(&sealer, key.buf, mk.buf, mr.buf)) {
            failure = "encryption failed";
        } else {
            if (!ctr_poly_into(&sealer, src, p.payload, out.buf))
                failure = "encryption failed";
            sealer_free(&sealer);
        }
        scratch_trim(2);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&mk);
    PyBuffer_Release(&mr);
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    if (failure) {
        PyErr_SetString(SealError, failure);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* --- sealing a batch of blobs ----------------------------------------------------------
 * prepare_batch(datas, levels) -> ([(payload length, uncompressed length or 0, compressed
 *       payload or None) or None, ...], [(index, what failed), ...])
 *   chooses each blob's payload as prepare does (zstd at its level, kept when it saves space
 *   and decodes to the blob again); a blob that failed is None, with its failure listed.
 * seal_batch(enc_key, mac_k, mac_r, [(payload, out), ...]) -> [indexes of blobs not sealed]
 *   seals each payload (the blob or its compressed copy) into its out (payload + 32 bytes).
 * Each runs without the GIL for the whole batch, so that the threads sealing a directory's
 * small files do not wait for each other's Python work between blobs. */

struct batch_blob {
    Py_buffer data;
    int level;
    size_t room;          /* where its compressed copy goes in the batch's scratch buffer */
    size_t payload, ulen;
    const char *failure;
};

static void prepare_blobs(struct batch_blob *blobs, Py_ssize_t n, unsigned char *packed)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        struct batch_blob *b = &blobs[i];
        const unsigned char *data = b->data.buf;
        size_t len = (size_t)b->data.len;
        b->payload = len;
        b->ulen = 0;
        if (!worth_compressing(data, len, b->level, 0, &b->failure))
            continue;
        size_t got = compress_checked(data, len, b->level, 0, packed + b->room, &b->failure);
        if (got) {
            b->payload = got;
            b->ulen = len;
        }
    }
}

/* The results of prepare_blobs as prepare_batch returns them. */
static PyObject *prepared_list(struct batch_blob *blobs, Py_ssize_t n, const unsigned char *packed)
{
    PyObject *results = PyList_New(n), *failures = PyList_New(0);
    for (Py_ssize_t i = 0; results != NULL && failures != NULL && i < n; i++) {
        struct batch_blob *b = &blobs[i];
        PyObject *item;
        if (b->failure) {
            PyObject *failure = Py_BuildValue("(ns)", i, b->failure);
            if (failure == NULL || PyList_Append(failures, failure) < 0) {
                Py_XDECREF(failure);
                break;
            }
            Py_DECREF(failure);
            item = Py_NewRef(Py_None);
        } else if (b->ulen) {
            item = Py_BuildValue("(nny#)", (Py_ssize_t)b->payload, (Py_ssize_t)b->ulen,
                                 packed + b->room, (Py_ssize_t)b->payload);
        } else {
            item = Py_BuildValue("(nnO)", (Py_ssize_t)b->payload, (Py_ssize_t)0, Py_None);
        }
        if (item == NULL) {
            Py_CLEAR(results);
            break;
        }
        PyList_SET_ITEM(results, i, item);
    }
    if (results == NULL || failures == NULL || PyErr_Occurred()) {
        Py_XDECREF(results);
        Py_XDECREF(failures);
        return NULL;
    }
    return Py_BuildValue("(NN)", results, failures);
}

static PyObject *prepare_batch(PyObject *self, PyObject *args)
{
    PyObject *datao, *levelso;
    if (!PyArg_ParseTuple(args, "OO", &datao, &levelso))
        return NULL;
    PyObject *datas = PySequence_Fast(datao, "prepare_batch needs a sequence of blobs");
    PyObject *levels = datas ? PySequence_Fast(levelso, "prepare_batch needs a sequence of levels") : NULL;
    PyObject *result = NULL;
    struct batch_blob *blobs = NULL;
    Py_ssize_t n = 0, acquired = 0;
    if (levels == NULL)
        goto done;
    n = PySequence_Fast_GET_SIZE(datas);
    if (PySequence_Fast_GET_SIZE(levels) != n) {
        PyErr_SetString(PyExc_ValueError, "prepare_batch needs one level per blob");
        goto done;
    }
    blobs = calloc(n ? (size_t)n : 1, sizeof *blobs);
    if (blobs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    size_t room = 0;
    for (; acquired < n; acquired++) {
        struct batch_blob *b = &blobs[acquired];
        b->level = _PyLong_AsInt(PySequence_Fast_GET_ITEM(levels, acquired));
        if (b->level == -1 && PyErr_Occurred())
            goto done;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(datas, acquired), &b->data, PyBUF_SIMPLE) < 0)
            goto done;
        b->room = room;
        if (b->level > 0)
            room += ZSTD_compressBound((size_t)b->data.len);
    }
    unsigned char *packed = NULL;
    tls_prepared.ready = 0;  /* compression below uses the scratch slot it refers to */
    Py_BEGIN_ALLOW_THREADS
    packed = scratch_get(4, room ? room : 1);
    if (packed != NULL)
        prepare_blobs(blobs, n, packed);
    Py_END_ALLOW_THREADS
    if (packed == NULL)
        PyErr_NoMemory();
    else
        result = prepared_list(blobs, n, packed);
    scratch_trim(2);
    scratch_trim(4);
done:
    for (Py_ssize_t i = 0; i < acquired; i++)
        PyBuffer_Release(&blobs[i].data);
    free(blobs);
    Py_XDECREF(datas);
    Py_XDECREF(levels);
    return result;
}

struct seal_job {
    Py_buffer payload, out;
};

static PyObject *seal_batch(PyObject *self, PyObject *args)
{
    PyObject *ko, *mko, *mro, *itemso;
    if (!PyArg_ParseTuple(args, "OOOO", &ko, &mko, &mro, &itemso))
        return NULL;
    if (!primitives_ok) {
        PyErr_SetString(SealError, "the crypto library failed its known-answer test");
        return NULL;
    }
    PyObject *items = PySequence_Fast(itemso, "seal_batch needs a sequence of (payload, out)");
    if (items == NULL)
        return NULL;
    Py_buffer key, mk, mr;
    if (!get_key_parts(ko, mko, mro, &key, &mk, &mr)) {
        Py_DECREF(items);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items), acquired = 0;
    struct seal_job *jobs = calloc(n ? (size_t)n : 1, sizeof *jobs);
    unsigned char *sealed = calloc(n ? (size_t)n : 1, 1);
    PyObject *result = NULL;
    if (jobs == NULL || sealed == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; acquired < n; acquired++) {
        struct seal_job *j = &jobs[acquired];
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(items, acquired), "y*w*", &j->payload, &j->out))
            goto done;
        if (j->out.len != j->payload.len + OVERHEAD) {
            PyBuffer_Release(&j->payload);
            PyBuffer_Release(&j->out);
            PyErr_SetString(PyExc_ValueError, "seal_batch needs each out to be its payload's length plus 32 bytes");
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    struct sealer sealer;
    if (sealer_init(&sealer, key.buf, mk.buf, mr.buf)) {
        for (Py_ssize_t i = 0; i < n; i++)
            sealed[i] = (unsigned char)ctr_poly_into(&sealer, jobs[i].payload.buf, (size_t)jobs[i].payload.len,
                                                     jobs[i].out.buf);
        sealer_free(&sealer);
    }
    Py_END_ALLOW_THREADS
    result = PyList_New(0);
    for (Py_ssize_t i = 0; result != NULL && i < n; i++) {
        if (sealed[i])
            continue;
        PyObject *index = PyLong_FromSsize_t(i);
        if (index == NULL || PyList_Append(result, index) < 0)
            Py_CLEAR(result);
        Py_XDECREF(index);
    }
done:
    for (Py_ssize_t i = 0; i < acquired; i++) {
        PyBuffer_Release(&jobs[i].payload);
        PyBuffer_Release(&jobs[i].out);
    }
    free(jobs);
    free(sealed);
    release_keys(&key, &mk, &mr);
    Py_DECREF(items);
    return result;
}

/* open(enc_key, mac_k, mac_r, sealed, uncompressed_length) -> plaintext bytes
 * uncompressed_length 0: the payload is stored uncompressed. */
static PyObject *open_sealed(PyObject *self, PyObject *args)
{
    PyObject *ko, *mko, *mro, *sealedo;
    Py_ssize_t ulen;
    if (!PyArg_ParseTuple(args, "OOOOn", &ko, &mko, &mro, &sealedo, &ulen))
        return NULL;
    if (ulen < 0) {
        PyErr_SetString(PyExc_ValueError, "uncompressed_length must not be negative");
        return NULL;
    }
    Py_buffer key, mk, mr, sealed;
    if (!get_keys(ko, mko, mro, sealedo, &key, &mk, &mr, &sealed))
        return NULL;
    const char *failure = NULL;
    PyObject *out = NULL;
    if (sealed.len < OVERHEAD) {
        failure = "ciphertext verification failed";
    } else {
        size_t payload = (size_t)sealed.len - OVERHEAD;
        out = PyBytes_FromStringAndSize(NULL, ulen ? ulen : (Py_ssize_t)payload);
        if (out != NULL) {
            unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
            const unsigned char *s = sealed.buf;
            PyThreadState *released = release_gil_for(payload + (size_t)ulen);
            unsigned char tag[MAC_SIZE];
            if (!poly1305_aes(mk.buf, mr.buf, s, s + IV_SIZE, payload, tag) ||
                CRYPTO_memcmp(tag, s + IV_SIZE + payload, MAC_SIZE) != 0) {
                failure = "ciphertext verification failed";
            } else if (!ulen) {
                if (!ctr_crypt(key.buf, s, s + IV_SIZE, payload, o))
                    failure = "decryption failed";
            } else {
                unsigned char *tmp = malloc(payload ? payload : 1);
                if (tls_dctx == NULL)
                    tls_dctx = ZSTD_createDCtx();
                if (tmp == NULL || tls_dctx == NULL || !ctr_crypt(key.buf, s, s + IV_SIZE, payload, tmp)) {
                    failure = "decryption failed";
                } else {
                    size_t got = ZSTD_decompressDCtx(tls_dctx, o, (size_t)ulen, tmp, payload);
                    if (ZSTD_isError(got) || got != (size_t)ulen)
                        failure = "decompression failed or gave a different length than recorded";
                }
                free(tmp);
            }
            take_gil_back(released);
        }
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&mk);
    PyBuffer_Release(&mr);
    PyBuffer_Release(&sealed);
    if (failure) {
        Py_XDECREF(out);
        PyErr_SetString(SealError, failure);
        return NULL;
    }
    return out;
}


/* --- reading small files ---------------------------------------------------------------- */

struct small_file {
    const char *path;
    unsigned long long ino;
    size_t want;          /* the size lstat saw */
    int status;           /* 0 ok, errno, or -1 changed type/replaced, -2 grew */
    const char *op;       /* the failing call, for the message */
    unsigned char *data;
    size_t len;
    unsigned char digest[32];
};

static void read_one(struct small_file *f)
{
    /* O_NONBLOCK: a file swapped for a FIFO since the scan must not block the reader (it is
       refused below as a changed type); reads of regular files ignore the flag */
    int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
    int fd = open(f->path, flags | O_NOATIME);
    if (fd < 0 && errno == EPERM)
        fd = open(f->path, flags);  /* O_NOATIME needs the owner or root */
    if (fd < 0) {
        f->status = errno;
        f->op = "open";
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        f->status = errno;
        f->op = "fstat";
        close(fd);
        return;
    }
    if (!S_ISREG(st.st_mode) || (unsigned long long)st.st_ino != f->ino) {
        f->status = -1;
        close(fd);
        return;
    }
    if ((size_t)st.st_size != f->want) {
        f->status = -2;  /* its size changed since lstat: the caller reads it the general way */
        close(fd);
        return;
    }
    size_t cap = (size_t)st.st_size + 1;
    f->data = malloc(cap);
    if (f->data == NULL) {
        f->status = ENOMEM;
        f->op = "read";
        close(fd);
        return;
    }
    size_t got = 0;
    while (got < cap) {
        ssize_t n = read(fd, f->data + got, cap - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            f->status = errno;
            f->op = "read";
            close(fd);
            return;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (got == cap) {
        f->status = -2;  /* it grew while we looked */
        return;
    }
    f->len = got;  /* hashed with the batch's other files (hash_small_files) */
}

static int sha256_many(size_t n, const unsigned char *const *msgs, const size_t *lens, unsigned char *outs);

/* The digests of the files read whole, two hashed at a time. */
static void hash_small_files(struct small_file *files, Py_ssize_t n)
{
    const unsigned char **msgs = malloc((n ? (size_t)n : 1) * sizeof *msgs);
    size_t *lens = malloc((n ? (size_t)n : 1) * sizeof *lens);
    unsigned char *digests = malloc((n ? (size_t)n : 1) * 32);
    int ok = msgs != NULL && lens != NULL && digests != NULL;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        msgs[i] = files[i].status == 0 ? files[i].data : NULL;
        lens[i] = files[i].len;
    }
    ok = ok && sha256_many((size_t)n, msgs, lens, digests);
    for (Py_ssize_t i = 0; i < n; i++) {
        struct small_file *f = &files[i];
        if (f->status != 0)
            continue;
        if (ok) {
            memcpy(f->digest, digests + 32 * i, 32);
        } else {
            f->status = EIO;
            f->op = "sha256";
        }
    }
    free(msgs);
    free(lens);
    free(digests);
}

/* read_small_files([(path: str or bytes, inode: int, size: int), ...]) ->
 *   [(status, op, data or None, sha256 digest or None), ...]
 * status 0: read whole; an errno value: that call (op) failed; -1: no longer the same
 * regular file; -2: its size is not the size seen (before or while reading). The whole batch runs without the GIL. */
static PyObject *read_small_files(PyObject *self, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "read_small_files needs a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    struct small_file *files = calloc(n ? (size_t)n : 1, sizeof *files);
    PyObject **keep = calloc(n ? (size_t)n : 1, sizeof *keep);
    PyObject *result = NULL;
    Py_ssize_t parsed = 0;
    if (files == NULL || keep == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; parsed < n; parsed++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, parsed);
        PyObject *path;
        unsigned long long ino;
        Py_ssize_t size;
        /* a str path is encoded as os.fsencode does, without a Python call per file */
        if (!PyArg_ParseTuple(item, "O&Kn", PyUnicode_FSConverter, &path, &ino, &size))
            goto done;
        keep[parsed] = path;
        files[parsed].path = PyBytes_AS_STRING(path);
        files[parsed].ino = ino;
        files[parsed].want = (size_t)size;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        read_one(&files[i]);
    hash_small_files(files, n);
    Py_END_ALLOW_THREADS
    result = PyList_New(n);
    if (result == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        struct small_file *f = &files[i];
        PyObject *t;
        if (f->status == 0)
            t = Py_BuildValue("(isy#y#)", 0, "", f->data, (Py_ssize_t)f->len, f->digest, (Py_ssize_t)32);
        else
            t = Py_BuildValue("(isOO)", f->status, f->op ? f->op : "", Py_None, Py_None);
        if (t == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, t);
    }
done:
    if (files != NULL)
        for (Py_ssize_t i = 0; i < n; i++)
            free(files[i].data);
    if (keep != NULL)
        for (Py_ssize_t i = 0; i < parsed; i++)
            Py_XDECREF(keep[i]);
    free(files);
    free(keep);
    Py_DECREF(seq);
    return result;
}

/* --- restoring a pack range ----------------------------------------------------------- */

/* A blob of one pack range and where its plaintext goes. */
struct dest {
    int fd;
    int hole_ok;          /* an all-zero blob may be left as a hole in this file (--sparse) */
    long long offset;
};

struct range_blob {
    size_t start, length, ulen;
    unsigned char id[32];
    struct dest *dests;
    Py_ssize_t ndests;
    const char *failure;  /* what went wrong with the blob itself, or NULL */
};

/* The room a blob's plaintext takes: its uncompressed length, or its payload's. */
static size_t blob_room(const struct range_blob *b)
{
    return b->ulen ? b->ulen : (b->length < OVERHEAD ? 0 : b->length - OVERHEAD);
}

/* Per-thread scratch space for decrypted and decompressed blobs, freed when the thread ends. */
static int all_zero(const unsigned char *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static int pwrite_full(int fd, const unsigned char *p, size_t n, long long offset)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)offset);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (w == 0)
            return EIO;
        p += w;
        n -= (size_t)w;
        offset += w;
    }
    return 0;
}

/* Check, decrypt and decompress one blob of the range; its plaintext, or NULL with b->failure
   set. The plaintext goes to into (room for exactly its size: ulen, or the payload's when 0).
   Its id is checked afterwards, with its neighbours' (check_ids). Runs without the GIL. */
static const unsigned char *decode_blob(const unsigned char *key, const unsigned char *mk,
                                        const unsigned char *mr, const unsigned char *range,
                                        struct range_blob *b, unsigned char *into, size_t *plain_len)
{
    const unsigned char *s = range + b->start;
    if (b->length < OVERHEAD) {
        b->failure = "ciphertext verification failed";
        return NULL;
    }
    size_t payload = b->length - OVERHEAD;
    if (b->ulen > payload * (1u << 15)) {  /* more than zstd can expand: damage */
        b->failure = "uncompressed length is impossible";
        return NULL;
    }
    unsigned char tag[MAC_SIZE];
    if (!poly1305_aes(mk, mr, s, s + IV_SIZE, payload, tag) ||
        CRYPTO_memcmp(tag, s + IV_SIZE + payload, MAC_SIZE) != 0) {
        b->failure = "ciphertext verification failed";
        return NULL;
    }
    unsigned char *dec = !b->ulen ? into : scratch_get(0, payload ? payload : 1);
    if (dec == NULL || !ctr_crypt(key, s, s + IV_SIZE, payload, dec)) {
        b->failure = "decryption failed";
        return NULL;
    }
    if (b->ulen) {
        if (tls_dctx == NULL)
            tls_dctx = ZSTD_createDCtx();
        if (tls_dctx == NULL) {
            b->failure = "out of memory";
            return NULL;
        }
        size_t got = ZSTD_decompressDCtx(tls_dctx, into, b->ulen, dec, payload);
        if (ZSTD_isError(got) || got != b->ulen) {
            b->failure = "decompression failed or gave a different length than recorded";
            return NULL;
        }
        *plain_len = b->ulen;
        return into;
    }
    *plain_len = payload;
    return into;
}

/* The SHA-256 of n messages (a NULL one skipped): two at a time where the CPU has SHA-NI
   (sha256_pairs.h, checked against the library at import, fast_sha), else one by one. 0 if the
   library failed. */

static int sha256_many(size_t n, const unsigned char *const *msgs, const size_t *lens, unsigned char *outs)
{
    if (fast_sha) {
        sha256_pairs(n, msgs, lens, outs);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned int dlen = 0;
        if (msgs[i] != NULL && (!EVP_Digest(msgs[i], lens[i], outs + 32 * i, &dlen, sha256_md, NULL) || dlen != 32))
            return 0;
    }
    return 1;
}

/* Compare the plaintexts of blobs [0, n) that decoded (plains[i] not NULL) with their ids,
   hashed together; a mismatch clears plains[i] and sets the blob's failure. digests: room
   for n digests. */
static void check_ids(struct range_blob *blobs, Py_ssize_t n, const unsigned char **plains, const size_t *lens,
                      unsigned char *digests)
{
    int hashed = sha256_many((size_t)n, plains, lens, digests);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (plains[i] != NULL && (!hashed || memcmp(digests + 32 * i, blobs[i].id, 32) != 0)) {
            blobs[i].failure = hashed ? "content does not match its id" : "hashing failed";
            plains[i] = NULL;
        }
    }
}

/* Decode blobs [0, n) one after another into into (room for all of their plaintexts, see
   blob_room), then check their ids together: plains[i] and lens[i] for each, plains[i] NULL
   where it failed. Runs without the GIL. */
static void open_blobs(const unsigned char *key, const unsigned char *mk, const unsigned char *mr,
                       const unsigned char *range, struct range_blob *blobs, Py_ssize_t n,
                       unsigned char *into, const unsigned char **plains, size_t *lens, unsigned char *digests)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        lens[i] = 0;
        plains[i] = decode_blob(key, mk, mr, range, &blobs[i], into, &lens[i]);
        into += blob_room(&blobs[i]);
    }
    check_ids(blobs, n, plains, lens, digests);
}

static void free_range_blobs(struct range_blob *blobs, Py_ssize_t n)
{
    if (blobs == NULL)
        return;
    for (Py_ssize_t i = 0; i < n; i++)
        free(blobs[i].dests);
    free(blobs);
}

/* Parse [(start, length, uncompressed_length, id, [(fd, offset[, hole_ok]), ...]), ...], or
   without the destinations when with_dests is 0. */
static struct range_blob *parse_range_blobs(PyObject *seq, Py_ssize_t range_len, int with_dests,
                                            Py_ssize_t *count)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    struct range_blob *blobs = calloc(n ? (size_t)n : 1, sizeof *blobs);
    if (blobs == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        struct range_blob *b = &blobs[i];
        Py_ssize_t start, length, ulen;
        const char *id;
        Py_ssize_t idlen;
        PyObject *dests = NULL;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), with_dests ? "nnny#O" : "nnny#", &start,
                              &length, &ulen, &id, &idlen, &dests))
            goto fail;
        if (start < 0 || length < 0 || ulen < 0 || start > range_len || length > range_len - start ||
            idlen != 32) {
            PyErr_Format(PyExc_ValueError, "blob %zd lies outside the range or has a bad id", i);
            goto fail;
        }
        b->start = (size_t)start;
        b->length = (size_t)length;
        b->ulen = (size_t)ulen;
        memcpy(b->id, id, 32);
        if (!with_dests)
            continue;
        PyObject *fast = PySequence_Fast(dests, "destinations must be a sequence");
        if (fast == NULL)
            goto fail;
        b->ndests = PySequence_Fast_GET_SIZE(fast);
        b->dests = calloc(b->ndests ? (size_t)b->ndests : 1, sizeof *b->dests);
        for (Py_ssize_t j = 0; b->dests != NULL && j < b->ndests; j++) {
            struct dest *d = &b->dests[j];
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, j), "iL|p", &d->fd, &d->offset, &d->hole_ok)) {
                Py_DECREF(fast);
                goto fail;
            }
        }
        Py_DECREF(fast);
        if (b->dests == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    *count = n;
    return blobs;
fail:
    free_range_blobs(blobs, n);
    return NULL;
}

/* The arguments of both range calls: (enc_key, mac_k, mac_r, range, blobs). 0 with an
   exception and nothing held; else 1 with the four buffers held (the caller releases them)
   and *blobs parsed (NULL with an exception when the list is refused). */
static int range_arguments(PyObject *args, int with_dests, Py_buffer *key, Py_buffer *mk, Py_buffer *mr,
                           Py_buffer *range, struct range_blob **blobs, Py_ssize_t *n)
{
    PyObject *ko, *mko, *mro, *rangeo, *blobso;
    if (!PyArg_ParseTuple(args, "OOOOO", &ko, &mko, &mro, &rangeo, &blobso))
        return 0;
    PyObject *seq = PySequence_Fast(blobso, "blobs must be a sequence");
    if (seq == NULL)
        return 0;
    if (!get_keys(ko, mko, mro, rangeo, key, mk, mr, range)) {
        Py_DECREF(seq);
        return 0;
    }
    *blobs = parse_range_blobs(seq, range->len, with_dests, n);
    Py_DECREF(seq);
    return 1;
}


/* restore_range(enc_key, mac_k, mac_r, range, blobs) -> [(blob index, dest index, errno, what), ...]
 * range: bytes read from a pack; blobs: [(start in range, length, uncompressed length or 0,
 * id (32 bytes), [(fd, file offset[, hole_ok]), ...]), ...]. Each blob's MAC is checked, it
 * is decrypted, decompressed, its SHA-256 compared with its id, and then written to every
 * destination whose fd is not negative (an all-zero blob is skipped where hole_ok). The
 * whole range runs without the GIL. Returns only the failures: a blob that failed
 * (dest index -1, errno 0, what went wrong; nothing of it was written) or a write that
 * failed (dest index, errno, "write"). */
static PyObject *restore_range(PyObject *self, PyObject *args)
{
    Py_buffer key, mk, mr, range;
    struct range_blob *blobs = NULL;
    Py_ssize_t n = 0;
    if (!range_arguments(args, 1, &key, &mk, &mr, &range, &blobs, &n))
        return NULL;
    PyObject *result = NULL;
    int *write_errors = NULL;
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; blobs != NULL && i < n; i++)
        total += blobs[i].ndests;
    if (blobs != NULL) {
        write_errors = calloc(total ? (size_t)total : 1, sizeof *write_errors);
        if (write_errors == NULL)
            PyErr_NoMemory();
    }
    const unsigned char **plains = malloc((n ? (size_t)n : 1) * sizeof *plains);
    size_t *lens = malloc((n ? (size_t)n : 1) * sizeof *lens);
    unsigned char *digests = malloc((n ? (size_t)n : 1) * 32);
    if (write_errors != NULL && (plains == NULL || lens == NULL || digests == NULL)) {
        PyErr_NoMemory();
        free(write_errors);
        write_errors = NULL;
    }
    if (write_errors != NULL) {
        Py_BEGIN_ALLOW_THREADS
        Py_ssize_t k = 0;
        for (Py_ssize_t i = 0; i < n;) {
            /* a window of blobs whose plaintexts are decoded, their ids checked together
               (two hashed at a time) and written while they are in the cache */
            size_t room = blob_room(&blobs[i]);
            Py_ssize_t end = i + 1;
            while (end < n && room + blob_room(&blobs[end]) <= OPEN_WINDOW)
                room += blob_room(&blobs[end++]);
            unsigned char *arena = scratch_get(1, room ? room : 1);
            if (arena == NULL) {
                for (Py_ssize_t j = i; j < end; j++) {
                    blobs[j].failure = "out of memory";
                    plains[j] = NULL;
                }
            } else {
                open_blobs(key.buf, mk.buf, mr.buf, range.buf, blobs + i, end - i, arena, plains + i, lens + i,
                           digests);
            }
            for (; i < end; i++) {
                struct range_blob *b = &blobs[i];
                const unsigned char *plain = plains[i];
                int zero = plain != NULL && all_zero(plain, lens[i]);
                for (Py_ssize_t j = 0; j < b->ndests; j++, k++) {
                    struct dest *d = &b->dests[j];
                    if (plain == NULL || d->fd < 0 || (zero && d->hole_ok))
                        continue;
                    write_errors[k] = pwrite_full(d->fd, plain, lens[i], d->offset);
                }
            }
        }
        scratch_trim(1);
        Py_END_ALLOW_THREADS
        result = PyList_New(0);
        Py_ssize_t k = 0;
        for (Py_ssize_t i = 0; result != NULL && i < n; i++) {
            struct range_blob *b = &blobs[i];
            PyObject *t = NULL;
            if (b->failure != NULL) {
                t = Py_BuildValue("(nnis)", i, (Py_ssize_t)-1, 0, b->failure);
                if (t == NULL || PyList_Append(result, t) < 0)
                    Py_CLEAR(result);
                Py_XDECREF(t);
            }
            for (Py_ssize_t j = 0; result != NULL && j < b->ndests; j++) {
                if (!write_errors[k + j])
                    continue;
                t = Py_BuildValue("(nnis)", i, j, write_errors[k + j], "write");
                if (t == NULL || PyList_Append(result, t) < 0)
                    Py_CLEAR(result);
                Py_XDECREF(t);
            }
            k += b->ndests;
        }
    }
    free(write_errors);
    free(plains);
    free(lens);
    free(digests);
    free_range_blobs(blobs, n);
    PyBuffer_Release(&key);
    PyBuffer_Release(&mk);
    PyBuffer_Release(&mr);
    PyBuffer_Release(&range);
    return result;
}

/* open_range(enc_key, mac_k, mac_r, range, blobs) -> (plaintexts, [(blob index, what), ...])
 * range: bytes read from a pack; blobs: [(start in range, length, uncompressed length or 0,
 * id (32 bytes)), ...]. Each blob is checked, decrypted, decompressed and hashed as by
 * restore_range, without the GIL, straight into one bytes object: blob i's plaintext follows
 * blob i - 1's and takes its uncompressed length, or length - 32 when that is 0 (nothing for
 * a blob shorter than 32 bytes). A blob that failed is listed with what went wrong, and its
 * room holds zeros. ValueError for a blob outside the range or with an uncompressed length
 * no zstd frame of its size reaches (callers check that first; refusing here keeps a damaged
 * index from allocating terabytes). */
static PyObject *open_range(PyObject *self, PyObject *args)
{
    Py_buffer key, mk, mr, range;
    struct range_blob *blobs = NULL;
    Py_ssize_t n = 0;
    if (!range_arguments(args, 0, &key, &mk, &mr, &range, &blobs, &n))
        return NULL;
    PyObject *plain = NULL, *failures = NULL, *result = NULL;
    const unsigned char **plains = NULL;
    size_t *lens = NULL;
    unsigned char *digests = NULL;
    size_t total = 0;
    for (Py_ssize_t i = 0; blobs != NULL && i < n; i++) {
        struct range_blob *b = &blobs[i];
        size_t payload = b->length < OVERHEAD ? 0 : b->length - OVERHEAD, room = blob_room(b);
        if (b->ulen > payload * (1u << 15) || room > (size_t)PY_SSIZE_T_MAX - total) {
            PyErr_Format(PyExc_ValueError, "blob %zd's uncompressed length is impossible", i);
            goto done;
        }
        total += room;
    }
    if (blobs != NULL) {
        plains = malloc((n ? (size_t)n : 1) * sizeof *plains);
        lens = malloc((n ? (size_t)n : 1) * sizeof *lens);
        digests = malloc((n ? (size_t)n : 1) * 32);
        if (plains == NULL || lens == NULL || digests == NULL)
            PyErr_NoMemory();
        else
            plain = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    }
    if (plain != NULL) {
        unsigned char *at = (unsigned char *)PyBytes_AS_STRING(plain);
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n;) {
            /* a window's ids are checked together, while its plaintexts are in the cache */
            size_t room = blob_room(&blobs[i]);
            Py_ssize_t end = i + 1;
            while (end < n && room + blob_room(&blobs[end]) <= OPEN_WINDOW)
                room += blob_room(&blobs[end++]);
            open_blobs(key.buf, mk.buf, mr.buf, range.buf, blobs + i, end - i, at, plains + i, lens + i, digests);
            for (; i < end; i++) {
                if (plains[i] == NULL)
                    memset(at, 0, blob_room(&blobs[i]));  /* nothing unchecked is handed out */
                at += blob_room(&blobs[i]);
            }
        }
        Py_END_ALLOW_THREADS
        failures = PyList_New(0);
        for (Py_ssize_t i = 0; failures != NULL && i < n; i++) {
            if (blobs[i].failure == NULL)
                continue;
            PyObject *t = Py_BuildValue("(ns)", i, blobs[i].failure);
            if (t == NULL || PyList_Append(failures, t) < 0)
                Py_CLEAR(failures);
            Py_XDECREF(t);
        }
        if (failures != NULL)
            result = PyTuple_Pack(2, plain, failures);
    }
done:
    Py_XDECREF(plain);
    Py_XDECREF(failures);
    free(plains);
    free(lens);
    free(digests);
    free_range_blobs(blobs, n);
    PyBuffer_Release(&key);
    PyBuffer_Release(&mk);
    PyBuffer_Release(&mr);
    PyBuffer_Release(&range);
    return result;
}

/* The address of a buffer's first byte: a blob sealed into memory of its own is laid out as in
 * its pack file (repository.pack), whose blocks are then written straight from it. */
static PyObject *buffer_address(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    uintptr_t address = (uintptr_t)view.buf;
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong((unsigned long long)address);
}

/* The type of the file system an open file is on (statfs's f_type, a magic number): pack files
 * are written past the page cache only on local disk file systems (backend.direct_writes). */
static PyObject *file_system_type(PyObject *self, PyObject *arg)
{
    int fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0)
        return NULL;
    struct statfs info;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = fstatfs(fd, &info);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromUnsignedLongLong((unsigned long long)(unsigned long)info.f_type);
}

/* Unpacked files (snapshots, indexes, locks...) are one zstd frame each. Decoded here with the
 * library the sealing links anyway, so a command that only reads needs no other zstd module. */
static PyObject *frame_content_size(PyObject *self, PyObject *arg)
{
    Py_buffer in;
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0)
        return NULL;
    unsigned long long size = ZSTD_getFrameContentSize(in.buf, (size_t)in.len);
    PyBuffer_Release(&in);
    if (size == ZSTD_CONTENTSIZE_UNKNOWN)
        return PyLong_FromLong(-1);
    if (size == ZSTD_CONTENTSIZE_ERROR)
        return PyLong_FromLong(-2);
    return PyLong_FromUnsignedLongLong(size);
}

static PyObject *decompress_frame(PyObject *self, PyObject *args)
{
    Py_buffer in;
    Py_ssize_t size, limit;
    if (!PyArg_ParseTuple(args, "y*nn", &in, &size, &limit))
        return NULL;
    PyObject *out = NULL;
    const char *failure = NULL;
    if (!tls_dctx && !(tls_dctx = ZSTD_createDCtx())) {
        PyBuffer_Release(&in);
        return PyErr_NoMemory();
    }
    if (size >= 0) {
        /* the size is known: decode into exactly that much room */
        out = PyBytes_FromStringAndSize(NULL, size);
        if (out == NULL)
            goto done;
        PyThreadState *released = release_gil_for((size_t)size);
        size_t got = ZSTD_decompressDCtx(tls_dctx, PyBytes_AS_STRING(out), (size_t)size, in.buf, (size_t)in.len);
        take_gil_back(released);
        if (ZSTD_isError(got))
            failure = ZSTD_getErrorName(got);
        else if (got != (size_t)size) {
            PyErr_Format(SealError, "decompressed size %zu differs from the recorded %zd", got, size);
            Py_CLEAR(out);
        }
        goto done;
    }
    /* no size recorded (other writers): stream, growing the output up to limit */
    size_t cap = in.len < (1 << 16) ? (1 << 16) : (size_t)in.len * 4, used = 0;
    if (cap > (size_t)limit)
        cap = (size_t)limit;
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
    if (out == NULL)
        goto done;
    ZSTD_DCtx_reset(tls_dctx, ZSTD_reset_session_only);
    ZSTD_inBuffer src = {in.buf, (size_t)in.len, 0};
    for (;;) {
        ZSTD_outBuffer dst = {PyBytes_AS_STRING(out), cap, used};
        size_t left = ZSTD_decompressStream(tls_dctx, &dst, &src);
        used = dst.pos;
        if (ZSTD_isError(left)) {
            failure = ZSTD_getErrorName(left);
            break;
        }
        if (left == 0)
            break; /* the frame is complete (what follows it is not read, as before) */
        if (used < cap) {
            if (src.pos == src.size) {
                failure = "truncated frame";
                break;
            }
            continue;
        }
        if (cap >= (size_t)limit) {
            failure = "output larger than the frame can hold";
            break;
        }
        cap = cap * 2 > (size_t)limit ? (size_t)limit : cap * 2;
        if (_PyBytes_Resize(&out, (Py_ssize_t)cap) < 0)
            goto done;
    }
    if (failure == NULL)
        _PyBytes_Resize(&out, (Py_ssize_t)used);
done:
    PyBuffer_Release(&in);
    if (failure != NULL) {
        Py_CLEAR(out);
        PyErr_Format(SealError, "decompression failed: %s", failure);
    }
    return out;
}

static PyObject *compress_frame(PyObject *self, PyObject *args)
{
    Py_buffer in;
    int level;
    if (!PyArg_ParseTuple(args, "y*i", &in, &level))
        return NULL;
    PyObject *out = NULL;
    if (!tls_cctx && !(tls_cctx = ZSTD_createCCtx())) {
        PyBuffer_Release(&in);
        return PyErr_NoMemory();
    }
    size_t bound = ZSTD_compressBound((size_t)in.len), got;
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)bound);
    if (out != NULL) {
        /* the simple API: content size recorded, no checksum, as restic's encoder writes */
        Py_BEGIN_ALLOW_THREADS
        got = ZSTD_compressCCtx(tls_cctx, PyBytes_AS_STRING(out), bound, in.buf, (size_t)in.len, level);
        Py_END_ALLOW_THREADS
        if (ZSTD_isError(got)) {
            PyErr_Format(SealError, "compression failed: %s", ZSTD_getErrorName(got));
            Py_CLEAR(out);
        } else
            _PyBytes_Resize(&out, (Py_ssize_t)got);
    }
    PyBuffer_Release(&in);
    return out;
}

/* sha256_pair(a, b) -> (SHA-256 of a, SHA-256 of b), 32 bytes each: the two hashed at once
 * (two lanes on SHA-NI, see sha256_pairs.h), without the GIL. A reading thread hashes the
 * chunks it cuts two by two. */
static PyObject *sha256_pair(PyObject *self, PyObject *args)
{
    Py_buffer a, b;
    if (!PyArg_ParseTuple(args, "y*y*", &a, &b))
        return NULL;
    const unsigned char *msgs[2] = {a.buf, b.buf};
    size_t lens[2] = {(size_t)a.len, (size_t)b.len};
    unsigned char digests[64];
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = sha256_many(2, msgs, lens, digests);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    if (!ok) {
        PyErr_SetString(SealError, "hashing failed");
        return NULL;
    }
    return Py_BuildValue("(y#y#)", digests, (Py_ssize_t)32, digests + 32, (Py_ssize_t)32);
}

static PyMethodDef methods[] = {
    {"read_small_files", read_small_files, METH_O,
     "read_small_files([(path, inode, size), ...]) -> [(status, op, data, sha256), ...]"},
    {"seal", seal, METH_VARARGS,
     "seal(enc_key, mac_k, mac_r, data, level[, always]) -> (sealed, uncompressed_length)"},
    {"prepare", prepare, METH_VARARGS,
     "prepare(data, level[, always]) -> (payload_length, uncompressed_length): compression for seal_into"},
    {"seal_into", seal_into, METH_VARARGS,
     "seal_into(enc_key, mac_k, mac_r, data, out): seal prepared data into out (payload_length + 32 bytes)"},
    {"prepare_batch", prepare_batch, METH_VARARGS,
     "prepare_batch(datas, levels) -> ([(payload_length, uncompressed_length, compressed or None) or None, ...],"
     " [(index, what), ...]): compression for seal_batch"},
    {"seal_batch", seal_batch, METH_VARARGS,
     "seal_batch(enc_key, mac_k, mac_r, [(payload, out), ...]) -> [indexes not sealed]: seal payloads into outs"},
    {"open", open_sealed, METH_VARARGS,
     "open(enc_key, mac_k, mac_r, sealed, uncompressed_length) -> plaintext"},
    {"buffer_address", buffer_address, METH_O,
     "buffer_address(buffer) -> int: the address of the buffer's first byte."},
    {"file_system_type", file_system_type, METH_O,
     "file_system_type(fd) -> int: the magic number of the file system the file is on (statfs f_type)."},
    {"frame_content_size", frame_content_size, METH_O,
     "frame_content_size(frame) -> size recorded in a zstd frame's header, -1 when not recorded, -2 when not a frame"},
    {"compress", compress_frame, METH_VARARGS,
     "compress(data, level) -> one zstd frame with its content size recorded"},
    {"decompress", decompress_frame, METH_VARARGS,
     "decompress(frame, size, limit) -> bytes: exactly size bytes, or (size -1) at most limit bytes"},
    {"sha256_pair", sha256_pair, METH_VARARGS,
     "sha256_pair(a, b) -> (sha256(a).digest(), sha256(b).digest()), the two hashed at once"},
    {"restore_range", restore_range, METH_VARARGS,
     "restore_range(enc_key, mac_k, mac_r, range, [(start, length, ulen, id, [(fd, offset[, hole_ok])...])...])"
     " -> [(blob index, dest index, errno, what), ...]"},
    {"open_range", open_range, METH_VARARGS,
     "open_range(enc_key, mac_k, mac_r, range, [(start, length, ulen, id)...]) -> (plaintexts, [(blob index, what), ...])"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_seal",
                                    "restic blob sealing without the GIL", -1, methods};

PyMODINIT_FUNC PyInit__seal(void)
{
    aes256ctr = EVP_CIPHER_fetch(NULL, "AES-256-CTR", NULL);
    aes128ecb = EVP_CIPHER_fetch(NULL, "AES-128-ECB", NULL);
    poly1305 = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!aes256ctr || !aes128ecb || !poly1305 || !sha256_md) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL lacks AES-256-CTR, AES-128-ECB, Poly1305 or SHA-256");
        return NULL;
    }
    if (pthread_key_create(&scratch_key, free_scratch) != 0) {
        PyErr_SetString(PyExc_ImportError, "no thread-local key for scratch buffers");
        return NULL;
    }
    fast_ctr = aes256ctr_fast_available() && fast_ctr_agrees();
    fast_sha = sha256_pairs_available() && fast_sha_agrees();
    primitives_ok = known_answers();
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    SealError = PyErr_NewException("restique._seal.SealError", PyExc_ValueError, NULL);
    if (SealError == NULL || PyModule_AddObject(m, "SealError", SealError) < 0) {
        Py_XDECREF(SealError);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(SealError);
    return m;
}
