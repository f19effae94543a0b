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
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zstd.h>

#define IV_SIZE 16
#define MAC_SIZE 16
#define OVERHEAD (IV_SIZE + MAC_SIZE)

static PyObject *SealError;

/* Fetched once: implicit fetches on every call cost more than the work on small blobs. */
static EVP_CIPHER *aes256ctr;
static EVP_CIPHER *aes128ecb;
static EVP_MAC *poly1305;

/* zstd contexts are expensive to create; keep one of each per thread. */
static __thread ZSTD_CCtx *tls_cctx;
static __thread ZSTD_DCtx *tls_dctx;

static int ctr_crypt(const unsigned char *key32, const unsigned char *iv, const unsigned char *in,
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

/* The three key parts and the payload as buffers; on failure nothing stays acquired. */
static int get_keys(PyObject *ko, PyObject *mko, PyObject *mro, PyObject *payload, Py_buffer *key,
                    Py_buffer *mk, Py_buffer *mr, Py_buffer *data)
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
    if (PyObject_GetBuffer(payload, data, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(key);
        PyBuffer_Release(mk);
        PyBuffer_Release(mr);
        return 0;
    }
    return 1;
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
    Py_buffer key, mk, mr, data;
    if (!get_keys(ko, mko, mro, datao, &key, &mk, &mr, &data))
        return NULL;
    size_t n = (size_t)data.len;
    size_t bound = level > 0 ? ZSTD_compressBound(n) : 0;
    size_t cap = OVERHEAD + (bound > n ? bound : n);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
    const char *failure = NULL;
    size_t ulen = 0, payload = n;
    if (out != NULL) {
        unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS
        unsigned char *packed = NULL, *check = NULL, *plain = NULL;
        const unsigned char *src = data.buf;
        if (level > 0 && n > 0) {
            packed = malloc(bound);
            if (tls_cctx == NULL)
                tls_cctx = ZSTD_createCCtx();
            if (packed == NULL || tls_cctx == NULL) {
                failure = "out of memory";
            } else {
                size_t got = ZSTD_compressCCtx(tls_cctx, packed, bound, data.buf, n, level);
                if (ZSTD_isError(got))
                    failure = "zstd compression failed";
                else if (got < n || always) {
                    src = packed;
                    payload = got;
                    ulen = n;
                }
            }
        }
        if (!failure && RAND_bytes(o, IV_SIZE) != 1)
            failure = "no random bytes for the IV";
        if (!failure && !ctr_crypt(key.buf, o, src, payload, o + IV_SIZE))
            failure = "encryption failed";
        if (!failure && !poly1305_aes(mk.buf, mr.buf, o, o + IV_SIZE, payload, o + IV_SIZE + payload))
            failure = "MAC computation failed";
        /* decode what will be stored and compare with the input */
        if (!failure) {
            check = malloc(payload ? payload : 1);
            if (check == NULL || !ctr_crypt(key.buf, o, o + IV_SIZE, payload, check))
                failure = "verification decrypt failed";
        }
        if (!failure && ulen) {
            plain = malloc(n);
            if (tls_dctx == NULL)
                tls_dctx = ZSTD_createDCtx();
            size_t got = plain && tls_dctx ? ZSTD_decompressDCtx(tls_dctx, plain, n, check, payload) : 0;
            if (plain == NULL || ZSTD_isError(got) || got != n || memcmp(plain, data.buf, n) != 0)
                failure = "sealed blob did not decode to its content";
        } else if (!failure && memcmp(check, data.buf, n) != 0) {
            failure = "sealed blob did not decode to its content";
        }
        free(packed);
        free(check);
        free(plain);
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
    if (_PyBytes_Resize(&out, (Py_ssize_t)(OVERHEAD + payload)) < 0)
        return NULL;
    return Py_BuildValue("(Nn)", out, (Py_ssize_t)ulen);
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
            Py_BEGIN_ALLOW_THREADS
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
            Py_END_ALLOW_THREADS
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
    f->len = got;
    unsigned int dlen = 0;
    if (!EVP_Digest(f->data, got, f->digest, &dlen, EVP_sha256(), NULL) || dlen != 32) {
        f->status = EIO;
        f->op = "sha256";
    }
}

/* read_small_files([(path: bytes, inode: int, size: int), ...]) ->
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
        if (!PyArg_ParseTuple(item, "O!Kn", &PyBytes_Type, &path, &ino, &size))
            goto done;
        Py_INCREF(path);
        keep[parsed] = path;
        files[parsed].path = PyBytes_AS_STRING(path);
        files[parsed].ino = ino;
        files[parsed].want = (size_t)size;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        read_one(&files[i]);
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

static PyMethodDef methods[] = {
    {"read_small_files", read_small_files, METH_O,
     "read_small_files([(path, inode, size), ...]) -> [(status, op, data, sha256), ...]"},
    {"seal", seal, METH_VARARGS,
     "seal(enc_key, mac_k, mac_r, data, level[, always]) -> (sealed, uncompressed_length)"},
    {"open", open_sealed, METH_VARARGS,
     "open(enc_key, mac_k, mac_r, sealed, uncompressed_length) -> plaintext"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_seal",
                                    "restic blob sealing without the GIL", -1, methods};

PyMODINIT_FUNC PyInit__seal(void)
{
    aes256ctr = EVP_CIPHER_fetch(NULL, "AES-256-CTR", NULL);
    aes128ecb = EVP_CIPHER_fetch(NULL, "AES-128-ECB", NULL);
    poly1305 = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    if (!aes256ctr || !aes128ecb || !poly1305) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL lacks AES-256-CTR, AES-128-ECB or Poly1305");
        return NULL;
    }
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
