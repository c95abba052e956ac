/*  zh_proto.c — the ZHP/1 frame codec (docs/protocol.md §3–§5; see zh_proto.h).

    Where it sits: between the sockets and everything else. Every message
    the broker receives goes through zh_header_check, and every SEND or
    RETURN through zh_head_decode, before it is routed; control commands
    go through zh_body_decode. Procs and clients build what they send with
    zh_head_write and zh_body_encode, and the broker writes RETURN meta
    with zh_return_meta_encode.

    The file reads top to bottom in that order:
        header      6 bytes, checked in §3's order (400 → 426 → 404 → 400)
        head        hand-rolled bounds checks, no allocation, no msgpack
        mp_*        a tiny allocation-free msgpack reader (RETURN meta,
                    meta lookups, and a guard in front of msgpack-c)
        body        control bodies: msgpack-c unpack into a zone, then a
                    field table maps keys to zh_body_t members
        RETURN meta {"failures": [...], "dest": str, "meta": map}
        message     a whole multipart message: layout, head/body, addresses

    Invariants:

    PROTO-1 (no trusted lengths): every length read from the wire is
    compared against the bytes left *before* it is added to an offset, as
    `len > size - off` with off <= size, so no sum can overflow.

    PROTO-2 (bounded msgpack-c): msgpack-c allocates a container's
    elements as soon as it reads the count (a 5-byte 0xdf ffffffff asks
    for 128 GiB). msgpack_unpack therefore only ever sees input that
    mp_skip_one accepted: every count it read was at most the bytes left,
    so the zone grows with the input, not with what the input claims.

    PROTO-3 (one spelling per decode): zh_body_decode ignores keys that
    are not fields of that command, refuses a known key given twice, and
    zh_body_encode writes only the present fields of that command, so
    decode(encode(b)) == b for every body that decodes.
*/
#include "zh_proto.h"

#include <limits.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

//  ---------------------------------------------------------------------
//  Commands

const char *
zh_command_name (int command)
{
    switch (command) {
    case ZH_ATTACH:
        return "ATTACH";
    case ZH_BOOTSTRAP:
        return "BOOTSTRAP";
    case ZH_READY:
        return "READY";
    case ZH_HELLO:
        return "HELLO";
    case ZH_WELCOME:
        return "WELCOME";
    case ZH_SEND:
        return "SEND";
    case ZH_RETURN:
        return "RETURN";
    case ZH_BATCH:
        return "BATCH";
    case ZH_PING:
        return "PING";
    case ZH_PONG:
        return "PONG";
    case ZH_BYE:
        return "BYE";
    case ZH_ERROR:
        return "ERROR";
    case ZH_STOP:
        return "STOP";
    default:
        return NULL;
    }
}

zh_span_t
zh_span_of (const char *s)
{
    zh_span_t span = {s, s ? strlen (s) : 0};
    return span;
}

//  ---------------------------------------------------------------------
//  Big-endian helpers. Callers have checked the bytes are there.

static uint16_t
s_get_u16 (const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t
s_get_u32 (const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t
s_get_u64 (const uint8_t *p)
{
    return ((uint64_t)s_get_u32 (p) << 32) | s_get_u32 (p + 4);
}

static void
s_put_u16 (uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void
s_put_u32 (uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

//  ---------------------------------------------------------------------
//  Header (§3)

int
zh_header_check (zh_header_t *hdr, const uint8_t *data, size_t size, zh_error_t *err)
{
    if (size < ZH_HEADER_SIZE)
        return zh_error_set (err, ZH_ERR_MALFORMED, size, "header too short: %zu bytes, need %d",
                             size, ZH_HEADER_SIZE);
    if (data[0] != ZH_MAGIC0 || data[1] != ZH_MAGIC1)
        return zh_error_set (err, ZH_ERR_MALFORMED, 0, "bad magic 0x%02x%02x, want 'ZH'", data[0],
                             data[1]);
    if (data[2] != ZH_VERSION)
        return zh_error_set (err, ZH_ERR_VERSION, 2, "unsupported version %u, speak %d", data[2],
                             ZH_VERSION);
    const char *name = zh_command_name (data[3]);
    if (!name)
        return zh_error_set (err, ZH_ERR_UNKNOWN_COMMAND, 3, "unknown command 0x%02x", data[3]);

    if (zh_command_has_head (data[3])) {
        if (data[5] & ~ZH_FLAGS_KNOWN)
            return zh_error_set (err, ZH_ERR_MALFORMED, 5, "%s: unknown flag bits 0x%02x", name,
                                 data[5] & ~ZH_FLAGS_KNOWN);
    } else if (data[3] == ZH_BATCH) {
        //  The elements follow in the same frame (zh_batch_begin walks them).
        if (data[4] != 0 || data[5] != 0)
            return zh_error_set (err, ZH_ERR_MALFORMED, 4, "BATCH: ttl and flags must be 0");
    } else {
        if (size != ZH_HEADER_SIZE)
            return zh_error_set (err, ZH_ERR_MALFORMED, ZH_HEADER_SIZE,
                                 "%s: control header frame is %zu bytes, must be %d", name, size,
                                 ZH_HEADER_SIZE);
        if (data[4] != 0 || data[5] != 0)
            return zh_error_set (err, ZH_ERR_MALFORMED, 4,
                                 "%s: ttl and flags must be 0 on a control command", name);
    }
    if (hdr) {
        hdr->version = data[2];
        hdr->command = data[3];
        hdr->ttl = data[4];
        hdr->flags = data[5];
    }
    return 0;
}

void
zh_header_write (uint8_t *buf, uint8_t command, uint8_t ttl, uint8_t flags)
{
    buf[0] = ZH_MAGIC0;
    buf[1] = ZH_MAGIC1;
    buf[2] = ZH_VERSION;
    buf[3] = command;
    buf[4] = ttl;
    buf[5] = flags;
}

//  ---------------------------------------------------------------------
//  Head (§4): header D:u16 dest S:u16 src M:u32 meta [inline part].
//  The hot path: bounds checks only (PROTO-1).

//  Read one u16-prefixed address field at *off.
static int
s_head_field (const uint8_t *frame, size_t size, size_t *off, const char *what, const uint8_t **ptr,
              uint16_t *len, zh_error_t *err)
{
    if (size - *off < 2)
        return zh_error_set (err, ZH_ERR_MALFORMED, *off, "head: frame ends before the %s length",
                             what);
    uint16_t n = s_get_u16 (frame + *off);
    if (n < 1 || n > ZH_FIELD_MAX)
        return zh_error_set (err, ZH_ERR_MALFORMED, *off, "head: %s length %u outside 1..%d", what,
                             n, ZH_FIELD_MAX);
    *off += 2;
    if (n > size - *off)
        return zh_error_set (err, ZH_ERR_MALFORMED, *off,
                             "head: %s (%u bytes) runs past the end of the frame (%zu bytes)", what,
                             n, size);
    *ptr = frame + *off;
    *len = n;
    *off += n;
    return 0;
}

int
zh_head_decode (zh_head_t *head, const uint8_t *frame, size_t size, zh_error_t *err)
{
    if (zh_header_check (&head->hdr, frame, size, err)) return -1;
    if (!zh_command_has_head (head->hdr.command))
        return zh_error_set (err, ZH_ERR_MALFORMED, 3, "head: %s has no head",
                             zh_command_name (head->hdr.command));
    head->ttl_offset = 4;

    size_t off = ZH_HEADER_SIZE;
    if (s_head_field (frame, size, &off, "dest", &head->dest, &head->dest_len, err) ||
        s_head_field (frame, size, &off, "src", &head->src, &head->src_len, err))
        return -1;

    if (size - off < 4)
        return zh_error_set (err, ZH_ERR_MALFORMED, off, "head: frame ends before the meta length");
    uint32_t meta_len = s_get_u32 (frame + off);
    off += 4;
    if (meta_len > size - off)
        return zh_error_set (err, ZH_ERR_MALFORMED, off,
                             "head: meta (%u bytes) runs past the end of the frame (%zu bytes)",
                             meta_len, size);
    if (meta_len > 0 && !zh_msgpack_is_map (frame[off]))
        return zh_error_set (err, ZH_ERR_MALFORMED, off,
                             "head: meta is not a msgpack map (first byte 0x%02x)", frame[off]);
    head->meta = meta_len ? frame + off : NULL;
    head->meta_len = meta_len;
    off += meta_len;

    size_t rest = size - off;
    if (head->hdr.flags & ZH_FLAG_INLINE) {
        head->inline_part = frame + off;
        head->inline_len = rest;
    } else {
        if (rest > 0)
            return zh_error_set (err, ZH_ERR_MALFORMED, off,
                                 "head: %zu bytes follow meta but INLINE is clear", rest);
        head->inline_part = NULL;
        head->inline_len = 0;
    }
    return 0;
}

//  Saturating add: SIZE_MAX means "too big for anything".
static size_t
s_size_add (size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

size_t
zh_head_size (size_t dest_len, size_t src_len, size_t meta_len, size_t inline_len)
{
    size_t size = ZH_HEADER_SIZE + 2 + 2 + 4;
    size = s_size_add (size, dest_len);
    size = s_size_add (size, src_len);
    size = s_size_add (size, meta_len);
    return s_size_add (size, inline_len);
}

long
zh_head_write (uint8_t *buf, size_t size, uint8_t command, uint8_t ttl, uint8_t flags,
               const char *dest, size_t dest_len, const char *src, size_t src_len,
               const uint8_t *meta, size_t meta_len, const uint8_t *inline_part, size_t inline_len)
{
    bool has_inline = (flags & ZH_FLAG_INLINE) != 0;
    if (!has_inline) inline_len = 0;
    if (!zh_command_has_head (command) || (flags & ~ZH_FLAGS_KNOWN)) return -1;
    if (dest_len < 1 || dest_len > ZH_FIELD_MAX || src_len < 1 || src_len > ZH_FIELD_MAX) return -1;
    if (meta_len > UINT32_MAX || (meta_len > 0 && (!meta || !zh_msgpack_is_map (meta[0]))))
        return -1;
    if (inline_len > 0 && !inline_part) return -1;
    size_t total = zh_head_size (dest_len, src_len, meta_len, inline_len);
    if (total > size || total > (size_t)LONG_MAX) return -1;

    zh_header_write (buf, command, ttl, flags);
    size_t off = ZH_HEADER_SIZE;
    s_put_u16 (buf + off, (uint16_t)dest_len);
    memcpy (buf + off + 2, dest, dest_len);
    off += 2 + dest_len;
    s_put_u16 (buf + off, (uint16_t)src_len);
    memcpy (buf + off + 2, src, src_len);
    off += 2 + src_len;
    s_put_u32 (buf + off, (uint32_t)meta_len);
    off += 4;
    if (meta_len) memcpy (buf + off, meta, meta_len);
    off += meta_len;
    if (inline_len) memcpy (buf + off, inline_part, inline_len);
    off += inline_len;
    return (long)off;
}

//  ---------------------------------------------------------------------
//  mp_*: an allocation-free msgpack reader over a byte span. Each read
//  checks the bytes it needs (PROTO-1) and returns -1 on short or bad
//  input, leaving the cursor where it was.

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t off;
} mp_cursor_t;

static size_t
mp_left (const mp_cursor_t *cur)
{
    return cur->size - cur->off;
}

//  Read n big-endian bytes (1, 2, 4 or 8) at off+1 as an unsigned value.
static int
mp_read_be (const mp_cursor_t *cur, size_t n, uint64_t *value)
{
    if (mp_left (cur) < 1 + n) return -1;
    const uint8_t *p = cur->data + cur->off + 1;
    switch (n) {
    case 1:
        *value = p[0];
        break;
    case 2:
        *value = s_get_u16 (p);
        break;
    case 4:
        *value = s_get_u32 (p);
        break;
    default:
        *value = s_get_u64 (p);
        break;
    }
    return 0;
}

//  Shape of the value at the cursor: how many header bytes it has, how
//  many payload bytes follow, and how many child values it contains.
typedef struct {
    size_t head;     //  marker plus length bytes
    uint64_t bytes;  //  raw payload bytes after the head
    uint64_t values; //  child values (array: n, map: 2n)
} mp_shape_t;

//  The markers 0xc0..0xdf: how many length bytes follow the marker, how
//  many payload bytes a fixed-size value has, and what the length counts.
typedef enum { MP_FIXED, MP_BYTES, MP_EXT, MP_ARRAY, MP_MAP, MP_UNUSED } mp_kind_t;

typedef struct {
    uint8_t length_bytes;
    uint8_t fixed_bytes;
    uint8_t kind;
} mp_marker_t;

#define MARKER(b) [(b)-0xc0]
static const mp_marker_t s_markers[32] = {
    MARKER (0xc0) = {0, 0, MP_FIXED},  MARKER (0xc1) = {0, 0, MP_UNUSED}, //  nil, never used
    MARKER (0xc2) = {0, 0, MP_FIXED},  MARKER (0xc3) = {0, 0, MP_FIXED},  //  false, true
    MARKER (0xc4) = {1, 0, MP_BYTES},  MARKER (0xc5) = {2, 0, MP_BYTES},  //  bin 8/16/32
    MARKER (0xc6) = {4, 0, MP_BYTES},  MARKER (0xc7) = {1, 0, MP_EXT},    //  ext 8/16/32
    MARKER (0xc8) = {2, 0, MP_EXT},    MARKER (0xc9) = {4, 0, MP_EXT},    //
    MARKER (0xca) = {0, 4, MP_FIXED},  MARKER (0xcb) = {0, 8, MP_FIXED},  //  float 32/64
    MARKER (0xcc) = {0, 1, MP_FIXED},  MARKER (0xcd) = {0, 2, MP_FIXED},  //  uint 8..64
    MARKER (0xce) = {0, 4, MP_FIXED},  MARKER (0xcf) = {0, 8, MP_FIXED},  //
    MARKER (0xd0) = {0, 1, MP_FIXED},  MARKER (0xd1) = {0, 2, MP_FIXED},  //  int 8..64
    MARKER (0xd2) = {0, 4, MP_FIXED},  MARKER (0xd3) = {0, 8, MP_FIXED},  //
    MARKER (0xd4) = {0, 2, MP_FIXED},  MARKER (0xd5) = {0, 3, MP_FIXED},  //  fixext 1..16
    MARKER (0xd6) = {0, 5, MP_FIXED},  MARKER (0xd7) = {0, 9, MP_FIXED},  //  (type byte
    MARKER (0xd8) = {0, 17, MP_FIXED}, MARKER (0xd9) = {1, 0, MP_BYTES},  //  + data); str 8
    MARKER (0xda) = {2, 0, MP_BYTES},  MARKER (0xdb) = {4, 0, MP_BYTES},  //  str 16/32
    MARKER (0xdc) = {2, 0, MP_ARRAY},  MARKER (0xdd) = {4, 0, MP_ARRAY},  //  array 16/32
    MARKER (0xde) = {2, 0, MP_MAP},    MARKER (0xdf) = {4, 0, MP_MAP},    //  map 16/32
};

static int
mp_shape (const mp_cursor_t *cur, mp_shape_t *shape)
{
    if (mp_left (cur) < 1) return -1;
    uint8_t b = cur->data[cur->off];
    memset (shape, 0, sizeof *shape);
    shape->head = 1;
    if (b <= 0x7f || b >= 0xe0) //  positive and negative fixint
        return 0;
    if (b <= 0x8f)
        shape->values = 2 * (uint64_t)(b & 0x0f); //  fixmap
    else if (b <= 0x9f)
        shape->values = b & 0x0f; //  fixarray
    else if (b <= 0xbf)
        shape->bytes = b & 0x1f; //  fixstr
    else {
        const mp_marker_t *marker = &s_markers[b - 0xc0];
        uint64_t n = 0;
        if (marker->kind == MP_UNUSED) return -1;
        if (marker->length_bytes && mp_read_be (cur, marker->length_bytes, &n)) return -1;
        shape->head = 1 + (size_t)marker->length_bytes;
        shape->bytes = marker->fixed_bytes;
        if (marker->kind == MP_BYTES)
            shape->bytes = n;
        else if (marker->kind == MP_EXT)
            shape->bytes = n + 1; //  the type byte follows the length
        else if (marker->kind == MP_ARRAY)
            shape->values = n;
        else if (marker->kind == MP_MAP)
            shape->values = 2 * n;
    }
    return 0;
}

//  Skip one whole value, validating it. Iterative: `pending` counts the
//  values still to read, and each of them needs at least one byte, so a
//  count larger than the bytes left is refused at once (PROTO-2).
static int
mp_skip_one (mp_cursor_t *cur)
{
    size_t off = cur->off;
    uint64_t pending = 1;
    while (pending > 0) {
        mp_cursor_t at = {cur->data, cur->size, off};
        mp_shape_t shape;
        if (mp_shape (&at, &shape)) return -1;
        size_t left = cur->size - off;
        if (shape.head > left || shape.bytes > left - shape.head) return -1;
        off += shape.head + (size_t)shape.bytes;
        pending--;
        //  Each value still pending needs a byte, so pending <= size - off
        //  holds here and the subtraction cannot wrap.
        if (shape.values > cur->size - off - pending) return -1;
        pending += shape.values;
    }
    cur->off = off;
    return 0;
}

//  True if data is exactly one valid msgpack value that is a map.
static bool
mp_is_one_map (const uint8_t *data, size_t size)
{
    mp_cursor_t cur = {data, size, 0};
    return size > 0 && zh_msgpack_is_map (data[0]) && mp_skip_one (&cur) == 0 && cur.off == size;
}

int
zh_msgpack_check (const uint8_t *data, size_t size)
{
    mp_cursor_t cur = {data, data ? size : 0, 0};
    return data && size > 0 && mp_skip_one (&cur) == 0 && cur.off == size ? 0 : -1;
}

int
zh_msgpack_unpack (const uint8_t *data, size_t size, msgpack_zone *zone, msgpack_object *root)
{
    if (zh_msgpack_check (data, size)) return -1; //  PROTO-2
    size_t off = 0;
    msgpack_unpack_return ret = msgpack_unpack ((const char *)data, size, &off, zone, root);
    return ret == MSGPACK_UNPACK_SUCCESS && off == size ? 0 : -1;
}

static int
mp_read_map (mp_cursor_t *cur, uint64_t *count)
{
    mp_shape_t shape;
    if (mp_shape (cur, &shape) || !zh_msgpack_is_map (cur->data[cur->off])) return -1;
    *count = shape.values / 2;
    cur->off += shape.head;
    return 0;
}

static int
mp_read_array (mp_cursor_t *cur, uint64_t *count)
{
    mp_shape_t shape;
    if (mp_shape (cur, &shape)) return -1;
    uint8_t b = cur->data[cur->off];
    if (!((b >= 0x90 && b <= 0x9f) || b == 0xdc || b == 0xdd)) return -1;
    *count = shape.values;
    cur->off += shape.head;
    return 0;
}

static int
mp_read_str (mp_cursor_t *cur, zh_span_t *span)
{
    mp_shape_t shape;
    if (mp_shape (cur, &shape)) return -1;
    uint8_t b = cur->data[cur->off];
    if (!((b >= 0xa0 && b <= 0xbf) || b == 0xd9 || b == 0xda || b == 0xdb)) return -1;
    size_t left = mp_left (cur);
    if (shape.head > left || shape.bytes > left - shape.head) return -1;
    span->ptr = (const char *)cur->data + cur->off + shape.head;
    span->len = (size_t)shape.bytes;
    cur->off += shape.head + (size_t)shape.bytes;
    return 0;
}

//  Read any integer kind as int64; a uint64 above INT64_MAX is refused.
static int
mp_read_int (mp_cursor_t *cur, int64_t *value)
{
    if (mp_left (cur) < 1) return -1;
    uint8_t b = cur->data[cur->off];
    uint64_t u = 0;
    size_t n;
    if (b <= 0x7f || b >= 0xe0) {
        *value = (int8_t)b;
        cur->off++;
        return 0;
    }
    if (b >= 0xcc && b <= 0xcf)
        n = (size_t)1 << (b - 0xcc);
    else if (b >= 0xd0 && b <= 0xd3)
        n = (size_t)1 << (b - 0xd0);
    else
        return -1;
    if (mp_read_be (cur, n, &u)) return -1;
    if (b >= 0xd0) { //  signed: sign-extend from n bytes
        int shift = 64 - 8 * (int)n;
        *value = shift ? (int64_t)(u << shift) >> shift : (int64_t)u;
    } else {
        if (u > INT64_MAX) return -1;
        *value = (int64_t)u;
    }
    cur->off += 1 + n;
    return 0;
}

static bool
s_span_is (zh_span_t span, const char *s)
{
    size_t n = strlen (s);
    return span.len == n && memcmp (span.ptr, s, n) == 0;
}

//  ---------------------------------------------------------------------
//  Control bodies: one table maps every key to its zh_body_t member.

typedef enum { FIELD_STR, FIELD_INT, FIELD_UINT, FIELD_BOOL } field_type_t;

typedef struct {
    const char *name;
    uint32_t bit;
    field_type_t type;
    size_t offset;
} field_t;

#define FIELD(name, bit, type, member)                                                             \
    {                                                                                              \
        name, bit, type, offsetof (zh_body_t, member)                                              \
    }

//  Table order is the encoding order.
static const field_t s_fields[] = {
    FIELD ("label", ZH_F_LABEL, FIELD_STR, label),
    FIELD ("pid", ZH_F_PID, FIELD_INT, pid),
    FIELD ("lang", ZH_F_LANG, FIELD_STR, lang),
    FIELD ("proc", ZH_F_PROC, FIELD_STR, proc),
    FIELD ("host", ZH_F_HOST, FIELD_STR, host),
    FIELD ("agent", ZH_F_AGENT, FIELD_STR, agent),
    FIELD ("heartbeat_ms", ZH_F_HEARTBEAT_MS, FIELD_UINT, heartbeat_ms),
    FIELD ("max_msg_bytes", ZH_F_MAX_MSG_BYTES, FIELD_UINT, max_msg_bytes),
    FIELD ("hwm", ZH_F_HWM, FIELD_UINT, hwm),
    FIELD ("incarnation", ZH_F_INCARNATION, FIELD_UINT, incarnation),
    FIELD ("endpoint", ZH_F_ENDPOINT, FIELD_STR, endpoint),
    FIELD ("reason", ZH_F_REASON, FIELD_STR, reason),
    FIELD ("code", ZH_F_CODE, FIELD_INT, code),
    FIELD ("dest", ZH_F_DEST, FIELD_STR, dest),
    FIELD ("seq", ZH_F_SEQ, FIELD_INT, seq),
    FIELD ("timeout_ms", ZH_F_TIMEOUT_MS, FIELD_UINT, timeout_ms),
    FIELD ("liveness", ZH_F_LIVENESS, FIELD_UINT, liveness),
    FIELD ("batch", ZH_F_BATCH, FIELD_BOOL, batch),
    FIELD ("batch_max_bytes", ZH_F_BATCH_MAX_BYTES, FIELD_UINT, batch_max_bytes),
};
#define FIELD_COUNT (sizeof s_fields / sizeof s_fields[0])

//  The fields a command carries (§3's table).
static uint32_t
s_fields_of (uint8_t command)
{
    switch (command) {
    case ZH_ATTACH:
        return ZH_F_LABEL | ZH_F_PID | ZH_F_LANG | ZH_F_BATCH;
    case ZH_BOOTSTRAP:
        return ZH_F_PROC | ZH_F_HOST | ZH_F_AGENT | ZH_F_HEARTBEAT_MS | ZH_F_MAX_MSG_BYTES |
               ZH_F_HWM | ZH_F_INCARNATION | ZH_F_LIVENESS | ZH_F_BATCH | ZH_F_BATCH_MAX_BYTES;
    case ZH_READY:
        return ZH_F_PROC | ZH_F_PID | ZH_F_BATCH;
    case ZH_HELLO:
        return ZH_F_ENDPOINT | ZH_F_INCARNATION | ZH_F_BATCH;
    case ZH_WELCOME:
        return ZH_F_ENDPOINT | ZH_F_INCARNATION | ZH_F_BATCH | ZH_F_BATCH_MAX_BYTES;
    case ZH_BYE:
        return ZH_F_REASON;
    case ZH_ERROR:
        return ZH_F_CODE | ZH_F_REASON | ZH_F_DEST | ZH_F_SEQ;
    case ZH_STOP:
        return ZH_F_REASON | ZH_F_TIMEOUT_MS;
    default:
        return 0;
    }
}

//  The fields a command must carry (zh_proto.h).
static uint32_t
s_required_of (uint8_t command)
{
    switch (command) {
    case ZH_BOOTSTRAP:
        //  liveness and the batch fields came later (§14): a broker that
        //  does not batch may leave them out.
        return ZH_F_PROC | ZH_F_HOST | ZH_F_AGENT | ZH_F_HEARTBEAT_MS | ZH_F_MAX_MSG_BYTES |
               ZH_F_HWM | ZH_F_INCARNATION;
    case ZH_READY:
        return ZH_F_PROC;
    case ZH_HELLO:
    case ZH_WELCOME:
        return ZH_F_ENDPOINT | ZH_F_INCARNATION;
    case ZH_ERROR:
        return ZH_F_CODE | ZH_F_REASON;
    default:
        return 0;
    }
}

static const field_t *
s_field_find (uint8_t command, const char *key, size_t len)
{
    uint32_t allowed = s_fields_of (command);
    for (size_t i = 0; i < FIELD_COUNT; i++)
        if ((allowed & s_fields[i].bit) && strlen (s_fields[i].name) == len &&
            memcmp (s_fields[i].name, key, len) == 0)
            return &s_fields[i];
    return NULL;
}

//  Store one msgpack value into the member a field names, type-checked.
static int
s_field_store (zh_body_t *body, const field_t *field, const msgpack_object *value, zh_error_t *err)
{
    const char *cmd = zh_command_name (body->command);
    void *member = (char *)body + field->offset;
    switch (field->type) {
    case FIELD_STR:
        if (value->type != MSGPACK_OBJECT_STR)
            return zh_error_set (err, ZH_ERR_MALFORMED, 0, "%s body: %s must be a string", cmd,
                                 field->name);
        if (value->via.str.size > ZH_STRING_MAX)
            return zh_error_set (err, ZH_ERR_MALFORMED, 0,
                                 "%s body: %s is %u bytes, over the %d-byte string limit", cmd,
                                 field->name, value->via.str.size, ZH_STRING_MAX);
        ((zh_span_t *)member)->ptr = value->via.str.ptr;
        ((zh_span_t *)member)->len = value->via.str.size;
        return 0;
    case FIELD_INT:
        if (value->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            *(int64_t *)member = value->via.i64;
        else if (value->type == MSGPACK_OBJECT_POSITIVE_INTEGER && value->via.u64 <= INT64_MAX)
            *(int64_t *)member = (int64_t)value->via.u64;
        else
            return zh_error_set (err, ZH_ERR_MALFORMED, 0,
                                 "%s body: %s must be an integer in int64 range", cmd, field->name);
        return 0;
    case FIELD_UINT:
        if (value->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return zh_error_set (err, ZH_ERR_MALFORMED, 0,
                                 "%s body: %s must be a non-negative integer", cmd, field->name);
        *(uint64_t *)member = value->via.u64;
        return 0;
    case FIELD_BOOL:
        if (value->type != MSGPACK_OBJECT_BOOLEAN)
            return zh_error_set (err, ZH_ERR_MALFORMED, 0, "%s body: %s must be true or false", cmd,
                                 field->name);
        *(bool *)member = value->via.boolean;
        return 0;
    }
    return -1;
}

//  Walk the pairs of a decoded map into body (PROTO-3).
static int
s_body_fill (zh_body_t *body, const msgpack_object_map *map, zh_error_t *err)
{
    const char *cmd = zh_command_name (body->command);
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *key = &map->ptr[i].key;
        if (key->type != MSGPACK_OBJECT_STR)
            return zh_error_set (err, ZH_ERR_MALFORMED, 0, "%s body: key %u is not a string", cmd,
                                 i);
        const field_t *field = s_field_find (body->command, key->via.str.ptr, key->via.str.size);
        if (!field) continue; //  unknown keys are ignored (§3)
        if (body->present & field->bit)
            return zh_error_set (err, ZH_ERR_MALFORMED, 0, "%s body: %s given twice", cmd,
                                 field->name);
        if (s_field_store (body, field, &map->ptr[i].val, err)) return -1;
        body->present |= field->bit;
    }
    return 0;
}

//  Check that the body bytes are exactly one map (PROTO-2 guard), then
//  let msgpack-c unpack it into a zone and fill body.
static int
s_body_unpack (zh_body_t *body, const uint8_t *data, size_t size, zh_error_t *err)
{
    const char *cmd = zh_command_name (body->command);
    mp_cursor_t cur = {data, size, 0};
    if (mp_skip_one (&cur))
        return zh_error_set (err, ZH_ERR_MALFORMED, 0, "%s body: not valid msgpack", cmd);
    if (cur.off != size)
        return zh_error_set (err, ZH_ERR_MALFORMED, cur.off,
                             "%s body: %zu trailing bytes after the map", cmd, size - cur.off);
    if (!zh_msgpack_is_map (data[0]))
        return zh_error_set (err, ZH_ERR_MALFORMED, 0,
                             "%s body: not a msgpack map (first byte 0x%02x)", cmd, data[0]);

    msgpack_zone zone;
    if (!msgpack_zone_init (&zone, 1024))
        return zh_error_set (err, ZH_ERR_MALFORMED, 0, "%s body: out of memory", cmd);
    msgpack_object root;
    size_t off = 0;
    int rc = -1;
    msgpack_unpack_return ret = msgpack_unpack ((const char *)data, size, &off, &zone, &root);
    if (ret != MSGPACK_UNPACK_SUCCESS || root.type != MSGPACK_OBJECT_MAP)
        zh_error_set (err, ZH_ERR_MALFORMED, off, "%s body: msgpack refused it (%d)", cmd,
                      (int)ret);
    else
        rc = s_body_fill (body, &root.via.map, err);
    msgpack_zone_destroy (&zone);
    return rc;
}

int
zh_body_decode (zh_body_t *body, uint8_t command, const uint8_t *data, size_t size, zh_error_t *err)
{
    memset (body, 0, sizeof *body);
    body->command = command;
    const char *cmd = zh_command_name (command);
    if (!cmd || zh_command_has_head (command))
        return zh_error_set (err, ZH_ERR_MALFORMED, 0, "command 0x%02x has no control body",
                             command);
    if (size > 0 && !data) return zh_error_set (err, ZH_ERR_MALFORMED, 0, "%s body: no data", cmd);
    if (size > 0 && s_body_unpack (body, data, size, err)) return -1;

    uint32_t missing = s_required_of (command) & ~body->present;
    for (size_t i = 0; i < FIELD_COUNT; i++)
        if (missing & s_fields[i].bit)
            return zh_error_set (err, ZH_ERR_MALFORMED, 0, "%s body: %s is required", cmd,
                                 s_fields[i].name);
    return 0;
}

//  Pack a span as a msgpack str (a NULL span is the empty string).
static int
s_pack_span (msgpack_packer *pk, zh_span_t span)
{
    if (span.len > UINT32_MAX) return -1;
    int rc = msgpack_pack_str (pk, span.len);
    return rc ? rc : msgpack_pack_str_body (pk, span.ptr ? span.ptr : "", span.len);
}

static int
s_pack_cstr (msgpack_packer *pk, const char *s)
{
    return s_pack_span (pk, zh_span_of (s));
}

static int
s_pack_field (msgpack_packer *pk, const zh_body_t *body, const field_t *field)
{
    const void *member = (const char *)body + field->offset;
    if (s_pack_cstr (pk, field->name)) return -1;
    switch (field->type) {
    case FIELD_STR:
        return s_pack_span (pk, *(const zh_span_t *)member);
    case FIELD_INT:
        return msgpack_pack_int64 (pk, *(const int64_t *)member);
    case FIELD_UINT:
        return msgpack_pack_uint64 (pk, *(const uint64_t *)member);
    case FIELD_BOOL:
        return *(const bool *)member ? msgpack_pack_true (pk) : msgpack_pack_false (pk);
    }
    return -1;
}

//  Hand the sbuffer's bytes to the caller, or free them on failure.
static uint8_t *
s_sbuffer_take (msgpack_sbuffer *sbuf, int rc, size_t *size)
{
    if (rc != 0) {
        msgpack_sbuffer_destroy (sbuf);
        return NULL;
    }
    *size = sbuf->size;
    uint8_t *data = (uint8_t *)msgpack_sbuffer_release (sbuf);
    //  msgpack's sbuffer starts at 8 KiB; a body kept for long (the broker
    //  keeps each client's BOOTSTRAP) should cost what it holds.
    uint8_t *exact = data ? (uint8_t *)realloc (data, *size ? *size : 1) : NULL;
    return exact ? exact : data;
}

uint8_t *
zh_body_encode (const zh_body_t *body, size_t *size)
{
    uint32_t fields = body->present & s_fields_of (body->command);
    uint32_t count = 0;
    for (size_t i = 0; i < FIELD_COUNT; i++)
        count += (fields & s_fields[i].bit) != 0;

    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    int rc = msgpack_pack_map (&pk, count);
    for (size_t i = 0; i < FIELD_COUNT && rc == 0; i++)
        if (fields & s_fields[i].bit) rc = s_pack_field (&pk, body, &s_fields[i]);
    return s_sbuffer_take (&sbuf, rc, size);
}

//  ---------------------------------------------------------------------
//  BATCH (§14)

int
zh_batch_begin (zh_batch_iter_t *it, const uint8_t *frame, size_t size, zh_error_t *err)
{
    zh_header_t hdr = {0, 0, 0, 0};
    if (zh_header_check (&hdr, frame, size, err) != 0) return -1;
    if (hdr.command != ZH_BATCH)
        return zh_error_set (err, ZH_ERR_MALFORMED, 3, "not a BATCH: command 0x%02x", hdr.command);
    if (size == ZH_HEADER_SIZE)
        return zh_error_set (err, ZH_ERR_MALFORMED, ZH_HEADER_SIZE, "BATCH: no elements");
    *it = (zh_batch_iter_t){frame, size, ZH_HEADER_SIZE, 0};
    return 0;
}

int
zh_batch_next (zh_batch_iter_t *it, const uint8_t **elem, size_t *len, zh_error_t *err)
{
    size_t left = it->size - it->offset;
    if (left == 0) return 0;
    if (left < ZH_BATCH_LEN_SIZE)
        return zh_error_set (err, ZH_ERR_MALFORMED, it->offset,
                             "BATCH: %zu bytes left after element %zu, too few for a length", left,
                             it->index);
    uint32_t n = s_get_u32 (it->data + it->offset);
    if (n == 0)
        return zh_error_set (err, ZH_ERR_MALFORMED, it->offset, "BATCH: element %zu has length 0",
                             it->index + 1);
    if (n > left - ZH_BATCH_LEN_SIZE)
        return zh_error_set (err, ZH_ERR_MALFORMED, it->offset,
                             "BATCH: element %zu claims %u bytes, %zu are left", it->index + 1, n,
                             left - ZH_BATCH_LEN_SIZE);
    *elem = it->data + it->offset + ZH_BATCH_LEN_SIZE;
    *len = n;
    it->offset += ZH_BATCH_LEN_SIZE + n;
    it->index++;
    return 1;
}

int
zh_batch_put (uint8_t *buf, size_t size, size_t *used, const uint8_t *elem, size_t len)
{
    if (len == 0 || len > UINT32_MAX || *used > size || size - *used < ZH_BATCH_LEN_SIZE + len)
        return -1;
    s_put_u32 (buf + *used, (uint32_t)len);
    memcpy (buf + *used + ZH_BATCH_LEN_SIZE, elem, len);
    *used += ZH_BATCH_LEN_SIZE + len;
    return 0;
}

//  ---------------------------------------------------------------------
//  RETURN meta (§5)
//
//  RM-1 (always decodable): the original meta is copied in byte for byte
//  when it is exactly one valid msgpack map; anything else (the broker
//  never decodes meta on the fast path, so a sender can put any bytes
//  after a map marker) is written as {} so that the RETURN meta itself
//  stays one well-formed map.

static int
s_pack_failure (msgpack_packer *pk, zh_span_t code, zh_span_t reason, zh_span_t at)
{
    int rc = msgpack_pack_map (pk, 3);
    rc = rc ? rc : s_pack_cstr (pk, "code");
    rc = rc ? rc : s_pack_span (pk, code);
    rc = rc ? rc : s_pack_cstr (pk, "reason");
    rc = rc ? rc : s_pack_span (pk, reason);
    rc = rc ? rc : s_pack_cstr (pk, "at");
    rc = rc ? rc : s_pack_span (pk, at);
    return rc;
}

uint8_t *
zh_return_meta_encode (const zh_failure_t *prior, size_t prior_count, const char *code,
                       const char *reason, const char *at, const char *orig_dest,
                       size_t orig_dest_len, const uint8_t *orig_meta, size_t orig_meta_len,
                       size_t *size)
{
    static const uint8_t empty_map[] = {0x80};
    if (!orig_meta || !mp_is_one_map (orig_meta, orig_meta_len)) {
        orig_meta = empty_map;
        orig_meta_len = 1;
    }
    zh_span_t dest = {orig_dest, orig_dest ? orig_dest_len : 0};

    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    int rc = prior_count >= UINT32_MAX ? -1 : msgpack_pack_map (&pk, 3);
    rc = rc ? rc : s_pack_cstr (&pk, "failures");
    rc = rc ? rc : msgpack_pack_array (&pk, prior_count + 1);
    for (size_t i = 0; i < prior_count && rc == 0; i++)
        rc = s_pack_failure (&pk, prior[i].code, prior[i].reason, prior[i].at);
    rc = rc ? rc : s_pack_failure (&pk, zh_span_of (code), zh_span_of (reason), zh_span_of (at));
    rc = rc ? rc : s_pack_cstr (&pk, "dest");
    rc = rc ? rc : s_pack_span (&pk, dest);
    rc = rc ? rc : s_pack_cstr (&pk, "meta");
    rc = rc ? rc : msgpack_sbuffer_write (&sbuf, (const char *)orig_meta, orig_meta_len);
    return s_sbuffer_take (&sbuf, rc, size);
}

//  One failure map {code, reason, at}: all three strings, other keys
//  ignored.
static int
s_failure_read (mp_cursor_t *cur, zh_failure_t *failure, size_t index, zh_error_t *err)
{
    uint64_t pairs = 0;
    if (mp_read_map (cur, &pairs))
        return zh_error_set (err, ZH_ERR_MALFORMED, cur->off,
                             "RETURN meta: failure %zu is not a map", index);
    unsigned seen = 0;
    for (uint64_t i = 0; i < pairs; i++) {
        zh_span_t key, *slot = NULL;
        if (mp_read_str (cur, &key))
            return zh_error_set (err, ZH_ERR_MALFORMED, cur->off,
                                 "RETURN meta: failure %zu has a non-string key", index);
        if (s_span_is (key, "code"))
            slot = &failure->code, seen |= 1;
        else if (s_span_is (key, "reason"))
            slot = &failure->reason, seen |= 2;
        else if (s_span_is (key, "at"))
            slot = &failure->at, seen |= 4;
        if (slot ? mp_read_str (cur, slot) : mp_skip_one (cur))
            return zh_error_set (err, ZH_ERR_MALFORMED, cur->off,
                                 "RETURN meta: failure %zu: bad value", index);
    }
    if (seen != 7)
        return zh_error_set (err, ZH_ERR_MALFORMED, cur->off,
                             "RETURN meta: failure %zu needs code, reason and at", index);
    return 0;
}

static int
s_failures_read (mp_cursor_t *cur, zh_return_meta_t *rm, zh_error_t *err)
{
    uint64_t count;
    if (mp_read_array (cur, &count))
        return zh_error_set (err, ZH_ERR_MALFORMED, cur->off,
                             "RETURN meta: failures is not an array");
    if (count == 0)
        return zh_error_set (err, ZH_ERR_MALFORMED, cur->off, "RETURN meta: failures is empty");
    rm->failure_count = 0;
    for (uint64_t i = 0; i < count; i++) {
        zh_failure_t scratch, *slot = i < ZH_FAILURES_MAX ? &rm->failures[i] : &scratch;
        if (s_failure_read (cur, slot, (size_t)i, err)) return -1;
        if (i < ZH_FAILURES_MAX) rm->failure_count++;
    }
    return 0;
}

int
zh_return_meta_decode (zh_return_meta_t *rm, const uint8_t *data, size_t size, zh_error_t *err)
{
    memset (rm, 0, sizeof *rm);
    if (!data || !mp_is_one_map (data, size))
        return zh_error_set (err, ZH_ERR_MALFORMED, 0, "RETURN meta: not exactly one msgpack map");

    mp_cursor_t cur = {data, size, 0};
    uint64_t pairs = 0;
    mp_read_map (&cur, &pairs);
    unsigned seen = 0;
    for (uint64_t i = 0; i < pairs; i++) {
        zh_span_t key;
        if (mp_read_str (&cur, &key))
            return zh_error_set (err, ZH_ERR_MALFORMED, cur.off, "RETURN meta: non-string key");
        size_t value_at = cur.off;
        int rc;
        if (s_span_is (key, "failures")) {
            if (s_failures_read (&cur, rm, err)) return -1; //  err says which failure is wrong
            rc = 0, seen |= 1;
        } else if (s_span_is (key, "dest"))
            rc = mp_read_str (&cur, &rm->dest), seen |= 2;
        else if (s_span_is (key, "meta")) {
            rc = zh_msgpack_is_map (data[value_at]) ? mp_skip_one (&cur) : -1;
            rm->meta = data + value_at;
            rm->meta_len = cur.off - value_at;
            seen |= 4;
        } else
            rc = mp_skip_one (&cur);
        if (rc)
            return zh_error_set (err, ZH_ERR_MALFORMED, value_at, "RETURN meta: bad value for %.*s",
                                 (int)(key.len > 32 ? 32 : key.len), key.ptr);
    }
    if (seen != 7)
        return zh_error_set (err, ZH_ERR_MALFORMED, 0,
                             "RETURN meta: needs failures, dest and meta");
    return 0;
}

//  ---------------------------------------------------------------------
//  Meta lookups: one pass over the top level, values skipped unread.

//  Position cur at the value of the first top-level key `name`.
static int
s_meta_seek (mp_cursor_t *cur, const char *name)
{
    uint64_t pairs = 0;
    if (!cur->data || mp_read_map (cur, &pairs)) return -1;
    for (uint64_t i = 0; i < pairs; i++) {
        zh_span_t key;
        if (mp_read_str (cur, &key) == 0) {
            if (s_span_is (key, name)) return 0;
        } else if (mp_skip_one (cur))
            return -1;
        if (mp_skip_one (cur)) return -1;
    }
    return -1;
}

int
zh_meta_find_seq (const uint8_t *meta, size_t size, int64_t *seq)
{
    mp_cursor_t cur = {meta, meta ? size : 0, 0};
    if (s_meta_seek (&cur, "seq")) return -1;
    return mp_read_int (&cur, seq);
}

int
zh_meta_find_reply (const uint8_t *meta, size_t size, zh_span_t *reply)
{
    mp_cursor_t cur = {meta, meta ? size : 0, 0};
    if (s_meta_seek (&cur, "reply")) return -1;
    return mp_read_str (&cur, reply);
}

//  ---------------------------------------------------------------------
//  Whole messages

int
zh_head_parse_dest (const zh_head_t *head, zh_addr_t *dest, zh_error_t *err)
{
    zh_error_t why;
    if (zh_addr_parse (dest, (const char *)head->dest, head->dest_len, &why))
        return zh_error_set (err, ZH_ERR_MALFORMED, 8 + why.offset, "dest: %s", why.reason);
    if (!zh_head_dest_kind_ok (head->hdr.command, dest->kind))
        return zh_error_set (err, ZH_ERR_MALFORMED, 8,
                             head->hdr.command == ZH_SEND
                                 ? "dest: a SEND's dest must be a port address"
                                 : "dest: a RETURN's dest (the original src) must be an actor or "
                                   "proc address");
    return 0;
}

int
zh_head_parse_src (const zh_head_t *head, zh_addr_t *src, zh_error_t *err)
{
    size_t at = 10 + (size_t)head->dest_len;
    zh_error_t why;
    if (zh_addr_parse (src, (const char *)head->src, head->src_len, &why))
        return zh_error_set (err, ZH_ERR_MALFORMED, at + why.offset, "src: %s", why.reason);
    if (!zh_head_src_kind_ok (src->kind))
        return zh_error_set (err, ZH_ERR_MALFORMED, at, "src: must be an actor or proc address");
    return 0;
}

//  A head's addresses, by the rules of zh_head_parse_dest/src.
static int
s_head_addresses (const zh_head_t *head, zh_error_t *err)
{
    zh_addr_t addr;
    if (zh_head_parse_dest (head, &addr, err)) return -1;
    return zh_head_parse_src (head, &addr, err);
}

int
zh_msg_decode (zh_msg_t *msg, const zh_frame_view_t *frames, size_t count, zh_error_t *err)
{
    memset (msg, 0, sizeof *msg);
    if (count == 0) return zh_error_set (err, ZH_ERR_MALFORMED, 0, "no frames");
    for (size_t i = 0; i < count; i++)
        msg->total_size = s_size_add (msg->total_size, frames[i].size);

    if (zh_header_check (&msg->hdr, frames[0].data, frames[0].size, err)) return -1;
    const char *cmd = zh_command_name (msg->hdr.command);

    if (msg->hdr.command == ZH_BATCH) {
        if (count != 1)
            return zh_error_set (err, ZH_ERR_MALFORMED, 0, "BATCH: %zu frames, a BATCH is one",
                                 count);
        zh_batch_iter_t it;
        if (zh_batch_begin (&it, frames[0].data, frames[0].size, err)) return -1;
        const uint8_t *elem;
        size_t len;
        int more;
        while ((more = zh_batch_next (&it, &elem, &len, err)) == 1) {
            zh_header_t inner;
            if (zh_header_check (&inner, elem, len, err)) return -1;
            if (!zh_command_has_head (inner.command))
                return zh_error_set (err, ZH_ERR_MALFORMED, 3,
                                     "BATCH element %zu: %s, only SEND and RETURN are batched",
                                     it.index, zh_command_name (inner.command));
            if (zh_head_decode (&msg->head, elem, len, err) || s_head_addresses (&msg->head, err))
                return -1;
            msg->batch_elements++;
        }
        return more;
    }

    if (!zh_command_has_head (msg->hdr.command)) {
        if (count > 2)
            return zh_error_set (err, ZH_ERR_MALFORMED, 0,
                                 "%s: extra frames (%zu), a control command has at most a body",
                                 cmd, count);
        const uint8_t *body = count == 2 ? frames[1].data : NULL;
        size_t body_size = count == 2 ? frames[1].size : 0;
        return zh_body_decode (&msg->body, msg->hdr.command, body, body_size, err);
    }

    msg->payload_frames = count - 1;
    if (msg->payload_frames > ZH_MAX_FRAMES)
        return zh_error_set (err, ZH_ERR_MALFORMED, 0, "%s: %zu payload frames, at most %d", cmd,
                             msg->payload_frames, ZH_MAX_FRAMES);
    if (zh_head_decode (&msg->head, frames[0].data, frames[0].size, err)) return -1;
    return s_head_addresses (&msg->head, err);
}
