/* The RFC 3339 times of tree nodes ("2023-05-01T12:34:56.123456789+02:00") read in C. Trees
 * hold three times per entry, and restore, mount and GoTime read them by the ten thousand.
 * Only the common shape is read here; for any other text the functions return None and the
 * caller's Python parser decides (its errors, years before 1, times past 2262). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1-12). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Reads text in the common shape ('YYYY-MM-DDTHH:MM:SS', an optional fraction, 'Z' or
 * '+hh:mm') into *unix_ns and *offset (seconds east of UTC). Returns 1 when it did, 0 for
 * any other text, -1 with an exception set. */
static int read_time(PyObject *arg, int64_t *unix_ns, int64_t *offset)
{
    Py_ssize_t n;
    const char *s;
    if (!PyUnicode_Check(arg) || !PyUnicode_IS_ASCII(arg))
        return 0;
    s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (s == NULL)
        return -1;
    if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
        return 0;
    int year = digits(s, 4), month = digits(s + 5, 2), day = digits(s + 8, 2);
    int hour = digits(s + 11, 2), minute = digits(s + 14, 2), second = digits(s + 17, 2);
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59
        || second < 0 || second > 59)
        return 0;
    static const int month_days[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    if (day > month_days[month] + (month == 2 && leap))
        return 0;
    Py_ssize_t i = 19;
    int64_t nanos = 0;
    if (s[i] == '.') {
        Py_ssize_t start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (i - start < 9)
                nanos = nanos * 10 + (s[i] - '0');
            i++;
        }
        if (i == start)
            return 0;
        for (Py_ssize_t k = i - start; k < 9; k++)
            nanos *= 10;
    }
    if (n - i == 1 && (s[i] == 'Z' || s[i] == 'z')) {
        *offset = 0;
    } else if (n - i == 6 && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return 0;
        *offset = (s[i] == '-' ? -1 : 1) * (int64_t)(oh * 3600 + om * 60);
    } else {
        return 0;
    }
    int64_t seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - *offset;
    if (seconds > INT64_MAX / 1000000000 - 1 || seconds < INT64_MIN / 1000000000 + 1)
        return 0;
    *unix_ns = seconds * 1000000000 + nanos;
    return 1;
}

/* time_ns(text) -> Unix time in ns of a time in the common shape, or None */
static PyObject *time_ns(PyObject *self, PyObject *arg)
{
    int64_t unix_ns, offset;
    int read = read_time(arg, &unix_ns, &offset);
    if (read < 0)
        return NULL;
    if (!read)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(unix_ns);
}

/* parse(text) -> (unix_ns, offset in seconds east of UTC) of a time in the common shape, or None */
static PyObject *parse(PyObject *self, PyObject *arg)
{
    int64_t unix_ns, offset;
    int read = read_time(arg, &unix_ns, &offset);
    if (read < 0)
        return NULL;
    if (!read)
        Py_RETURN_NONE;
    return Py_BuildValue("(Li)", (long long)unix_ns, (int)offset);
}

static PyMethodDef methods[] = {
    {"time_ns", time_ns, METH_O, "time_ns(text) -> Unix time in ns of a time in the common shape, or None"},
    {"parse", parse, METH_O, "parse(text) -> (unix_ns, offset) of a time in the common shape, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gotime",
                                    "RFC 3339 times of tree nodes in their common shape, read natively", -1,
                                    methods};

PyMODINIT_FUNC PyInit__gotime(void)
{
    return PyModule_Create(&module);
}
