/* One pass over a block of flow-log lines: what fastscan's numpy path does, line by line in C.
 *
 * `scan` reads each line once: it splits the line at single spaces into exactly nf non-empty fields of
 * printable ASCII, checks every field the reference parser (floodgate.core.flowlog.FlowLogParser) would
 * question, and either keeps the record as one row of packed columns (an inbound record that is plainly
 * good), counts it (an outbound record whose connection the VPC did not open: NOT_INBOUND), or hands the
 * line back for the reference parser to judge. Any doubt means a leftover: the reference names every
 * reason, so handing back more than needed costs time, never correctness.
 *
 * The input is untrusted: nothing is read past the buffer, numbers are parsed only up to the widths that
 * fit in 64 bits, and every output column is sized from the block's length before the pass.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* More than any format can have: FlowLogFormat takes each of the ~40 known fields at most once. */
#define MAX_FIELDS 64

/* Field roles, in the order of the `positions` tuple (-1: the format lacks the field). */
enum {
    F_SRC, F_PKT_SRC, F_DST, F_PACKETS, F_BYTES, F_START, F_END, F_ACTION, F_STATUS, F_DIRECTION,
    F_TYPE, F_TCP_FLAGS, F_PROTOCOL, F_AWS_SERVICE, F_SRC_PORT, F_DST_PORT, F_ROLES
};

/* floodgate.core.flowlog's limits: counters above them are corruption, not traffic. */
#define MAX_PACKETS 100000000000LL
#define MAX_BYTES 100000000000000LL
#define MIN_BYTES_PER_PACKET 20
#define EPHEMERAL_PORT_FLOOR 1024
#define SYN 2

typedef struct {
    const char *at;
    Py_ssize_t len;
} Field;

typedef struct {
    Py_ssize_t nf;
    int pos[F_ROLES];
    int bounded;
    long long oldest_end, newest_start;
    Py_ssize_t n_ranges;
    long long (*ranges)[2];
} Setup;

/* Byte classes of a line: field text (printable ASCII and DEL, as numpy's path accepts), the separating
 * space, the newline that ends it, and anything else (controls, non-ASCII), which the reference judges. */
enum { C_TEXT, C_SPACE, C_NEWLINE, C_ODD };
static unsigned char byte_class[256];

static void init_classes(void) {
    for (int c = 0; c < 256; c++) {
        byte_class[c] = (c > 32 && c < 128) ? C_TEXT : C_ODD;
    }
    byte_class[' '] = C_SPACE;
    byte_class['\n'] = C_NEWLINE;
}

static int is(const Field *f, const char *word, Py_ssize_t len) {
    return f->len == len && memcmp(f->at, word, (size_t)len) == 0;
}
#define IS(f, literal) is((f), (literal), (Py_ssize_t)(sizeof(literal) - 1))

/* An unsigned decimal of at most `width` (<= 18) digits, leading zeros allowed (as int() reads them). */
static int number(const Field *f, Py_ssize_t width, long long *value) {
    if (f->len > width) {
        return 0;
    }
    long long v = 0;
    for (Py_ssize_t i = 0; i < f->len; i++) {
        unsigned digit = (unsigned char)f->at[i] - (unsigned)'0';
        if (digit > 9) {
            return 0;
        }
        v = v * 10 + digit;
    }
    *value = v;
    return 1;
}

/* A strict dotted quad as inet_pton reads it: four decimals 0..255, no leading zeros, nothing else. */
static int ipv4(const Field *f, long long *value) {
    const unsigned char *p = (const unsigned char *)f->at;
    Py_ssize_t n = f->len, i = 0;
    if (n < 7 || n > 15) {
        return 0;
    }
    unsigned long v = 0;
    for (int k = 0; k < 4; k++) {
        if (k) {
            if (i >= n || p[i] != '.') {
                return 0;
            }
            i++;
        }
        Py_ssize_t first = i;
        unsigned octet = 0;
        while (i < n && i - first < 3 && p[i] >= '0' && p[i] <= '9') {
            octet = octet * 10 + (p[i] - '0');
            i++;
        }
        if (i == first || octet > 255 || (i - first > 1 && p[first] == '0')) {
            return 0;
        }
        v = (v << 8) | octet;
    }
    if (i != n) {
        return 0;
    }
    *value = (long long)v;
    return 1;
}

static int inside(const Setup *s, long long value) {
    for (Py_ssize_t i = 0; i < s->n_ranges; i++) {
        if (s->ranges[i][0] <= value && value <= s->ranges[i][1]) {
            return 1;
        }
    }
    return 0;
}

/* Splits [p, end) (one line, its newline excluded) into exactly nf non-empty fields separated by single
 * spaces, all of printable ASCII; 0 when the line is anything else.
 *
 * Eight bytes at a time (SWAR): a byte below 33 borrows in `word - 0x21...` and sets its lane's high bit, as
 * does a byte of 128 or more through `| word`. A borrow can also flag the lanes above a flagged one, never
 * one below it: the lowest flag is exact, and the scan resumes right after it. */
static int split(const char *p, const char *end, Py_ssize_t nf, Field *fields) {
    Py_ssize_t count = 0;
    const char *start = p;
    for (;;) {
        while (end - p >= 8) {
            uint64_t word;
            memcpy(&word, p, 8);
            uint64_t flags = ((word - 0x2121212121212121ULL) | word) & 0x8080808080808080ULL;
            if (flags) {
                p += __builtin_ctzll(flags) >> 3;
                goto special;
            }
            p += 8;
        }
        while (p < end && byte_class[(unsigned char)*p] == C_TEXT) {
            p++;
        }
        if (p == end) {
            break;
        }
    special:
        if (*p != ' ' || p == start || count == nf - 1) {
            return 0;
        }
        fields[count].at = start;
        fields[count].len = p - start;
        count++;
        start = ++p;
    }
    if (p == start || count != nf - 1) {
        return 0;
    }
    fields[count].at = start;
    fields[count].len = p - start;
    return 1;
}

/* What one good line gives. */
typedef struct {
    long long source, packets, octets, start, end;
    char rejected, spoofable;
} Row;

enum { KEEP, OUTBOUND, LEFTOVER };

/* The verdict on one line's fields, with the same tests, field by field, as FastScanner._scan_regular. */
static int judge(const Setup *s, const Field *fields, Row *row) {
    const int *pos = s->pos;
    long long value;
    if (!number(&fields[pos[F_PACKETS]], 12, &row->packets) || row->packets > MAX_PACKETS) {
        return LEFTOVER;
    }
    if (!number(&fields[pos[F_BYTES]], 15, &row->octets) || row->octets > MAX_BYTES
        || row->octets < MIN_BYTES_PER_PACKET * row->packets) {
        return LEFTOVER;
    }
    if (pos[F_START] >= 0 && pos[F_END] >= 0) {
        if (!number(&fields[pos[F_START]], 10, &row->start) || !number(&fields[pos[F_END]], 10, &row->end)
            || row->end < row->start) {
            return LEFTOVER;
        }
        if (s->bounded && (row->end < s->oldest_end || row->start > s->newest_start)) {
            return LEFTOVER; /* the reference names TOO_OLD and FUTURE */
        }
    }
    if (pos[F_STATUS] >= 0 && !IS(&fields[pos[F_STATUS]], "OK")) {
        return LEFTOVER;
    }
    row->rejected = 0;
    if (pos[F_ACTION] >= 0) {
        const Field *action = &fields[pos[F_ACTION]];
        row->rejected = (char)IS(action, "REJECT");
        if (!row->rejected && !IS(action, "ACCEPT")) {
            return LEFTOVER;
        }
    }
    if (pos[F_TYPE] >= 0) {
        const Field *kind = &fields[pos[F_TYPE]];
        if (!IS(kind, "IPv4") && !IS(kind, "IPv6") && !IS(kind, "-")) {
            return LEFTOVER;
        }
    }
    long long flags = -1;
    if (pos[F_TCP_FLAGS] >= 0) {
        const Field *field = &fields[pos[F_TCP_FLAGS]];
        if (number(field, 3, &value)) {
            if (value >= 512) {
                return LEFTOVER;
            }
            flags = value;
        } else if (!IS(field, "-")) {
            return LEFTOVER;
        }
    }
    row->spoofable = 0;
    if (pos[F_PROTOCOL] >= 0) {
        const Field *protocol = &fields[pos[F_PROTOCOL]];
        row->spoofable = (char)(IS(protocol, "1") || IS(protocol, "17") || IS(protocol, "58")
                                || (IS(protocol, "6") && flags == SYN));
    }
    if (pos[F_AWS_SERVICE] >= 0 && !IS(&fields[pos[F_AWS_SERVICE]], "-")) {
        return LEFTOVER; /* the reference names the service records' reason */
    }
    /* The original client behind NAT or a load balancer, when the format has it and it is given. */
    const Field *source = pos[F_PKT_SRC] >= 0 && (pos[F_SRC] < 0 || !IS(&fields[pos[F_PKT_SRC]], "-"))
                              ? &fields[pos[F_PKT_SRC]]
                              : &fields[pos[F_SRC]];
    if (!ipv4(source, &row->source)) {
        return LEFTOVER; /* "-", IPv6 or an odd spelling */
    }
    int check_destination = 1;
    if (pos[F_DIRECTION] >= 0) {
        const Field *direction = &fields[pos[F_DIRECTION]];
        if (IS(direction, "egress")) {
            return OUTBOUND;
        }
        check_destination = IS(direction, "-");
        if (!check_destination && !IS(direction, "ingress")) {
            return LEFTOVER;
        }
    }
    if (!check_destination) {
        return KEEP;
    }
    if (pos[F_DST] < 0 || !ipv4(&fields[pos[F_DST]], &value)) {
        return LEFTOVER; /* no destination to tell the direction by, or not one inet_pton reads plainly */
    }
    return inside(s, value) ? KEEP : OUTBOUND;
}

/* Might FlowLogParser.opened_by_vpc accept this outbound record? (A superset: the reference decides.) */
static int maybe_opened(const Setup *s, const Field *fields, const Row *row) {
    const int *pos = s->pos;
    if (row->rejected) {
        return 0;
    }
    long long flags, src_port, dst_port;
    if (pos[F_TCP_FLAGS] >= 0 && number(&fields[pos[F_TCP_FLAGS]], 3, &flags) && (flags & SYN)) {
        return 1;
    }
    if (pos[F_SRC_PORT] < 0 || pos[F_DST_PORT] < 0) {
        return 0;
    }
    const Field *src = &fields[pos[F_SRC_PORT]], *dst = &fields[pos[F_DST_PORT]];
    if (src->len > 5 || dst->len > 5) {
        return 1; /* zero-padded beyond five digits is still a port to the reference's int() */
    }
    return number(src, 5, &src_port) && number(dst, 5, &dst_port) && src_port >= EPHEMERAL_PORT_FLOOR
           && dst_port < src_port;
}

/* A Python int clamped to the long long range (a bound beyond it compares the same as the clamp). */
static int clamped(PyObject *object, long long *value) {
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(object, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return 0;
    }
    *value = overflow > 0 ? LLONG_MAX : overflow < 0 ? LLONG_MIN : v;
    return 1;
}

static int read_setup(Setup *s, Py_ssize_t nf, PyObject *positions, PyObject *bounds, PyObject *ranges) {
    if (nf < 1 || nf > MAX_FIELDS) {
        PyErr_Format(PyExc_ValueError, "field count must lie in 1..%d", MAX_FIELDS);
        return 0;
    }
    s->nf = nf;
    if (!PyTuple_Check(positions) || PyTuple_GET_SIZE(positions) != F_ROLES) {
        PyErr_Format(PyExc_ValueError, "positions must be a tuple of %d ints", F_ROLES);
        return 0;
    }
    for (int i = 0; i < F_ROLES; i++) {
        long p = PyLong_AsLong(PyTuple_GET_ITEM(positions, i));
        if (p == -1 && PyErr_Occurred()) {
            return 0;
        }
        if (p < -1 || p >= nf) {
            PyErr_SetString(PyExc_ValueError, "a field position lies outside the format");
            return 0;
        }
        s->pos[i] = (int)p;
    }
    if (s->pos[F_PACKETS] < 0 || s->pos[F_BYTES] < 0 || (s->pos[F_SRC] < 0 && s->pos[F_PKT_SRC] < 0)) {
        PyErr_SetString(PyExc_ValueError, "the format lacks packets, bytes or a source");
        return 0;
    }
    s->bounded = bounds != Py_None;
    if (s->bounded) {
        if (!PyTuple_Check(bounds) || PyTuple_GET_SIZE(bounds) != 2) {
            PyErr_SetString(PyExc_ValueError, "bounds must be None or (oldest_end, newest_start)");
            return 0;
        }
        if (!clamped(PyTuple_GET_ITEM(bounds, 0), &s->oldest_end)
            || !clamped(PyTuple_GET_ITEM(bounds, 1), &s->newest_start)) {
            return 0;
        }
    }
    if (!PyTuple_Check(ranges)) {
        PyErr_SetString(PyExc_ValueError, "ranges must be a tuple of (first, last) pairs");
        return 0;
    }
    s->n_ranges = PyTuple_GET_SIZE(ranges);
    s->ranges = PyMem_Calloc((size_t)s->n_ranges + 1, sizeof *s->ranges);
    if (s->ranges == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    for (Py_ssize_t i = 0; i < s->n_ranges; i++) {
        PyObject *pair = PyTuple_GET_ITEM(ranges, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_ValueError, "ranges must be a tuple of (first, last) pairs");
            return 0;
        }
        if (!clamped(PyTuple_GET_ITEM(pair, 0), &s->ranges[i][0])
            || !clamped(PyTuple_GET_ITEM(pair, 1), &s->ranges[i][1])) {
            return 0;
        }
    }
    return 1;
}

static PyObject *none_or(int present, long long value) {
    return present ? PyLong_FromLongLong(value) : Py_NewRef(Py_None);
}

PyDoc_STRVAR(scan_doc,
"scan(data, nf, positions, bounds, ranges)\n--\n\n"
"One block of lines (bytes) in one pass. `positions`: the field index of each role (src, pkt-src, dst,\n"
"packets, bytes, start, end, action, status, direction, type, tcp-flags, protocol, aws-service, srcport,\n"
"dstport), -1 when absent; `bounds`: None or (oldest_end, newest_start); `ranges`: the VPC's IPv4\n"
"ranges as (first, last) pairs.\n\n"
"Returns (sources, packets, octets, rejected, spoofable, rows, not_inbound, first_start, last_end,\n"
"leftovers): five packed columns (int64, int64, int64, uint8, uint8) of which the first `rows` rows\n"
"are the good inbound records, the count of outbound records the VPC did not open, the time span of\n"
"the kept rows (None when none), and the lines (bytes, newline excluded) the reference parser must see.");

static PyObject *scan(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer data;
    Py_ssize_t nf;
    PyObject *positions, *bounds, *ranges;
    if (!PyArg_ParseTuple(args, "y*nOOO:scan", &data, &nf, &positions, &bounds, &ranges)) {
        return NULL;
    }
    Setup s = {0};
    PyObject *columns[5] = {NULL}, *leftovers = NULL, *result = NULL;
    if (!read_setup(&s, nf, positions, bounds, ranges)) {
        goto done;
    }
    const char *p = data.buf, *end = p + data.len;
    /* A kept line holds nf non-empty fields, nf - 1 spaces and its newline: at least 2 * nf bytes. */
    Py_ssize_t capacity = data.len / (2 * nf) + 1;
    for (int i = 0; i < 5; i++) {
        columns[i] = PyBytes_FromStringAndSize(NULL, capacity * (i < 3 ? 8 : 1));
        if (columns[i] == NULL) {
            goto done;
        }
    }
    leftovers = PyList_New(0);
    if (leftovers == NULL) {
        goto done;
    }
    int64_t *sources = (int64_t *)PyBytes_AS_STRING(columns[0]);
    int64_t *packets = (int64_t *)PyBytes_AS_STRING(columns[1]);
    int64_t *octets = (int64_t *)PyBytes_AS_STRING(columns[2]);
    char *rejected = PyBytes_AS_STRING(columns[3]);
    char *spoofable = PyBytes_AS_STRING(columns[4]);
    int timed = s.pos[F_START] >= 0 && s.pos[F_END] >= 0;
    Py_ssize_t rows = 0, not_inbound = 0;
    long long first_start = 0, last_end = 0;
    Field fields[MAX_FIELDS];
    while (p < end) {
        const char *line_end = memchr(p, '\n', (size_t)(end - p));
        if (line_end == NULL) {
            line_end = end;
        }
        Row row;
        int verdict = split(p, line_end, nf, fields) ? judge(&s, fields, &row) : LEFTOVER;
        if (verdict == OUTBOUND && maybe_opened(&s, fields, &row)) {
            verdict = LEFTOVER; /* the reference notes the dependency */
        }
        if (verdict == KEEP) {
            sources[rows] = row.source;
            packets[rows] = row.packets;
            octets[rows] = row.octets;
            rejected[rows] = row.rejected;
            spoofable[rows] = row.spoofable;
            if (timed) {
                if (rows == 0 || row.start < first_start) {
                    first_start = row.start;
                }
                if (rows == 0 || row.end > last_end) {
                    last_end = row.end;
                }
            }
            rows++;
        } else if (verdict == OUTBOUND) {
            not_inbound++;
        } else {
            PyObject *line = PyBytes_FromStringAndSize(p, line_end - p);
            if (line == NULL || PyList_Append(leftovers, line) < 0) {
                Py_XDECREF(line);
                goto done;
            }
            Py_DECREF(line);
        }
        p = line_end + 1;
    }
    result = Py_BuildValue("(OOOOOnnNNO)", columns[0], columns[1], columns[2], columns[3], columns[4], rows,
                           not_inbound, none_or(timed && rows, first_start), none_or(timed && rows, last_end),
                           leftovers);
done:
    for (int i = 0; i < 5; i++) {
        Py_XDECREF(columns[i]);
    }
    Py_XDECREF(leftovers);
    PyMem_Free(s.ranges);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_blockscan",
    "Flow-log blocks scanned in one pass (see floodgate.core.fastscan).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__blockscan(void) {
    init_classes();
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddIntConstant(m, "MAX_FIELDS", MAX_FIELDS) < 0
                      || PyModule_AddIntConstant(m, "ROLES", F_ROLES) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
