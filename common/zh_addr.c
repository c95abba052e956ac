/*  zh_addr.c — proc, actor and port addresses of ZHP/1 (docs/protocol.md §2).

    Where it sits: the broker calls zh_addr_parse on the dest and src of
    every SEND before it looks the dest proc up in its routing table, so
    parsing is on the hot path: one left-to-right pass over the bytes, no
    allocation, no libc number parsing (the text is not NUL-terminated).
    Procs and clients print addresses with the format functions.

    The parse is a small recursive-descent scanner over absolute offsets:

        scan_id        label ["<" uid58 ">"] | "<" uid58 ">"
        scan_uid58     base58 digits up to the first non-digit
        scan_port      decimal u64 digits up to '@'
        endpoint_scan  tcp://host:port | ipc://path | inproc://name

    Every refusal is code 400 with the byte offset (in the text the caller
    gave) where the input went wrong, and a reason that names the part.

    ADDR-1 (one spelling) is enforced here: a uid58 or port with a leading
    zero digit (other than the single digit zero) is refused, as is a tcp
    port with a leading zero, so zh_addr_format gives back the exact bytes
    that were parsed and addresses compare as bytes.

    ADDR-2 (first @): '@' is never part of an id or a port, so the scan of
    the id part stops at the first '@' and everything after it is the
    endpoint, '@' included (ipc://@abstract).
*/
#include "zh_addr.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

const char zh_uid58_alphabet[59] = "123456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";

//  uid58 digit value plus one, by byte (16 a row, ASCII only; the rest
//  is 0); 0 means "not a base58 digit".
// clang-format off
static const uint8_t uid58_value[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
     0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  0,  0,  0,  0,  0,  0,
     0, 35, 36, 37, 38, 39, 40, 41, 42,  0, 43, 44, 45, 46, 47,  0,
    48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58,  0,  0,  0,  0,  0,
     0, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,  0, 21, 22, 23,
    24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,  0,  0,  0,  0,  0,
};
// clang-format on

#define ZH_ERR_ADDR ZH_ERR_MALFORMED

//  ---------------------------------------------------------------------
//  Character classes

static inline bool
is_lower (unsigned char c)
{
    return c >= 'a' && c <= 'z';
}

static inline bool
is_digit (unsigned char c)
{
    return c >= '0' && c <= '9';
}

static inline bool
is_label_char (unsigned char c)
{
    return is_lower (c) || is_digit (c) || c == '_' || c == '-';
}

//  Printable form of one byte for a reason: "X" or "\x00".
typedef struct {
    char text[8];
} byte_repr_t;

static byte_repr_t
byte_repr (unsigned char c)
{
    byte_repr_t repr;
    if (c > 0x20 && c < 0x7f)
        snprintf (repr.text, sizeof repr.text, "%c", c);
    else
        snprintf (repr.text, sizeof repr.text, "\\x%02x", c);
    return repr;
}

//  ---------------------------------------------------------------------
//  Labels, uid58 and ids. Offsets are absolute in s.

//  Check that s[start..end) is a label: 1..63 bytes, first a letter,
//  last a letter or digit. The bytes are already known to be label chars.
static int
label_rules (const char *s, size_t start, size_t end, zh_error_t *err)
{
    if (end == start) return zh_error_set (err, ZH_ERR_ADDR, start, "label: empty at %zu", start);
    if (!is_lower ((unsigned char)s[start]))
        return zh_error_set (err, ZH_ERR_ADDR, start, "label: '%s' at %zu must be a letter",
                             byte_repr ((unsigned char)s[start]).text, start);
    if (end - start > ZH_LABEL_MAX)
        return zh_error_set (err, ZH_ERR_ADDR, start + ZH_LABEL_MAX,
                             "label: %zu bytes at %zu, more than %d", end - start, start,
                             ZH_LABEL_MAX);
    unsigned char last = (unsigned char)s[end - 1];
    if (!is_lower (last) && !is_digit (last))
        return zh_error_set (err, ZH_ERR_ADDR, end - 1,
                             "label: '%s' at %zu must be a letter or digit (last of label)",
                             byte_repr (last).text, end - 1);
    return 0;
}

static int
bad_label_char (const char *s, size_t i, zh_error_t *err)
{
    return zh_error_set (err, ZH_ERR_ADDR, i, "label: '%s' at %zu is not one of [a-z0-9_-]",
                         byte_repr ((unsigned char)s[i]).text, i);
}

//  Decode base58 digits from s[i] up to the first non-digit or end.
//  Sets *stop to where it stopped. Refuses a value beyond u64 and a
//  leading '1' followed by more digits (ADDR-1). Does not refuse empty.
static int
scan_uid58 (const char *s, size_t end, size_t i, size_t *stop, uint64_t *value, zh_error_t *err)
{
    size_t start = i;
    uint64_t acc = 0;
    for (; i < end; i++) {
        unsigned digit = uid58_value[(unsigned char)s[i]];
        if (digit == 0) break;
        digit -= 1;
        if (i == start + 1 && acc == 0)
            return zh_error_set (err, ZH_ERR_ADDR, start,
                                 "uid58: leading '1' at %zu (non-canonical; zero is \"1\")", start);
        if (acc > (UINT64_MAX - digit) / 58)
            return zh_error_set (err, ZH_ERR_ADDR, start, "uid58: value beyond u64 at %zu", start);
        acc = acc * 58 + digit;
    }
    *stop = i;
    *value = acc;
    return 0;
}

//  The "<" uid58 ">" part of an id; s[i] is '<'. Returns the offset past
//  '>' in *next. The id part of the text ends at end or at the first '@'.
static int
scan_uid_part (const char *s, size_t end, size_t i, size_t *next, zh_id_t *id, zh_error_t *err)
{
    size_t open = i;
    size_t stop = 0;
    if (scan_uid58 (s, end, i + 1, &stop, &id->uid, err)) return -1;
    if (stop == end || s[stop] == '@')
        return zh_error_set (err, ZH_ERR_ADDR, open, "id: unclosed '<' at %zu", open);
    if (s[stop] != '>')
        return zh_error_set (err, ZH_ERR_ADDR, stop, "uid58: '%s' at %zu is not a base58 digit",
                             byte_repr ((unsigned char)s[stop]).text, stop);
    if (stop == open + 1)
        return zh_error_set (err, ZH_ERR_ADDR, open, "uid58: empty '<>' at %zu", open);
    id->has_uid = true;
    *next = stop + 1;
    return 0;
}

//  One id from s[i]: label ["<" uid58 ">"] | "<" uid58 ">". Stops at the
//  first byte that cannot continue the id ('.', ':', '@', or anything
//  after '>'); the caller decides whether that byte may follow.
static int
scan_id (const char *s, size_t end, size_t i, size_t *next, zh_id_t *id, zh_error_t *err)
{
    size_t start = i;
    while (i < end && is_label_char ((unsigned char)s[i]))
        i++;
    if (i < end && s[i] != '<' && s[i] != '.' && s[i] != ':' && s[i] != '@')
        return bad_label_char (s, i, err);

    id->label = (zh_span_t){s + start, i - start};
    id->has_uid = false;
    id->uid = 0;
    if (i > start && label_rules (s, start, i, err)) return -1;
    if (i < end && s[i] == '<') {
        if (scan_uid_part (s, end, i, &i, id, err)) return -1;
    } else if (i == start)
        return zh_error_set (err, ZH_ERR_ADDR, start, "id: empty at %zu", start);
    id->text = (zh_span_t){s + start, i - start};
    *next = i;
    return 0;
}

//  ---------------------------------------------------------------------
//  Endpoints

//  Decimal tcp port in s[start..end): 1..65535, no leading zero.
static int
tcp_port_rules (const char *s, size_t start, size_t end, zh_error_t *err)
{
    if (end == start)
        return zh_error_set (err, ZH_ERR_ADDR, start, "endpoint: empty tcp port at %zu", start);
    uint32_t value = 0;
    for (size_t i = start; i < end; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_digit (c))
            return zh_error_set (err, ZH_ERR_ADDR, i,
                                 "endpoint: tcp port '%s' at %zu is not a decimal digit",
                                 byte_repr (c).text, i);
        if (value <= 65535) value = value * 10 + (c - '0');
    }
    if (value == 0 || value > 65535)
        return zh_error_set (err, ZH_ERR_ADDR, start,
                             "endpoint: tcp port '%.*s' at %zu is not in 1..65535",
                             (int)(end - start > 20 ? 20 : end - start), s + start, start);
    if (s[start] == '0')
        return zh_error_set (err, ZH_ERR_ADDR, start,
                             "endpoint: tcp port at %zu has a leading zero", start);
    return 0;
}

//  tcp host in s[start..colon): non-empty; a ':' only inside [brackets].
static int
tcp_host_rules (const char *s, size_t start, size_t colon, size_t first_colon, zh_error_t *err)
{
    if (colon == start)
        return zh_error_set (err, ZH_ERR_ADDR, start, "endpoint: empty tcp host at %zu", start);
    if (s[start] == '[') {
        const char *close = memchr (s + start, ']', colon - start);
        if (close == NULL || (size_t)(close - s) != colon - 1)
            return zh_error_set (err, ZH_ERR_ADDR, start,
                                 "endpoint: '[' at %zu needs ']' before the port", start);
        if (colon - start == 2)
            return zh_error_set (err, ZH_ERR_ADDR, start, "endpoint: empty '[]' host at %zu",
                                 start);
    } else if (first_colon != colon)
        return zh_error_set (err, ZH_ERR_ADDR, first_colon,
                             "endpoint: ':' at %zu in tcp host (IPv6 needs [brackets])",
                             first_colon);
    return 0;
}

static bool
has_prefix (const char *s, size_t start, size_t end, const char *prefix, size_t prefix_len)
{
    return end - start >= prefix_len && memcmp (s + start, prefix, prefix_len) == 0;
}

//  Check s[start..end) is an endpoint. One pass over the rest after the
//  scheme: it refuses control bytes (no ZeroMQ endpoint holds one, and a
//  NUL would cut the C string given to zmq_connect) and notes the colons.
static int
endpoint_scan (const char *s, size_t start, size_t end, zh_error_t *err)
{
    if (end == start)
        return zh_error_set (err, ZH_ERR_ADDR, start, "endpoint: empty at %zu", start);
    if (end - start > ZH_ENDPOINT_MAX)
        return zh_error_set (err, ZH_ERR_ADDR, start, "endpoint: %zu bytes at %zu, more than %d",
                             end - start, start, ZH_ENDPOINT_MAX);
    size_t rest;
    bool tcp = false;
    if (has_prefix (s, start, end, "tcp://", 6)) {
        rest = start + 6;
        tcp = true;
    } else if (has_prefix (s, start, end, "ipc://", 6))
        rest = start + 6;
    else if (has_prefix (s, start, end, "inproc://", 9))
        rest = start + 9;
    else
        return zh_error_set (err, ZH_ERR_ADDR, start,
                             "endpoint: unknown scheme at %zu (tcp://, ipc:// or inproc://)",
                             start);
    if (rest == end)
        return zh_error_set (err, ZH_ERR_ADDR, rest, "endpoint: empty %s at %zu",
                             tcp ? "host:port" : "name", rest);

    size_t first_colon = end, last_colon = end;
    for (size_t i = rest; i < end; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return zh_error_set (err, ZH_ERR_ADDR, i, "endpoint: control byte '%s' at %zu",
                                 byte_repr (c).text, i);
        if (c == ':') {
            if (first_colon == end) first_colon = i;
            last_colon = i;
        }
    }
    if (!tcp) return 0;
    if (last_colon == end)
        return zh_error_set (err, ZH_ERR_ADDR, end, "endpoint: tcp needs host:port, no ':' at %zu",
                             end);
    if (tcp_host_rules (s, rest, last_colon, first_colon, err)) return -1;
    return tcp_port_rules (s, last_colon + 1, end, err);
}

//  ---------------------------------------------------------------------
//  Addresses

//  The ":" u64 of a port address, from s[i] (past ':') up to '@'.
static int
scan_port (const char *s, size_t end, size_t i, size_t *next, uint64_t *port, zh_error_t *err)
{
    size_t start = i;
    uint64_t acc = 0;
    for (; i < end && s[i] != '@'; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_digit (c))
            return zh_error_set (err, ZH_ERR_ADDR, i, "port: '%s' at %zu is not a decimal digit",
                                 byte_repr (c).text, i);
        if (i == start + 1 && acc == 0)
            return zh_error_set (err, ZH_ERR_ADDR, start,
                                 "port: leading zero at %zu (non-canonical)", start);
        unsigned digit = c - '0';
        if (acc > (UINT64_MAX - digit) / 10)
            return zh_error_set (err, ZH_ERR_ADDR, start, "port: value beyond u64 at %zu", start);
        acc = acc * 10 + digit;
    }
    if (i == start) return zh_error_set (err, ZH_ERR_ADDR, start, "port: empty at %zu", start);
    *port = acc;
    *next = i;
    return 0;
}

static int
unexpected (const char *s, size_t i, const char *wanted, zh_error_t *err)
{
    return zh_error_set (err, ZH_ERR_ADDR, i, "address: unexpected '%s' at %zu (want %s)",
                         byte_repr ((unsigned char)s[i]).text, i, wanted);
}

int
zh_addr_parse (zh_addr_t *addr, const char *text, size_t len, zh_error_t *err)
{
    memset (addr, 0, sizeof *addr);
    if (text == NULL || len == 0) return zh_error_set (err, ZH_ERR_ADDR, 0, "address: empty");
    if (len > ZH_ADDR_MAX)
        return zh_error_set (err, ZH_ERR_ADDR, ZH_ADDR_MAX, "address: %zu bytes, more than %d", len,
                             ZH_ADDR_MAX);
    size_t i;
    zh_id_t first;
    if (scan_id (text, len, 0, &i, &first, err)) return -1;
    addr->kind = ZH_ADDR_PROC;
    addr->proc = first;
    if (i < len && text[i] == '.') {
        addr->kind = ZH_ADDR_ACTOR;
        addr->actor = first;
        if (scan_id (text, len, i + 1, &i, &addr->proc, err)) return -1;
        if (i < len && text[i] == ':') {
            addr->kind = ZH_ADDR_PORT;
            if (scan_port (text, len, i + 1, &i, &addr->port, err)) return -1;
        }
    }
    if (i == len) return zh_error_set (err, ZH_ERR_ADDR, len, "address: missing '@' at %zu", len);
    if (text[i] != '@')
        return unexpected (text, i,
                           addr->kind == ZH_ADDR_PROC    ? "'.' or '@'"
                           : addr->kind == ZH_ADDR_ACTOR ? "':' or '@'"
                                                         : "'@'",
                           err);
    if (endpoint_scan (text, i + 1, len, err)) return -1;
    addr->endpoint = (zh_span_t){text + i + 1, len - i - 1};
    addr->text = (zh_span_t){text, len};
    return 0;
}

//  "a proc", "an actor", "a port": for reasons.
static const char *
kind_name (zh_addr_kind_t kind)
{
    switch (kind) {
    case ZH_ADDR_PROC:
        return "a proc";
    case ZH_ADDR_ACTOR:
        return "an actor";
    case ZH_ADDR_PORT:
        return "a port";
    default:
        return "an unknown";
    }
}

int
zh_addr_parse_kind (zh_addr_t *addr, zh_addr_kind_t kind, const char *text, size_t len,
                    zh_error_t *err)
{
    if (zh_addr_parse (addr, text, len, err)) return -1;
    if (addr->kind != kind)
        return zh_error_set (err, ZH_ERR_ADDR, 0, "address: %s address where %s address is needed",
                             kind_name (addr->kind), kind_name (kind));
    return 0;
}

//  ---------------------------------------------------------------------
//  Single parts

int
zh_label_check (const char *text, size_t len, zh_error_t *err)
{
    if (text == NULL) len = 0;
    for (size_t i = 0; i < len; i++)
        if (!is_label_char ((unsigned char)text[i])) return bad_label_char (text, i, err);
    return label_rules (text, 0, len, err);
}

int
zh_id_parse (zh_id_t *id, const char *text, size_t len, zh_error_t *err)
{
    memset (id, 0, sizeof *id);
    if (text == NULL || len == 0) return zh_error_set (err, ZH_ERR_ADDR, 0, "id: empty at 0");
    size_t next;
    if (scan_id (text, len, 0, &next, id, err)) return -1;
    if (next != len)
        return zh_error_set (err, ZH_ERR_ADDR, next, "id: unexpected '%s' at %zu (want end of id)",
                             byte_repr ((unsigned char)text[next]).text, next);
    return 0;
}

int
zh_endpoint_check (const char *text, size_t len, zh_error_t *err)
{
    if (text == NULL) len = 0;
    return endpoint_scan (text, 0, len, err);
}

size_t
zh_uid58_encode (uint64_t value, char *buf)
{
    char digits[ZH_UID58_MAX];
    size_t n = 0;
    do {
        digits[n++] = zh_uid58_alphabet[value % 58];
        value /= 58;
    } while (value);
    for (size_t i = 0; i < n; i++)
        buf[i] = digits[n - 1 - i];
    buf[n] = '\0';
    return n;
}

int
zh_uid58_decode (const char *text, size_t len, uint64_t *value, zh_error_t *err)
{
    if (text == NULL || len == 0) return zh_error_set (err, ZH_ERR_ADDR, 0, "uid58: empty at 0");
    size_t stop = 0;
    uint64_t decoded = 0;
    if (scan_uid58 (text, len, 0, &stop, &decoded, err)) return -1;
    if (stop != len)
        return zh_error_set (err, ZH_ERR_ADDR, stop, "uid58: '%s' at %zu is not a base58 digit",
                             byte_repr ((unsigned char)text[stop]).text, stop);
    *value = decoded;
    return 0;
}

//  ---------------------------------------------------------------------
//  Printing. A small bounded writer: appends until the buffer is full,
//  then remembers that it overflowed.

typedef struct {
    char *buf;
    size_t size;
    size_t len;
    bool overflow;
} writer_t;

static void
writer_put (writer_t *w, const char *data, size_t len)
{
    if (len == 0) return;
    if (w->overflow || w->len + len >= w->size) {
        w->overflow = true;
        return;
    }
    memcpy (w->buf + w->len, data, len);
    w->len += len;
}

static void
writer_str (writer_t *w, const char *s)
{
    writer_put (w, s, strlen (s));
}

static void
writer_id (writer_t *w, const char *label, size_t label_len, bool has_uid, uint64_t uid)
{
    writer_put (w, label, label_len);
    if (has_uid) {
        char digits[ZH_UID58_MAX + 1];
        size_t n = zh_uid58_encode (uid, digits);
        writer_put (w, "<", 1);
        writer_put (w, digits, n);
        writer_put (w, ">", 1);
    }
}

static void
writer_u64 (writer_t *w, uint64_t value)
{
    char digits[24];
    int n = snprintf (digits, sizeof digits, "%" PRIu64, value);
    writer_put (w, digits, (size_t)n);
}

static int
writer_end (writer_t *w)
{
    if (w->size == 0) return -1;
    if (w->overflow) {
        w->buf[0] = '\0';
        return -1;
    }
    w->buf[w->len] = '\0';
    return (int)w->len;
}

int
zh_id_format (char *buf, size_t size, const char *label, bool has_uid, uint64_t uid)
{
    size_t label_len = label ? strlen (label) : 0;
    if (label_len == 0 && !has_uid) return -1;
    writer_t w = {buf, size, 0, false};
    writer_id (&w, label, label_len, has_uid, uid);
    return writer_end (&w);
}

int
zh_proc_addr_format (char *buf, size_t size, const char *proc_id, const char *endpoint)
{
    writer_t w = {buf, size, 0, false};
    writer_str (&w, proc_id);
    writer_put (&w, "@", 1);
    writer_str (&w, endpoint);
    return writer_end (&w);
}

int
zh_actor_addr_format (char *buf, size_t size, const char *actor_id, const char *proc_id,
                      const char *endpoint)
{
    writer_t w = {buf, size, 0, false};
    writer_str (&w, actor_id);
    writer_put (&w, ".", 1);
    writer_str (&w, proc_id);
    writer_put (&w, "@", 1);
    writer_str (&w, endpoint);
    return writer_end (&w);
}

int
zh_port_addr_format (char *buf, size_t size, const char *actor_id, const char *proc_id,
                     uint64_t port, const char *endpoint)
{
    writer_t w = {buf, size, 0, false};
    writer_str (&w, actor_id);
    writer_put (&w, ".", 1);
    writer_str (&w, proc_id);
    writer_put (&w, ":", 1);
    writer_u64 (&w, port);
    writer_put (&w, "@", 1);
    writer_str (&w, endpoint);
    return writer_end (&w);
}

static bool
id_is_printable (const zh_id_t *id)
{
    return id->label.len > 0 || id->has_uid;
}

//  Prints from the parsed parts, not by copying addr->text: by ADDR-1
//  the result is the same bytes, and the fuzzer checks that it is.
int
zh_addr_format (const zh_addr_t *addr, char *buf, size_t size)
{
    writer_t w = {buf, size, 0, false};
    if (addr->kind < ZH_ADDR_PROC || addr->kind > ZH_ADDR_PORT || !id_is_printable (&addr->proc) ||
        (addr->kind != ZH_ADDR_PROC && !id_is_printable (&addr->actor))) {
        w.overflow = true;
        return writer_end (&w);
    }
    if (addr->kind != ZH_ADDR_PROC) {
        const zh_id_t *actor = &addr->actor;
        writer_id (&w, actor->label.ptr, actor->label.len, actor->has_uid, actor->uid);
        writer_put (&w, ".", 1);
    }
    const zh_id_t *proc = &addr->proc;
    writer_id (&w, proc->label.ptr, proc->label.len, proc->has_uid, proc->uid);
    if (addr->kind == ZH_ADDR_PORT) {
        writer_put (&w, ":", 1);
        writer_u64 (&w, addr->port);
    }
    writer_put (&w, "@", 1);
    writer_put (&w, addr->endpoint.ptr, addr->endpoint.len);
    return writer_end (&w);
}

//  ---------------------------------------------------------------------
//  Comparison

static bool
span_equal (zh_span_t a, zh_span_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp (a.ptr, b.ptr, a.len) == 0);
}

static bool
id_equal (const zh_id_t *a, const zh_id_t *b)
{
    return span_equal (a->label, b->label) && a->has_uid == b->has_uid &&
           (!a->has_uid || a->uid == b->uid);
}

bool
zh_addr_same_proc (const zh_addr_t *a, const zh_addr_t *b)
{
    return id_equal (&a->proc, &b->proc) && span_equal (a->endpoint, b->endpoint);
}

bool
zh_addr_equal (const zh_addr_t *a, const zh_addr_t *b)
{
    if (a->kind != b->kind || !zh_addr_same_proc (a, b)) return false;
    if (a->kind != ZH_ADDR_PROC && !id_equal (&a->actor, &b->actor)) return false;
    return a->kind != ZH_ADDR_PORT || a->port == b->port;
}

bool
zh_span_eq (zh_span_t span, const char *s)
{
    size_t len = strlen (s);
    return span.len == len && (len == 0 || memcmp (span.ptr, s, len) == 0);
}

uint64_t
zh_random_u64 (void)
{
    uint64_t value = 0;
    if (getrandom (&value, sizeof value, 0) != (ssize_t)sizeof value) {
        //  No entropy source: still distinct per call and per process.
        static uint64_t counter = 0;
        struct timespec ts;
        clock_gettime (CLOCK_MONOTONIC, &ts);
        value = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid () << 40) ^
                ++counter * 0x9E3779B97F4A7C15ull;
    }
    return value;
}
