/* One directory's scan in one call: readdir, lstat of every entry, the target of every
 * symlink and (when asked) every entry's extended attributes, all without the GIL. The
 * backup walk only turns the results into nodes. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structseq.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* the lstat fields a node is made of, named as os.stat_result names them, and the three
 * times as the RFC 3339 text a tree records in the local zone (None outside the years
 * 1970-9999, which the caller formats itself) */
static PyStructSequence_Field stat_fields[] = {
    {"st_mode", NULL},     {"st_ino", NULL},      {"st_dev", NULL},      {"st_nlink", NULL},
    {"st_uid", NULL},      {"st_gid", NULL},      {"st_size", NULL},     {"st_atime_ns", NULL},
    {"st_mtime_ns", NULL}, {"st_ctime_ns", NULL}, {"st_rdev", NULL},     {"atime_text", NULL},
    {"mtime_text", NULL},  {"ctime_text", NULL},  {NULL, NULL},
};
#define STAT_FIELDS 14
static PyStructSequence_Desc stat_desc = {"restique._scan.Stat", "lstat fields of a scanned entry",
                                          stat_fields, STAT_FIELDS};
static PyTypeObject *StatType;

struct xattr_buf {
    char *names;  /* NUL-separated, as llistxattr returns them */
    ssize_t names_len;
    char **values;
    ssize_t *value_lens; /* -1: that attribute could not be read (left out) */
    int count;
};

/* Go's RFC3339Nano text of a time: "2006-01-02T15:04:05.999999999+07:00" at most */
#define TIME_TEXT_MAX 40

struct time_text {
    char text[TIME_TEXT_MAX];
    int len; /* 0: outside the years this formats */
};

struct entry {
    char *name;
    size_t name_len;
    int err; /* errno of lstat, 0 if st is valid */
    struct stat st;
    char *link; /* a symlink's target */
    ssize_t link_len;
    int link_err;
    struct xattr_buf xattrs;
};

struct scan {
    struct entry *entries;
    size_t count, cap;
    int err; /* errno of opening or reading the directory */
};

static void free_xattrs(struct xattr_buf *x)
{
    for (int i = 0; i < x->count; i++)
        free(x->values[i]);
    free(x->values);
    free(x->value_lens);
    free(x->names);
}

static void free_scan(struct scan *s)
{
    for (size_t i = 0; i < s->count; i++) {
        free(s->entries[i].name);
        free(s->entries[i].link);
        free_xattrs(&s->entries[i].xattrs);
    }
    free(s->entries);
}

static int read_link(const char *path, struct entry *e)
{
    size_t cap = e->st.st_size > 0 ? (size_t)e->st.st_size + 1 : 256;
    for (;;) {
        char *buf = malloc(cap);
        if (buf == NULL)
            return ENOMEM;
        ssize_t n = readlink(path, buf, cap);
        if (n < 0) {
            free(buf);
            return errno;
        }
        if ((size_t)n < cap) { /* not truncated: the target grew otherwise */
            e->link = buf;
            e->link_len = n;
            return 0;
        }
        free(buf);
        cap *= 2;
    }
}

/* Every attribute of path (not following a symlink); errors leave the list empty, a value
 * that vanished in between is left out, as os.listxattr/os.getxattr callers do. */
static void read_xattrs(const char *path, struct xattr_buf *x)
{
    ssize_t len = llistxattr(path, NULL, 0);
    while (len > 0) {
        x->names = malloc((size_t)len);
        if (x->names == NULL)
            return;
        ssize_t got = llistxattr(path, x->names, (size_t)len);
        if (got >= 0) {
            len = got;
            break;
        }
        free(x->names);
        x->names = NULL;
        if (errno != ERANGE)
            return;
        len = llistxattr(path, NULL, 0); /* the list grew: ask again */
    }
    if (len <= 0 || x->names == NULL)
        return;
    x->names_len = len;
    int count = 0;
    for (ssize_t i = 0; i < len; i++)
        count += x->names[i] == '\0';
    x->values = calloc((size_t)count + 1, sizeof *x->values);
    x->value_lens = calloc((size_t)count + 1, sizeof *x->value_lens);
    if (x->values == NULL || x->value_lens == NULL)
        return;
    x->count = count;
    const char *name = x->names;
    for (int i = 0; i < count; i++, name += strlen(name) + 1) {
        x->value_lens[i] = -1;
        for (int tries = 0; tries < 4; tries++) {
            ssize_t size = lgetxattr(path, name, NULL, 0);
            if (size < 0)
                break;
            char *value = malloc(size ? (size_t)size : 1);
            if (value == NULL)
                break;
            ssize_t got = lgetxattr(path, name, value, (size_t)size);
            if (got >= 0) {
                x->values[i] = value;
                x->value_lens[i] = got;
                break;
            }
            free(value);
            if (errno != ERANGE)
                break;
        }
    }
}

/* The local zone's offset is looked up once per quarter hour, as the Python side's LocalTime
 * does (zones change offsets on quarter hours); a few slots cover one folder's times. */
#define ZONE_SLOTS 64

struct zone_cache {
    long long bucket[ZONE_SLOTS];
    long offset[ZONE_SLOTS];
    unsigned char valid[ZONE_SLOTS];
};

static long long floor_div(long long a, long long b)
{
    long long q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int local_offset(struct zone_cache *z, long long seconds, long *offset)
{
    long long bucket = floor_div(seconds, 900);
    unsigned slot = (unsigned)((unsigned long long)bucket % ZONE_SLOTS);
    if (!z->valid[slot] || z->bucket[slot] != bucket) {
        time_t t = (time_t)(bucket * 900);
        struct tm tm;
        if (localtime_r(&t, &tm) == NULL)
            return -1;
        z->bucket[slot] = bucket;
        z->offset[slot] = tm.tm_gmtoff;
        z->valid[slot] = 1;
    }
    *offset = z->offset[slot];
    return 0;
}

static char *two_digits(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

#define LAST_DAY 2932896LL /* 9999-12-31 */

/* ns in the local zone as Go's time.RFC3339Nano writes it: trailing zeros of the fraction
 * dropped, "Z" for offset 0, the offset's seconds dropped. */
static void format_time(struct zone_cache *z, long long ns, struct time_text *out)
{
    out->len = 0;
    long long seconds = floor_div(ns, 1000000000LL);
    long nanos = (long)(ns - seconds * 1000000000LL);
    long offset;
    if (local_offset(z, seconds, &offset) != 0)
        return;
    long long local = seconds + offset;
    long long day = floor_div(local, 86400);
    if (day < 0 || day > LAST_DAY)
        return;
    unsigned clock = (unsigned)(local - day * 86400);
    /* civil date from days since 1970-01-01 (H. Hinnant's algorithm, days >= 0 here) */
    long long zd = day + 719468;
    long long era = zd / 146097;
    unsigned doe = (unsigned)(zd - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned mday = doy - (153 * mp + 2) / 5 + 1;
    unsigned month = mp < 10 ? mp + 3 : mp - 9;
    unsigned year = (unsigned)(yoe + era * 400 + (month <= 2));
    char *p = out->text;
    p = two_digits(p, year / 100);
    p = two_digits(p, year % 100);
    *p++ = '-';
    p = two_digits(p, month);
    *p++ = '-';
    p = two_digits(p, mday);
    *p++ = 'T';
    p = two_digits(p, clock / 3600);
    *p++ = ':';
    p = two_digits(p, clock / 60 % 60);
    *p++ = ':';
    p = two_digits(p, clock % 60);
    if (nanos) {
        char digits[9];
        int n = 9;
        for (int i = 8; i >= 0; i--, nanos /= 10)
            digits[i] = (char)('0' + nanos % 10);
        while (digits[n - 1] == '0')
            n--;
        *p++ = '.';
        memcpy(p, digits, (size_t)n);
        p += n;
    }
    if (offset == 0) {
        *p++ = 'Z';
    } else {
        long off = offset < 0 ? -offset : offset;
        *p++ = offset < 0 ? '-' : '+';
        p = two_digits(p, (unsigned)(off / 3600));
        *p++ = ':';
        p = two_digits(p, (unsigned)(off % 3600 / 60));
    }
    out->len = (int)(p - out->text);
}

static int add_entry(struct scan *s, const char *name)
{
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct entry *grown = realloc(s->entries, cap * sizeof *grown);
        if (grown == NULL)
            return ENOMEM;
        s->entries = grown;
        s->cap = cap;
    }
    struct entry *e = &s->entries[s->count];
    memset(e, 0, sizeof *e);
    e->name_len = strlen(name);
    e->name = malloc(e->name_len + 1);
    if (e->name == NULL)
        return ENOMEM;
    memcpy(e->name, name, e->name_len + 1);
    s->count++;
    return 0;
}

/* Each entry is looked up by its full path, not relative to the open folder: the same
 * calls as os.lstat(path), which tools that watch or fault-inject by path rely on. */
static void scan_entry(const char *dir, size_t dir_len, struct entry *e, int want_xattrs, char **pathbuf,
                       size_t *pathcap)
{
    size_t need = dir_len + 1 + e->name_len + 1;
    if (need > *pathcap) {
        char *grown = realloc(*pathbuf, need);
        if (grown == NULL) {
            e->err = ENOMEM;
            return;
        }
        *pathbuf = grown;
        *pathcap = need;
    }
    memcpy(*pathbuf, dir, dir_len);
    size_t at = dir_len;
    if (at == 0 || (*pathbuf)[at - 1] != '/')
        (*pathbuf)[at++] = '/';
    memcpy(*pathbuf + at, e->name, e->name_len + 1);
    const char *path = *pathbuf;
    if (lstat(path, &e->st) != 0) {
        e->err = errno;
        return;
    }
    if (S_ISLNK(e->st.st_mode))
        e->link_err = read_link(path, e);
    if (want_xattrs && !S_ISSOCK(e->st.st_mode))
        read_xattrs(path, &e->xattrs);
}

static void scan_directory(const char *dir, size_t dir_len, int want_xattrs, struct scan *s)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        s->err = errno;
        return;
    }
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        s->err = errno;
        close(fd);
        return;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            s->err = errno; /* 0 at the end */
            break;
        }
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
            continue;
        if ((s->err = add_entry(s, n)) != 0)
            break;
    }
    if (s->err == 0) {
        char *pathbuf = NULL;
        size_t pathcap = 0;
        for (size_t i = 0; i < s->count; i++)
            scan_entry(dir, dir_len, &s->entries[i], want_xattrs, &pathbuf, &pathcap);
        free(pathbuf);
    }
    closedir(d);
    if (s->count && s->count < s->cap) { /* a held scan keeps only what it uses */
        struct entry *fitted = realloc(s->entries, s->count * sizeof *fitted);
        if (fitted != NULL) {
            s->entries = fitted;
            s->cap = s->count;
        }
    }
}

static PyObject *time_text_object(struct zone_cache *zones, const struct timespec *t)
{
    struct time_text text;
    format_time(zones, (long long)t->tv_sec * 1000000000LL + t->tv_nsec, &text);
    return text.len ? PyUnicode_FromStringAndSize(text.text, text.len) : Py_NewRef(Py_None);
}

/* The times are formatted here, not during the scan: a scan held until the walk takes it
 * (a prescan) keeps ~130 bytes less an entry, and formatting costs well under a microsecond. */
static PyObject *stat_object(const struct entry *e, struct zone_cache *zones)
{
    const struct stat *st = &e->st;
    PyObject *o = PyStructSequence_New(StatType);
    if (o == NULL)
        return NULL;
    PyObject *v[STAT_FIELDS] = {
        PyLong_FromUnsignedLong(st->st_mode),
        PyLong_FromUnsignedLongLong(st->st_ino),
        PyLong_FromUnsignedLongLong(st->st_dev),
        PyLong_FromUnsignedLongLong(st->st_nlink),
        PyLong_FromUnsignedLong(st->st_uid),
        PyLong_FromUnsignedLong(st->st_gid),
        PyLong_FromLongLong(st->st_size),
        PyLong_FromLongLong((long long)st->st_atim.tv_sec * 1000000000LL + st->st_atim.tv_nsec),
        PyLong_FromLongLong((long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec),
        PyLong_FromLongLong((long long)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec),
        PyLong_FromUnsignedLongLong(st->st_rdev),
        time_text_object(zones, &st->st_atim),
        time_text_object(zones, &st->st_mtim),
        time_text_object(zones, &st->st_ctim),
    };
    for (int i = 0; i < STAT_FIELDS; i++) {
        if (v[i] == NULL) {
            for (int j = 0; j < STAT_FIELDS; j++)
                Py_XDECREF(v[j]);
            Py_DECREF(o);
            return NULL;
        }
        PyStructSequence_SET_ITEM(o, i, v[i]);
    }
    return o;
}

static PyObject *xattr_list(const struct xattr_buf *x)
{
    PyObject *list = PyList_New(0);
    const char *name = x->names;
    for (int i = 0; list != NULL && i < x->count; i++, name += strlen(name) + 1) {
        if (x->value_lens[i] < 0)
            continue;
        PyObject *item = Py_BuildValue("(Ny#)", PyUnicode_DecodeFSDefault(name), x->values[i],
                                       x->value_lens[i]);
        if (item == NULL || PyList_Append(list, item) != 0) {
            Py_XDECREF(item);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(item);
    }
    return list;
}

/* (name, errno, Stat or None, link target bytes or errno or None, xattrs list or None) */
static PyObject *entry_object(const struct entry *e, int want_xattrs, struct zone_cache *zones)
{
    PyObject *name = PyUnicode_DecodeFSDefaultAndSize(e->name, (Py_ssize_t)e->name_len);
    if (name == NULL)
        return NULL;
    if (e->err)
        return Py_BuildValue("(NiOOO)", name, e->err, Py_None, Py_None, Py_None);
    PyObject *st = stat_object(e, zones);
    if (st == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    PyObject *link;
    if (e->link != NULL)
        link = PyBytes_FromStringAndSize(e->link, e->link_len);
    else if (e->link_err)
        link = PyLong_FromLong(e->link_err);
    else
        link = Py_NewRef(Py_None);
    PyObject *xattrs = want_xattrs && !S_ISSOCK(e->st.st_mode) ? xattr_list(&e->xattrs) : Py_NewRef(Py_None);
    if (link == NULL || xattrs == NULL) {
        Py_DECREF(name);
        Py_DECREF(st);
        Py_XDECREF(link);
        Py_XDECREF(xattrs);
        return NULL;
    }
    return Py_BuildValue("(NiNNN)", name, 0, st, link, xattrs);
}

/* The entries of a scan as scan_dir returns them. */
static PyObject *entries_list(const struct scan *s, int want_xattrs)
{
    struct zone_cache zones;
    memset(&zones, 0, sizeof zones);
    PyObject *result = PyList_New((Py_ssize_t)s->count);
    for (size_t i = 0; result != NULL && i < s->count; i++) {
        PyObject *item = entry_object(&s->entries[i], want_xattrs, &zones);
        if (item == NULL)
            Py_CLEAR(result);
        else
            PyList_SET_ITEM(result, (Py_ssize_t)i, item);
    }
    return result;
}

/* A directory's scan; NULL with OSError set (named as given, as os.scandir) when the
 * directory cannot be opened or read. */
static int scan_path(PyObject *given, int want_xattrs, struct scan *s)
{
    PyObject *path;
    if (!PyUnicode_FSConverter(given, &path))
        return 0;
    const char *dir = PyBytes_AS_STRING(path);
    size_t dir_len = (size_t)PyBytes_GET_SIZE(path);
    Py_BEGIN_ALLOW_THREADS
    scan_directory(dir, dir_len, want_xattrs, s);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (s->err) {
        free_scan(s);
        errno = s->err;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, given);
        return 0;
    }
    return 1;
}

/* scan_dir(path: bytes, xattrs: bool) -> [(name, errno, Stat, link, xattrs), ...] in
 * directory order; OSError when the directory cannot be opened or read. */
static PyObject *scan_dir(PyObject *self, PyObject *args)
{
    PyObject *given;
    int want_xattrs;
    if (!PyArg_ParseTuple(args, "Op", &given, &want_xattrs))
        return NULL;
    struct scan s = {0};
    if (!scan_path(given, want_xattrs, &s))
        return NULL;
    PyObject *result = entries_list(&s, want_xattrs);
    free_scan(&s);
    return result;
}

/* A scan held in its C form (~270 bytes an entry against ~800 as Python objects) until the
 * walk takes it: what a backup scans ahead while the key is derived. */
typedef struct {
    PyObject_HEAD
    struct scan s;
    int want_xattrs;
    int taken;
} HeldScan;

static void held_dealloc(HeldScan *h)
{
    if (!h->taken)
        free_scan(&h->s);
    Py_TYPE(h)->tp_free((PyObject *)h);
}

static Py_ssize_t held_len(HeldScan *h)
{
    return h->taken ? 0 : (Py_ssize_t)h->s.count;
}

static PyObject *held_take(HeldScan *h, PyObject *unused)
{
    if (h->taken) {
        PyErr_SetString(PyExc_ValueError, "this scan was taken already");
        return NULL;
    }
    PyObject *result = entries_list(&h->s, h->want_xattrs);
    free_scan(&h->s);
    h->taken = 1;
    return result;
}

static PyObject *held_folders(HeldScan *h, PyObject *unused)
{
    PyObject *result = PyList_New(0);
    for (size_t i = 0; result != NULL && !h->taken && i < h->s.count; i++) {
        const struct entry *e = &h->s.entries[i];
        if (e->err || !S_ISDIR(e->st.st_mode))
            continue;
        PyObject *item = Py_BuildValue("(NK)", PyUnicode_DecodeFSDefaultAndSize(e->name, (Py_ssize_t)e->name_len),
                                       (unsigned long long)e->st.st_dev);
        if (item == NULL || PyList_Append(result, item) != 0)
            Py_CLEAR(result);
        Py_XDECREF(item);
    }
    return result;
}

static PyMethodDef held_methods[] = {
    {"take", (PyCFunction)held_take, METH_NOARGS,
     "take() -> the entries as scan_dir gives them (once: the scan's memory is freed)"},
    {"folders", (PyCFunction)held_folders, METH_NOARGS, "folders() -> [(name, st_dev)] of its folders"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods held_sequence = {.sq_length = (lenfunc)held_len};

static PyTypeObject HeldScanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "restique._scan.HeldScan",
    .tp_basicsize = sizeof(HeldScan),
    .tp_dealloc = (destructor)held_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "a directory's scan, held until taken",
    .tp_methods = held_methods,
    .tp_as_sequence = &held_sequence,
};

/* hold_dir(path, xattrs) -> HeldScan; OSError as scan_dir */
static PyObject *hold_dir(PyObject *self, PyObject *args)
{
    PyObject *given;
    int want_xattrs;
    if (!PyArg_ParseTuple(args, "Op", &given, &want_xattrs))
        return NULL;
    HeldScan *h = PyObject_New(HeldScan, &HeldScanType);
    if (h == NULL)
        return NULL;
    memset(&h->s, 0, sizeof h->s);
    h->want_xattrs = want_xattrs;
    h->taken = 1; /* nothing to free until the scan is made */
    if (!scan_path(given, want_xattrs, &h->s)) {
        Py_DECREF(h);
        return NULL;
    }
    h->taken = 0;
    return (PyObject *)h;
}

static PyMethodDef methods[] = {
    {"scan_dir", scan_dir, METH_VARARGS,
     "scan_dir(path, xattrs) -> [(name, errno, Stat or None, link target or errno or None, "
     "[(xattr name, value), ...] or None), ...]"},
    {"hold_dir", hold_dir, METH_VARARGS,
     "hold_dir(path, xattrs) -> HeldScan: scan_dir's scan, kept in C until taken"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan",
                                    "directory scans without the GIL", -1, methods};

PyMODINIT_FUNC PyInit__scan(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    StatType = PyStructSequence_NewType(&stat_desc);
    if (StatType == NULL || PyModule_AddObjectRef(m, "Stat", (PyObject *)StatType) != 0 ||
        PyType_Ready(&HeldScanType) != 0 || PyModule_AddObjectRef(m, "HeldScan", (PyObject *)&HeldScanType) != 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
