/* The per-file system calls of a restore's content workers, a batch in one call without the
 * GIL: creating the files a batch of blobs goes into, and setting the metadata of the files
 * the batch completed, then closing them. One call per file held the GIL between each, and
 * every release let the other threads' Python in (the restore then used about one core). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* open_files([(path, flags, mode), ...]) -> [fd or -errno, ...] */
static PyObject *open_files(PyObject *self, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "open_files needs a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **paths = calloc(n ? (size_t)n : 1, sizeof *paths);
    int *flags = calloc(n ? (size_t)n : 1, sizeof *flags);
    int *modes = calloc(n ? (size_t)n : 1, sizeof *modes);
    int *fds = calloc(n ? (size_t)n : 1, sizeof *fds);
    PyObject *result = NULL;
    Py_ssize_t parsed = 0;
    if (paths == NULL || flags == NULL || modes == NULL || fds == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; parsed < n; parsed++) {
        PyObject *path;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, parsed), "O&ii;open_files: (path, flags, mode)",
                              PyUnicode_FSConverter, &path, &flags[parsed], &modes[parsed]))
            goto done;
        paths[parsed] = path; /* bytes, owned */
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        int fd = open(PyBytes_AS_STRING(paths[i]), flags[i], (mode_t)modes[i]);
        fds[i] = fd < 0 ? -errno : fd;
    }
    Py_END_ALLOW_THREADS
    result = PyList_New(n);
    for (Py_ssize_t i = 0; result != NULL && i < n; i++) {
        PyObject *v = PyLong_FromLong(fds[i]);
        if (v == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, i, v);
    }
    if (result == NULL) /* nobody gets the descriptors: don't leak them */
        for (Py_ssize_t i = 0; i < n; i++)
            if (fds[i] >= 0)
                close(fds[i]);
done:
    for (Py_ssize_t i = 0; paths != NULL && i < parsed; i++)
        Py_DECREF(paths[i]);
    free(paths);
    free(flags);
    free(modes);
    free(fds);
    Py_DECREF(seq);
    return result;
}

struct file_meta {
    int fd;
    long long uid, gid, atime_ns, mtime_ns;
    unsigned int mode;
};

static struct timespec to_timespec(long long ns)
{
    /* floor division, as os.utime(ns=...) splits a time before the epoch */
    long long sec = ns / 1000000000LL, rem = ns % 1000000000LL;
    if (rem < 0) {
        rem += 1000000000LL;
        sec -= 1;
    }
    struct timespec ts = {(time_t)sec, (long)rem};
    return ts;
}

/* finish_files([(fd, uid, gid, atime_ns, mtime_ns, mode), ...], [fd, ...])
 *   -> [(index, call, errno), ...]
 * Sets each file's owner (fchown), times (futimens) and mode (fchmod), in that order (the
 * owner change clears set-user-ID bits that the mode then sets), then closes the descriptors
 * of the second list. Returns the calls that failed: call 0 chown, 1 utime, 2 chmod. */
static PyObject *finish_files(PyObject *self, PyObject *args)
{
    PyObject *metao, *closeo;
    if (!PyArg_ParseTuple(args, "OO", &metao, &closeo))
        return NULL;
    PyObject *mseq = PySequence_Fast(metao, "finish_files needs a sequence");
    if (mseq == NULL)
        return NULL;
    PyObject *cseq = PySequence_Fast(closeo, "finish_files needs a sequence");
    if (cseq == NULL) {
        Py_DECREF(mseq);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(mseq), nc = PySequence_Fast_GET_SIZE(cseq);
    struct file_meta *meta = calloc(n ? (size_t)n : 1, sizeof *meta);
    int *errs = calloc(n ? 3 * (size_t)n : 1, sizeof *errs);
    int *closing = calloc(nc ? (size_t)nc : 1, sizeof *closing);
    PyObject *result = NULL;
    if (meta == NULL || errs == NULL || closing == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        struct file_meta *m = &meta[i];
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(mseq, i), "iLLLLI;finish_files: (fd, uid, gid, atime_ns, mtime_ns, mode)",
                              &m->fd, &m->uid, &m->gid, &m->atime_ns, &m->mtime_ns, &m->mode))
            goto done;
    }
    for (Py_ssize_t i = 0; i < nc; i++) {
        long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(cseq, i));
        if (fd == -1 && PyErr_Occurred())
            goto done;
        closing[i] = (int)fd;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        struct file_meta *m = &meta[i];
        struct timespec times[2] = {to_timespec(m->atime_ns), to_timespec(m->mtime_ns)};
        if (fchown(m->fd, (uid_t)m->uid, (gid_t)m->gid) < 0)
            errs[3 * i] = errno;
        if (futimens(m->fd, times) < 0)
            errs[3 * i + 1] = errno;
        if (fchmod(m->fd, (mode_t)m->mode) < 0)
            errs[3 * i + 2] = errno;
    }
    for (Py_ssize_t i = 0; i < nc; i++)
        close(closing[i]);
    Py_END_ALLOW_THREADS
    result = PyList_New(0);
    for (Py_ssize_t i = 0; result != NULL && i < 3 * n; i++) {
        if (!errs[i])
            continue;
        PyObject *t = Py_BuildValue("(nii)", i / 3, (int)(i % 3), errs[i]);
        if (t == NULL || PyList_Append(result, t) < 0)
            Py_CLEAR(result);
        Py_XDECREF(t);
    }
done:
    free(meta);
    free(errs);
    free(closing);
    Py_DECREF(mseq);
    Py_DECREF(cseq);
    return result;
}

static PyMethodDef methods[] = {
    {"open_files", open_files, METH_O, "open_files([(path, flags, mode), ...]) -> [fd or -errno, ...]"},
    {"finish_files", finish_files, METH_VARARGS,
     "finish_files([(fd, uid, gid, atime_ns, mtime_ns, mode), ...], [fd to close, ...]) -> [(index, call, errno), ...]"
     " (call: 0 chown, 1 utime, 2 chmod)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_restore",
                                    "A restore's per-file system calls, a batch per call without the GIL",
                                    -1, methods};

PyMODINIT_FUNC PyInit__restore(void)
{
    return PyModule_Create(&module);
}
