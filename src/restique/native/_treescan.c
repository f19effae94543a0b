/* restique._treescan: the references and sizes of a tree blob read straight from its JSON
 * bytes, without building a Python object per node.
 *
 * scan(raw: bytes, ordered=False, complete=False) -> None | (subtrees, contents, count, size, parts)
 *
 *   subtrees  the "subtree" ids of the "dir" nodes, in node order
 *   contents  the "content" ids of the "file" nodes, in node order
 *   count     the number of nodes
 *   size      the sum of "size" over the nodes a restore counts directly (directories, and
 *             entries with links == 1 or inode == 0)
 *   parts     None when no node is a hard link; else, in node order, the subtree id (str)
 *             of every directory and (inode, device_id, size) of every hard-linked entry
 *
 * The answer is given only for the plain case restic writes. None means "decode this tree
 * as JSON instead" and is returned for anything unusual, so that the caller's JSON path
 * keeps deciding every odd or hostile case: text that is not strict JSON, a key written
 * with escapes or in another letter case than restic's, a key given twice, a name with
 * escapes or invalid UTF-8, an id that is not 64 lowercase hex digits, a number that is not
 * a plain non-negative integer below 2^63, a directory without subtree, nesting deeper than
 * a tree needs, (ordered=True) names not in ascending byte order, and (complete=True) what
 * check reports: a node without a name, of an unknown type, a file without a content list,
 * a directory whose subtree is the null id.
 *
 * The text is scanned without the GIL (positions only); the result objects are built after.
 *
 * entry_texts(raw) -> None | {name: text}
 *
 *   the JSON text of each tree entry, by name, when the whole tree is written exactly as
 *   model/node.py's encoder writes it (fields in its order, zero values left out, no
 *   whitespace, strings of printable ASCII that neither encoder escapes, integers in plain
 *   decimal, names in strictly ascending byte order, and for each type only the fields its
 *   node can have); None for any other tree. An unchanged entry's text can then be written
 *   again as it is: the encoder would write those same bytes for the same field values.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ID_LEN 64
#define MAX_DEPTH 64

enum { K_NONE = 0, K_NAME, K_TYPE, K_CONTENT, K_SUBTREE, K_SIZE, K_INODE, K_DEVICE, K_LINKS, K_COUNT };

static const char *const KEY_NAMES[K_COUNT] = {
    "", "name", "type", "content", "subtree", "size", "inode", "device_id", "links",
};
static const size_t KEY_LENS[K_COUNT] = {0, 4, 4, 7, 7, 4, 5, 9, 5};

/* what the scan records: offsets of ids, and per hard link its numbers */
struct item {
    int kind; /* 0: subtree id at off, 1: content id at off, 2: hard link */
    size_t off;
    uint64_t inode, device, size;
};

struct scan {
    const unsigned char *p, *end, *base;
    struct item *items;
    size_t n_items, cap_items;
    size_t count;
    uint64_t size;
    int hardlinks;
    int ordered;
    int complete;
    const unsigned char *prev_name;
    size_t prev_name_len;
    int failed; /* allocation failure: MemoryError instead of None */
};

static int push(struct scan *s, struct item it) {
    if (s->n_items == s->cap_items) {
        size_t cap = s->cap_items ? s->cap_items * 2 : 256;
        struct item *n = realloc(s->items, cap * sizeof(*n));
        if (!n) {
            s->failed = 1;
            return -1;
        }
        s->items = n;
        s->cap_items = cap;
    }
    s->items[s->n_items++] = it;
    return 0;
}

static void ws(struct scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

static unsigned char hex_digit[256]; /* 1 for 0-9 a-f */
static int is_hex(unsigned char c) { return hex_digit[c]; }
static int is_any_hex(unsigned char c) { return is_hex(c) || (c >= 'A' && c <= 'F'); }

/* bytes that end the plain run of a JSON string: the quote, the backslash, control bytes */
static unsigned char string_special[256];
/* bytes a string holds unchanged through both JSON encoders (Go's and model/gojson.py's) */
static unsigned char plain_char[256];

static void init_tables(void) {
    for (int c = 0; c < 0x20; c++)
        string_special[c] = 1;
    string_special['"'] = string_special['\\'] = 1;
    for (int c = '0'; c <= '9'; c++)
        hex_digit[c] = 1;
    for (int c = 'a'; c <= 'f'; c++)
        hex_digit[c] = 1;
    for (int c = 0x20; c < 0x7f; c++)
        plain_char[c] = 1;
    plain_char['"'] = plain_char['\\'] = plain_char['<'] = plain_char['>'] = plain_char['&'] = 0;
}

/* A string starting at s->p ('"'); on success start and len give its raw bytes and *escaped
 * whether it holds a backslash. -1: not a valid JSON string. */
static int string(struct scan *s, const unsigned char **start, size_t *len, int *escaped) {
    if (s->p >= s->end || *s->p != '"')
        return -1;
    const unsigned char *q = ++s->p;
    int esc = 0;
    while (q < s->end) {
        while (q < s->end && !string_special[*q])
            q++;
        if (q >= s->end)
            break;
        unsigned char c = *q;
        if (c == '"') {
            *start = s->p;
            *len = (size_t)(q - s->p);
            *escaped = esc;
            s->p = q + 1;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            esc = 1;
            if (q + 1 >= s->end)
                return -1;
            unsigned char e = q[1];
            if (e == 'u') {
                if (q + 6 > s->end)
                    return -1;
                for (int i = 2; i < 6; i++)
                    if (!is_any_hex(q[i]))
                        return -1;
                q += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == 0)
                return -1;
            q += 2;
            continue;
        }
        q++;
    }
    return -1;
}

static int valid_utf8(const unsigned char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t extra;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + extra >= n)
            return 0;
        for (size_t k = 1; k <= extra; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += extra + 1;
    }
    return 1;
}

/* A JSON number; *plain set with its value when it is a non-negative integer of at most
 * 18 digits (anything else JSON allows is skipped with *plain = 0; a long integer gives -1
 * so that the JSON path decides). */
static int number(struct scan *s, int *plain, uint64_t *value) {
    const unsigned char *q = s->p;
    int neg = 0, frac = 0;
    if (q < s->end && *q == '-') {
        neg = 1;
        q++;
    }
    if (q >= s->end || *q < '0' || *q > '9')
        return -1;
    const unsigned char *digits = q;
    if (*q == '0')
        q++;
    else
        while (q < s->end && *q >= '0' && *q <= '9')
            q++;
    size_t ndigits = (size_t)(q - digits);
    if (q < s->end && *q == '.') {
        frac = 1;
        q++;
        if (q >= s->end || *q < '0' || *q > '9')
            return -1;
        while (q < s->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < s->end && (*q == 'e' || *q == 'E')) {
        frac = 1;
        q++;
        if (q < s->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= s->end || *q < '0' || *q > '9')
            return -1;
        while (q < s->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (ndigits > 18)
        return -1;
    *plain = !neg && !frac;
    if (*plain) {
        uint64_t v = 0;
        for (size_t i = 0; i < ndigits; i++)
            v = v * 10 + (uint64_t)(digits[i] - '0');
        *value = v;
    }
    s->p = q;
    return 0;
}

#define literal(s, word) literal_n(s, word, sizeof(word) - 1)

static int literal_n(struct scan *s, const char *word, size_t n) {
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

/* The members of an object or array, iterated as
 *     for (more = open_members(s, '[', ']'); more > 0; more = next_member(s, ']')) { member }
 *     if (more < 0) fail;
 * each member starts after its whitespace; more ends 0 past the closing bracket, -1 on bad text. */
static int open_members(struct scan *s, unsigned char open, unsigned char close) {
    if (s->p >= s->end || *s->p != open)
        return -1;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 0;
    }
    return 1;
}

static int next_member(struct scan *s, unsigned char close) {
    ws(s);
    if (s->p >= s->end)
        return -1;
    if (*s->p == ',') {
        s->p++;
        ws(s);
        return 1;
    }
    if (*s->p == close) {
        s->p++;
        return 0;
    }
    return -1;
}

/* the ':' between an object's key and its value, with the whitespace around it */
static int colon(struct scan *s) {
    ws(s);
    if (s->p >= s->end || *s->p != ':')
        return -1;
    s->p++;
    ws(s);
    return 0;
}

/* any JSON value, checked and skipped */
static int skip_value(struct scan *s, int depth) {
    if (depth > MAX_DEPTH)
        return -1;
    ws(s);
    if (s->p >= s->end)
        return -1;
    unsigned char c = *s->p;
    const unsigned char *st;
    size_t len;
    int esc, plain;
    uint64_t v;
    int more;
    switch (c) {
    case '"':
        return string(s, &st, &len, &esc);
    case 't':
        return literal(s, "true");
    case 'f':
        return literal(s, "false");
    case 'n':
        return literal(s, "null");
    case '[':
        for (more = open_members(s, '[', ']'); more > 0; more = next_member(s, ']'))
            if (skip_value(s, depth + 1) < 0)
                return -1;
        return more;
    case '{':
        for (more = open_members(s, '{', '}'); more > 0; more = next_member(s, '}'))
            if (string(s, &st, &len, &esc) < 0 || colon(s) < 0 || skip_value(s, depth + 1) < 0)
                return -1;
        return more;
    default:
        return number(s, &plain, &v);
    }
}

/* which recognised key a (backslash-free) key is; -1 when it matches one only when letter
 * case is ignored (as Go's decoder would): the JSON path decides those */
static int key_of(const unsigned char *k, size_t len) {
    for (int i = 1; i < K_COUNT; i++) {
        size_t n = KEY_LENS[i];
        if (n != len || (k[0] | 0x20) != KEY_NAMES[i][0])
            continue;
        if (memcmp(k, KEY_NAMES[i], n) == 0)
            return i;
        size_t j = 0;
        while (j < n && (k[j] | 0x20) == KEY_NAMES[i][j])
            j++;
        if (j == n)
            return -1;
    }
    return K_NONE;
}

/* an id string (exactly 64 lowercase hex digits); its offset in *off */
static int id_string(struct scan *s, size_t *off) {
    const unsigned char *p = s->p;
    if (s->end - p >= ID_LEN + 2 && p[0] == '"' && p[ID_LEN + 1] == '"') { /* the usual case */
        for (size_t i = 1; i <= ID_LEN; i++)
            if (!hex_digit[p[i]])
                return -1;
        *off = (size_t)(p + 1 - s->base);
        s->p = p + ID_LEN + 2;
        return 0;
    }
    const unsigned char *st;
    size_t len;
    int esc;
    if (string(s, &st, &len, &esc) < 0 || esc || len != ID_LEN)
        return -1;
    for (size_t i = 0; i < ID_LEN; i++)
        if (!is_hex(st[i]))
            return -1;
    *off = (size_t)(st - s->base);
    return 0;
}

/* an integer field: null counts as 0 */
static int uint_field(struct scan *s, uint64_t *value) {
    if (s->p < s->end && *s->p == 'n') {
        *value = 0;
        return literal(s, "null");
    }
    int plain;
    if (number(s, &plain, value) < 0 || !plain)
        return -1;
    return 0;
}

static int node(struct scan *s) {
    int seen[K_COUNT] = {0};
    const unsigned char *name = (const unsigned char *)"", *type = NULL;
    size_t name_len = 0, type_len = 0;
    size_t content_start = s->n_items, content_end = s->n_items;
    int has_content_list = 0;
    int has_subtree = 0;
    size_t subtree_off = 0;
    uint64_t size = 0, inode = 0, device = 0, links = 0;
    int more, more_ids;
    for (more = open_members(s, '{', '}'); more > 0; more = next_member(s, '}')) {
        const unsigned char *k;
        size_t klen;
        int esc;
        if (string(s, &k, &klen, &esc) < 0 || esc)
            return -1;
        int key = key_of(k, klen);
        if (key < 0 || (key && seen[key]))
            return -1;
        seen[key] = 1;
        if (colon(s) < 0)
            return -1;
        switch (key) {
        case K_NAME:
            if (string(s, &name, &name_len, &esc) < 0 || esc || !valid_utf8(name, name_len))
                return -1;
            break;
        case K_TYPE:
            if (string(s, &type, &type_len, &esc) < 0 || esc)
                return -1;
            break;
        case K_CONTENT:
            if (s->p < s->end && *s->p == 'n') {
                if (literal(s, "null") < 0)
                    return -1;
                break;
            }
            has_content_list = 1;
            content_start = s->n_items;
            for (more_ids = open_members(s, '[', ']'); more_ids > 0; more_ids = next_member(s, ']')) {
                size_t off;
                if (id_string(s, &off) < 0)
                    return -1;
                struct item it = {1, off, 0, 0, 0};
                if (push(s, it) < 0)
                    return -1;
            }
            if (more_ids < 0)
                return -1;
            content_end = s->n_items;
            break;
        case K_SUBTREE:
            if (s->p < s->end && *s->p == 'n') {
                if (literal(s, "null") < 0)
                    return -1;
                break;
            }
            if (id_string(s, &subtree_off) < 0)
                return -1;
            has_subtree = 1;
            break;
        case K_SIZE:
            if (uint_field(s, &size) < 0)
                return -1;
            break;
        case K_INODE:
            if (uint_field(s, &inode) < 0)
                return -1;
            break;
        case K_DEVICE:
            if (uint_field(s, &device) < 0)
                return -1;
            break;
        case K_LINKS:
            if (uint_field(s, &links) < 0)
                return -1;
            break;
        default:
            if (skip_value(s, 2) < 0)
                return -1;
        }
    }
    if (more < 0 || !type)
        return -1;
    int is_dir = type_len == 3 && memcmp(type, "dir", 3) == 0;
    int is_file = type_len == 4 && memcmp(type, "file", 4) == 0;
    if (s->complete) {
        static const char *const other[] = {"symlink", "socket", "chardev", "dev", "fifo", NULL};
        int known = is_dir || is_file;
        for (int i = 0; !known && other[i]; i++)
            known = type_len == strlen(other[i]) && memcmp(type, other[i], type_len) == 0;
        if (!known || name_len == 0 || (is_file && !has_content_list))
            return -1;
        if (is_dir && has_subtree) {
            int null_id = 1;
            for (size_t i = 0; i < ID_LEN && null_id; i++)
                null_id = s->base[subtree_off + i] == '0';
            if (null_id)
                return -1;
        }
    }
    if (!is_file && content_end > content_start) /* ids of a non-file are not references */
        s->n_items = content_start;
    if (s->ordered) {
        size_t n = name_len < s->prev_name_len ? name_len : s->prev_name_len;
        int c = memcmp(name, s->prev_name, n);
        if (c < 0 || (c == 0 && name_len < s->prev_name_len))
            return -1;
        s->prev_name = name;
        s->prev_name_len = name_len;
    }
    s->count++;
    if (is_dir) {
        if (!has_subtree)
            return -1;
        struct item it = {0, subtree_off, 0, 0, 0};
        if (push(s, it) < 0)
            return -1;
    }
    if (links == 1 || is_dir || inode == 0) {
        if (s->size + size < s->size)
            return -1;
        s->size += size;
    } else {
        struct item it = {2, 0, inode, device, size};
        s->hardlinks = 1;
        if (push(s, it) < 0)
            return -1;
    }
    return 0;
}

static int tree(struct scan *s) {
    int have_nodes = 0; /* no nodes (even "{}"): rare, the JSON path decides */
    int more, more_nodes;
    ws(s);
    for (more = open_members(s, '{', '}'); more > 0; more = next_member(s, '}')) {
        const unsigned char *k;
        size_t klen;
        int esc;
        if (string(s, &k, &klen, &esc) < 0 || esc)
            return -1;
        int is_nodes = klen == 5 && memcmp(k, "nodes", 5) == 0;
        if (!is_nodes && klen == 5) {
            size_t j = 0;
            while (j < 5 && (k[j] | 0x20) == "nodes"[j])
                j++;
            if (j == 5)
                return -1;
        }
        if (colon(s) < 0)
            return -1;
        if (is_nodes) {
            if (have_nodes)
                return -1;
            have_nodes = 1;
            for (more_nodes = open_members(s, '[', ']'); more_nodes > 0; more_nodes = next_member(s, ']'))
                if (node(s) < 0)
                    return -1;
            if (more_nodes < 0)
                return -1;
        } else if (skip_value(s, 1) < 0) {
            return -1;
        }
    }
    if (more < 0)
        return -1;
    ws(s);
    if (s->p != s->end || !have_nodes)
        return -1;
    return 0;
}

static PyObject *hex_id(const unsigned char *p) {
    PyObject *o = PyUnicode_New(ID_LEN, 127);
    if (o)
        memcpy(PyUnicode_DATA(o), p, ID_LEN);
    return o;
}

static PyObject *build(struct scan *s) {
    PyObject *subtrees = NULL, *contents = NULL, *parts = NULL, *result = NULL;
    if (!(subtrees = PyList_New(0)) || !(contents = PyList_New(0)))
        goto done;
    if (s->hardlinks && !(parts = PyList_New(0)))
        goto done;
    for (size_t i = 0; i < s->n_items; i++) {
        struct item *it = &s->items[i];
        PyObject *o;
        if (it->kind == 2) {
            o = Py_BuildValue("(KKK)", (unsigned long long)it->inode, (unsigned long long)it->device,
                              (unsigned long long)it->size);
            if (!o || PyList_Append(parts, o) < 0) {
                Py_XDECREF(o);
                goto done;
            }
            Py_DECREF(o);
            continue;
        }
        o = hex_id(s->base + it->off);
        if (!o)
            goto done;
        int bad = PyList_Append(it->kind == 0 ? subtrees : contents, o) < 0 ||
                  (it->kind == 0 && parts && PyList_Append(parts, o) < 0);
        Py_DECREF(o);
        if (bad)
            goto done;
    }
    result = Py_BuildValue("(OOnKO)", subtrees, contents, (Py_ssize_t)s->count,
                           (unsigned long long)s->size, parts ? parts : Py_None);
done:
    Py_XDECREF(subtrees);
    Py_XDECREF(contents);
    Py_XDECREF(parts);
    return result;
}

static PyObject *scan(PyObject *self, PyObject *args) {
    PyObject *raw;
    int ordered = 0, complete = 0;
    if (!PyArg_ParseTuple(args, "O!|pp:scan", &PyBytes_Type, &raw, &ordered, &complete))
        return NULL;
    struct scan s;
    memset(&s, 0, sizeof(s));
    s.base = s.p = (const unsigned char *)PyBytes_AS_STRING(raw);
    s.end = s.p + PyBytes_GET_SIZE(raw);
    s.ordered = ordered;
    s.complete = complete;
    s.prev_name = (const unsigned char *)"";
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = tree(&s);
    Py_END_ALLOW_THREADS
    PyObject *result;
    if (s.failed)
        result = PyErr_NoMemory();
    else if (rc < 0)
        result = Py_NewRef(Py_None);
    else
        result = build(&s);
    free(s.items);
    return result;
}

/* --- entry_texts: the canonical text of each entry --- */

/* a string of plain bytes only; its bytes in *start, *len */
static int plain_string(struct scan *s, const unsigned char **start, size_t *len) {
    if (s->p >= s->end || *s->p != '"')
        return -1;
    const unsigned char *q = s->p + 1;
    while (q < s->end && plain_char[*q])
        q++;
    if (q >= s->end || *q != '"')
        return -1;
    *start = s->p + 1;
    *len = (size_t)(q - *start);
    s->p = q + 1;
    return 0;
}

static int plain_nonempty_string(struct scan *s) {
    const unsigned char *start;
    size_t len;
    return plain_string(s, &start, &len) < 0 || len == 0 ? -1 : 0;
}

/* an integer as the encoders write it: decimal digits without a leading zero (nonzero: not 0
 * either, the encoders leave such a field out) */
static int plain_uint(struct scan *s, int nonzero) {
    const unsigned char *q = s->p;
    if (q >= s->end || *q < '0' || *q > '9' || (*q == '0' && nonzero))
        return -1;
    if (*q == '0')
        q++;
    else
        while (q < s->end && *q >= '0' && *q <= '9')
            q++;
    if (q - s->p > 20)
        return -1;
    s->p = q;
    return 0;
}

/* whether the text goes on with key (written with its comma, quotes and colon); skipped if so */
#define has_key(s, key) has_key_n(s, key, sizeof(key) - 1)

static int has_key_n(struct scan *s, const char *key, size_t n) {
    return literal_n(s, key, n) == 0;
}

static int is_type(const unsigned char *type, size_t len, const char *name) {
    return len == strlen(name) && memcmp(type, name, len) == 0;
}

/* which of content list, link target, device and subtree a node of this type has when
 * encoded: 1 has it, 0 has not (content: 1 a list, 0 null); -1: not a type written here */
static int type_fields(const unsigned char *type, size_t len, int *list, int *link, int *device, int *subtree) {
    *list = *link = *device = *subtree = 0;
    if (is_type(type, len, "file"))
        *list = 1;
    else if (is_type(type, len, "dir"))
        *subtree = 1;
    else if (is_type(type, len, "symlink"))
        *link = 1;
    else if (is_type(type, len, "dev") || is_type(type, len, "chardev"))
        *device = 1;
    else if (!is_type(type, len, "fifo") && !is_type(type, len, "socket"))
        return -1;
    return 0;
}

/* one entry in the encoder's exact form; its name in *name, *name_len */
static int canonical_node(struct scan *s, const unsigned char **name, size_t *name_len) {
    const unsigned char *type, *text;
    size_t type_len, len;
    if (literal(s, "{\"name\":") < 0 || plain_string(s, name, name_len) < 0 || *name_len == 0 ||
        literal(s, ",\"type\":") < 0 || plain_string(s, &type, &type_len) < 0)
        return -1;
    if (has_key(s, ",\"mode\":") && plain_uint(s, 1) < 0)
        return -1;
    if (literal(s, ",\"mtime\":") < 0 || plain_string(s, &text, &len) < 0 || literal(s, ",\"atime\":") < 0 ||
        plain_string(s, &text, &len) < 0 || literal(s, ",\"ctime\":") < 0 || plain_string(s, &text, &len) < 0 ||
        literal(s, ",\"uid\":") < 0 || plain_uint(s, 0) < 0 || literal(s, ",\"gid\":") < 0 || plain_uint(s, 0) < 0)
        return -1;
    if ((has_key(s, ",\"user\":") && plain_nonempty_string(s) < 0) ||
        (has_key(s, ",\"group\":") && plain_nonempty_string(s) < 0) ||
        (has_key(s, ",\"inode\":") && plain_uint(s, 1) < 0) ||
        (has_key(s, ",\"device_id\":") && plain_uint(s, 1) < 0) ||
        (has_key(s, ",\"size\":") && plain_uint(s, 1) < 0) || (has_key(s, ",\"links\":") && plain_uint(s, 1) < 0))
        return -1;
    int has_link = has_key(s, ",\"linktarget\":");
    if (has_link && plain_nonempty_string(s) < 0)
        return -1;
    int has_device = has_key(s, ",\"device\":");
    if (has_device && plain_uint(s, 1) < 0)
        return -1;
    if (literal(s, ",\"content\":") < 0)
        return -1;
    int has_list = !has_key(s, "null");
    if (has_list && !has_key(s, "[]")) {
        if (literal(s, "[") < 0)
            return -1;
        do {
            if (plain_string(s, &text, &len) < 0)
                return -1;
        } while (has_key(s, ","));
        if (literal(s, "]") < 0)
            return -1;
    }
    int has_subtree = has_key(s, ",\"subtree\":");
    if ((has_subtree && plain_nonempty_string(s) < 0) || literal(s, "}") < 0)
        return -1;
    int list, link, device, subtree;
    if (type_fields(type, type_len, &list, &link, &device, &subtree) < 0 || has_list != list ||
        has_subtree != subtree || (has_link && !link) || (has_device && !device))
        return -1;
    return 0;
}

struct span {
    const unsigned char *name;
    size_t name_len;
    const unsigned char *start;
    size_t len;
};

/* the spans of all entries of a canonical tree; -1 for any other tree */
static int canonical_tree(struct scan *s, struct span **spans, size_t *count) {
    size_t cap = 0;
    *spans = NULL;
    *count = 0;
    if (literal(s, "{\"nodes\":[") < 0)
        return -1;
    if (!has_key(s, "]")) {
        do {
            struct span sp;
            sp.start = s->p;
            if (canonical_node(s, &sp.name, &sp.name_len) < 0)
                return -1;
            sp.len = (size_t)(s->p - sp.start);
            if (*count) {
                struct span *prev = &(*spans)[*count - 1];
                size_t n = sp.name_len < prev->name_len ? sp.name_len : prev->name_len;
                int c = memcmp(sp.name, prev->name, n);
                if (c < 0 || (c == 0 && sp.name_len <= prev->name_len))
                    return -1;
            }
            if (*count == cap) {
                cap = cap ? cap * 2 : 64;
                struct span *n = realloc(*spans, cap * sizeof(*n));
                if (!n) {
                    s->failed = 1;
                    return -1;
                }
                *spans = n;
            }
            (*spans)[(*count)++] = sp;
        } while (has_key(s, ","));
        if (literal(s, "]") < 0)
            return -1;
    }
    if (literal(s, "}") < 0)
        return -1;
    has_key(s, "\n");
    return s->p == s->end ? 0 : -1;
}

static PyObject *ascii_text(const unsigned char *p, size_t len) {
    PyObject *o = PyUnicode_New((Py_ssize_t)len, 127);
    if (o)
        memcpy(PyUnicode_DATA(o), p, len);
    return o;
}

/* A folder's tree takes microseconds: letting other threads in for that only makes the walk
 * wait for the GIL to come back (up to the switch interval) */
#define KEEP_GIL_BELOW (256 * 1024)

static PyObject *entry_texts(PyObject *self, PyObject *args) {
    Py_buffer raw;
    if (!PyArg_ParseTuple(args, "y*:entry_texts", &raw))
        return NULL;
    struct scan s;
    memset(&s, 0, sizeof(s));
    s.base = s.p = (const unsigned char *)raw.buf;
    s.end = s.p + raw.len;
    struct span *spans;
    size_t count;
    int rc;
    if (raw.len < KEEP_GIL_BELOW) {
        rc = canonical_tree(&s, &spans, &count);
    } else {
        Py_BEGIN_ALLOW_THREADS
        rc = canonical_tree(&s, &spans, &count);
        Py_END_ALLOW_THREADS
    }
    PyObject *result = NULL;
    if (s.failed) {
        PyErr_NoMemory();
        goto done;
    }
    if (rc < 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (!(result = PyDict_New()))
        goto done;
    for (size_t i = 0; i < count; i++) {
        PyObject *name = ascii_text(spans[i].name, spans[i].name_len);
        PyObject *text = name ? ascii_text(spans[i].start, spans[i].len) : NULL;
        int bad = !text || PyDict_SetItem(result, name, text) < 0;
        Py_XDECREF(name);
        Py_XDECREF(text);
        if (bad) {
            Py_CLEAR(result);
            goto done;
        }
    }
done:
    free(spans);
    PyBuffer_Release(&raw);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(raw, ordered=False, complete=False) -> None | (subtrees, contents, count, size, parts): the references "
     "and sizes of a tree blob's plain JSON, None for anything the JSON decoder should decide."},
    {"entry_texts", entry_texts, METH_VARARGS,
     "entry_texts(raw) -> None | {name: text}: the JSON text of each entry of a tree written exactly as the "
     "encoder writes it, None for any other tree."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "restique._treescan",
                                    "Tree blob references read from the JSON bytes.", -1, methods};

PyMODINIT_FUNC PyInit__treescan(void) {
    init_tables();
    return PyModule_Create(&module);
}
