/*  test_vectors.c — the shared ZHP/1 test vectors (tests/vectors/) read
    through the C codec (common/zh_proto.c, common/zh_addr.c).

    Where it sits: the tests/vectors JSON files hold frames and addresses as data,
    with what the broker makes of them; the Python and Node clients read
    the same files (tests/vectors/README.md). This reader checks that the
    C codec, the one the broker runs, does exactly what each vector says:
    - frames.json: zh_msg_decode decodes the frames to the expected
      command, header, dest, src, meta, parts or body, or refuses them
      with the expected ERROR code (413: the codec accepts, the size is
      over the vector's max_msg_bytes); a valid head re-encodes with
      zh_head_write to the same bytes, and so does a canonical body with
      zh_body_encode;
    - addresses.json: zh_addr_parse gives the expected parts and
      zh_addr_format the same text, or refuses with 400 and a reason
      naming the expected part; uid58 values encode and decode both ways.

    The vectors directory is argv[1], else ZH_VECTORS_DIR (set by CMake).
    A missing or empty file fails; each failing vector is printed by id
    and the test fails at the end of its file.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <inttypes.h>
#include <jansson.h>
#include <msgpack.h>

#include "zh_addr.h"
#include "zh_proto.h"

#ifndef ZH_VECTORS_DIR
#define ZH_VECTORS_DIR "tests/vectors"
#endif

static const char *s_dir = ZH_VECTORS_DIR;

//  ---------------------------------------------------------------------
//  Helpers

//  Record a failure of the vector `id` (printed) and return -1.
static int s_fail (const char *id, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

static int
s_fail (const char *id, const char *format, ...)
{
    char text[512];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    print_error ("vector %s: %s\n", id, text);
    return -1;
}

//  Load dir/name; fail the test if it is missing, not JSON, of another
//  format, or holds no vectors under key.
static json_t *
s_load (const char *name, const char *format, const char *key)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/%s", s_dir, name);
    json_error_t jerr;
    json_t *doc = json_load_file (path, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) print_error ("%s: %s (line %d)\n", path, jerr.text, jerr.line);
    assert_non_null (doc);
    const char *got = json_string_value (json_object_get (doc, "format"));
    if (!got || strcmp (got, format) != 0)
        print_error ("%s: format is %s, want %s\n", path, got ? got : "(none)", format);
    assert_non_null (got);
    assert_string_equal (got, format);
    assert_int_equal (json_integer_value (json_object_get (doc, "version")), 1);
    json_t *list = json_object_get (doc, key);
    if (!json_is_array (list) || json_array_size (list) == 0)
        print_error ("%s: no vectors under \"%s\"\n", path, key);
    assert_true (json_is_array (list) && json_array_size (list) > 0);
    return doc;
}

//  Hex text to malloc'd bytes (at least 1 byte allocated); -1 if not hex.
static int
s_unhex (const char *hex, uint8_t **out, size_t *size)
{
    size_t n = hex ? strlen (hex) : 0;
    if (!hex || n % 2) return -1;
    uint8_t *bytes = malloc (n / 2 + 1);
    assert_non_null (bytes);
    for (size_t i = 0; i < n / 2; i++) {
        unsigned value;
        if (sscanf (hex + 2 * i, "%2x", &value) != 1) {
            free (bytes);
            return -1;
        }
        bytes[i] = (uint8_t)value;
    }
    *out = bytes;
    *size = n / 2;
    return 0;
}

//  True if bytes equal the hex text.
static bool
s_hex_eq (const char *hex, const uint8_t *data, size_t size)
{
    uint8_t *bytes;
    size_t n;
    if (s_unhex (hex, &bytes, &n)) return false;
    bool same = n == size && (size == 0 || memcmp (bytes, data, size) == 0);
    free (bytes);
    return same;
}

static bool
s_str_eq (const json_t *str, const void *data, size_t size)
{
    return json_is_string (str) && json_string_length (str) == size &&
           (size == 0 || memcmp (json_string_value (str), data, size) == 0);
}

//  A JSON integer: a number, or {"$int": "decimal"} beyond 2**53.
//  Returns 0 with *negative and *magnitude, or -1.
static int
s_json_int (const json_t *value, bool *negative, uint64_t *magnitude)
{
    if (json_is_integer (value)) {
        json_int_t i = json_integer_value (value);
        *negative = i < 0;
        *magnitude = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
        return 0;
    }
    const char *text = json_string_value (json_object_get (value, "$int"));
    if (!json_is_object (value) || json_object_size (value) != 1 || !text) return -1;
    *negative = text[0] == '-';
    char *end = NULL;
    *magnitude = strtoull (text + *negative, &end, 10);
    return *end == 0 ? 0 : -1;
}

static bool
s_json_int_eq (const json_t *value, bool negative, uint64_t magnitude)
{
    bool n;
    uint64_t m;
    return s_json_int (value, &n, &m) == 0 && n == negative && m == magnitude;
}

static bool
s_json_i64_eq (const json_t *value, int64_t i)
{
    return s_json_int_eq (value, i < 0, i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i);
}

//  A decoded msgpack value equals its JSON form (README: maps with str
//  keys, arrays, str, ints, bool, nil).
static bool
s_mp_eq_json (const msgpack_object *obj, const json_t *json)
{
    switch (obj->type) {
    case MSGPACK_OBJECT_NIL:
        return json_is_null (json);
    case MSGPACK_OBJECT_BOOLEAN:
        return json_is_boolean (json) && obj->via.boolean == json_is_true (json);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return s_json_int_eq (json, false, obj->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return s_json_i64_eq (json, obj->via.i64);
    case MSGPACK_OBJECT_STR:
        return s_str_eq (json, obj->via.str.ptr, obj->via.str.size);
    case MSGPACK_OBJECT_ARRAY:
        if (!json_is_array (json) || json_array_size (json) != obj->via.array.size) return false;
        for (uint32_t i = 0; i < obj->via.array.size; i++)
            if (!s_mp_eq_json (&obj->via.array.ptr[i], json_array_get (json, i))) return false;
        return true;
    case MSGPACK_OBJECT_MAP:
        if (!json_is_object (json) || json_object_size (json) != obj->via.map.size) return false;
        for (uint32_t i = 0; i < obj->via.map.size; i++) {
            const msgpack_object *key = &obj->via.map.ptr[i].key;
            if (key->type != MSGPACK_OBJECT_STR) return false;
            json_t *value = json_object_getn (json, key->via.str.ptr, key->via.str.size);
            if (!value || !s_mp_eq_json (&obj->via.map.ptr[i].val, value)) return false;
        }
        return true;
    default:
        return false;
    }
}

//  Raw msgpack bytes equal their JSON form, through the codec's guarded
//  unpack.
static bool
s_msgpack_eq_json (const uint8_t *data, size_t size, const json_t *json)
{
    msgpack_zone zone;
    assert_true (msgpack_zone_init (&zone, 1024));
    msgpack_object root;
    bool same = zh_msgpack_unpack (data, size, &zone, &root) == 0 && s_mp_eq_json (&root, json);
    msgpack_zone_destroy (&zone);
    return same;
}

//  ---------------------------------------------------------------------
//  Control bodies: the test's own table of zh_body_t fields.

typedef enum { F_STR, F_INT, F_UINT, F_BOOL } ftype_t;

typedef struct {
    const char *name;
    uint32_t bit;
    ftype_t type;
    size_t offset;
} bfield_t;

#define BF(name, bit, type, member)                                                                \
    {                                                                                              \
        name, bit, type, offsetof (zh_body_t, member)                                              \
    }
static const bfield_t s_bfields[] = {
    BF ("label", ZH_F_LABEL, F_STR, label),
    BF ("pid", ZH_F_PID, F_INT, pid),
    BF ("lang", ZH_F_LANG, F_STR, lang),
    BF ("proc", ZH_F_PROC, F_STR, proc),
    BF ("host", ZH_F_HOST, F_STR, host),
    BF ("agent", ZH_F_AGENT, F_STR, agent),
    BF ("heartbeat_ms", ZH_F_HEARTBEAT_MS, F_UINT, heartbeat_ms),
    BF ("max_msg_bytes", ZH_F_MAX_MSG_BYTES, F_UINT, max_msg_bytes),
    BF ("hwm", ZH_F_HWM, F_UINT, hwm),
    BF ("incarnation", ZH_F_INCARNATION, F_UINT, incarnation),
    BF ("endpoint", ZH_F_ENDPOINT, F_STR, endpoint),
    BF ("reason", ZH_F_REASON, F_STR, reason),
    BF ("code", ZH_F_CODE, F_INT, code),
    BF ("dest", ZH_F_DEST, F_STR, dest),
    BF ("seq", ZH_F_SEQ, F_INT, seq),
    BF ("timeout_ms", ZH_F_TIMEOUT_MS, F_UINT, timeout_ms),
    BF ("liveness", ZH_F_LIVENESS, F_UINT, liveness),
    BF ("batch", ZH_F_BATCH, F_BOOL, batch),
    BF ("batch_max_bytes", ZH_F_BATCH_MAX_BYTES, F_UINT, batch_max_bytes),
};
#define BFIELD_COUNT (sizeof s_bfields / sizeof s_bfields[0])

//  Every field the codec found is in the JSON body with the same value,
//  and every JSON key but the listed unknown ones was found.
static int
s_check_body (const char *id, const zh_body_t *body, const json_t *expect, const json_t *unknown)
{
    if (!json_is_object (expect)) return s_fail (id, "decode.body is not an object");
    size_t found = 0;
    for (size_t i = 0; i < BFIELD_COUNT; i++) {
        const bfield_t *f = &s_bfields[i];
        if (!(body->present & f->bit)) continue;
        found++;
        json_t *value = json_object_get (expect, f->name);
        const void *member = (const char *)body + f->offset;
        bool same = false;
        if (f->type == F_STR) {
            const zh_span_t *span = member;
            same = s_str_eq (value, span->ptr, span->len);
        } else if (f->type == F_INT)
            same = s_json_i64_eq (value, *(const int64_t *)member);
        else if (f->type == F_BOOL)
            same = json_is_boolean (value) && json_is_true (value) == *(const bool *)member;
        else
            same = s_json_int_eq (value, false, *(const uint64_t *)member);
        if (!same) return s_fail (id, "body field %s differs from the vector", f->name);
    }
    size_t unknown_count = json_is_array (unknown) ? json_array_size (unknown) : 0;
    if (found + unknown_count != json_object_size (expect))
        return s_fail (id, "the codec read %zu body fields, the vector has %zu (%zu unknown)",
                       found, json_object_size (expect), unknown_count);
    return 0;
}

//  ---------------------------------------------------------------------
//  Heads

//  The RETURN meta of a decodable RETURN, through zh_return_meta_decode.
static int
s_check_return_meta (const char *id, const zh_head_t *head, const json_t *meta)
{
    zh_return_meta_t rm;
    zh_error_t err;
    if (zh_return_meta_decode (&rm, head->meta, head->meta_len, &err))
        return s_fail (id, "zh_return_meta_decode: %s", err.reason);
    json_t *failures = json_object_get (meta, "failures");
    if (rm.failure_count != json_array_size (failures))
        return s_fail (id, "%zu failures, the vector has %zu", rm.failure_count,
                       json_array_size (failures));
    for (size_t i = 0; i < rm.failure_count; i++) {
        json_t *f = json_array_get (failures, i);
        if (!s_str_eq (json_object_get (f, "code"), rm.failures[i].code.ptr,
                       rm.failures[i].code.len) ||
            !s_str_eq (json_object_get (f, "reason"), rm.failures[i].reason.ptr,
                       rm.failures[i].reason.len) ||
            !s_str_eq (json_object_get (f, "at"), rm.failures[i].at.ptr, rm.failures[i].at.len))
            return s_fail (id, "RETURN failure %zu differs", i);
        if (zh_rc_parse (rm.failures[i].code.ptr, rm.failures[i].code.len) < 0)
            return s_fail (id, "RETURN failure %zu: code is not a RETURN code", i);
    }
    if (!s_str_eq (json_object_get (meta, "dest"), rm.dest.ptr, rm.dest.len))
        return s_fail (id, "RETURN meta dest differs");
    if (!s_msgpack_eq_json (rm.meta, rm.meta_len, json_object_get (meta, "meta")))
        return s_fail (id, "RETURN meta's original meta differs");
    return 0;
}

static int
s_check_head (const char *id, const zh_msg_t *msg, const zh_frame_view_t *frames, size_t count,
              const json_t *expect)
{
    const zh_head_t *head = &msg->head;
    if (!s_str_eq (json_object_get (expect, "dest"), head->dest, head->dest_len))
        return s_fail (id, "dest differs");
    if (!s_str_eq (json_object_get (expect, "src"), head->src, head->src_len))
        return s_fail (id, "src differs");
    const char *meta_hex = json_string_value (json_object_get (expect, "meta_hex"));
    if (!s_hex_eq (meta_hex, head->meta, head->meta_len)) return s_fail (id, "meta bytes differ");

    //  meta as JSON: {} for M = 0, null when the bytes are not one map
    json_t *meta = json_object_get (expect, "meta");
    if (head->meta_len == 0) {
        if (!json_is_object (meta) || json_object_size (meta) != 0)
            return s_fail (id, "M = 0 must be the empty map {}");
    } else if (json_is_null (meta)) {
        if (zh_msgpack_check (head->meta, head->meta_len) == 0)
            return s_fail (id, "meta decodes but the vector says it does not");
    } else if (!s_msgpack_eq_json (head->meta, head->meta_len, meta))
        return s_fail (id, "meta differs from the vector's JSON");

    //  what the broker's lookups find in it
    if (!json_is_null (meta)) {
        int64_t seq;
        json_t *want_seq = json_object_get (meta, "seq");
        int rc = zh_meta_find_seq (head->meta, head->meta_len, &seq);
        if (json_is_integer (want_seq) ? rc != 0 || seq != json_integer_value (want_seq) : rc == 0)
            return s_fail (id, "zh_meta_find_seq does not agree with meta");
        zh_span_t reply;
        json_t *want_reply = json_object_get (meta, "reply");
        rc = zh_meta_find_reply (head->meta, head->meta_len, &reply);
        if (json_is_string (want_reply) ? rc != 0 || !s_str_eq (want_reply, reply.ptr, reply.len)
                                        : rc == 0)
            return s_fail (id, "zh_meta_find_reply does not agree with meta");
    }
    if (msg->hdr.command == ZH_RETURN && !json_is_null (meta) &&
        s_check_return_meta (id, head, meta))
        return -1;

    //  parts: the inline part (if INLINE), then each payload frame
    json_t *parts = json_object_get (expect, "parts");
    bool has_inline = (msg->hdr.flags & ZH_FLAG_INLINE) != 0;
    size_t want = (has_inline ? 1 : 0) + msg->payload_frames;
    if (!json_is_array (parts) || json_array_size (parts) != want)
        return s_fail (id, "%zu parts, the vector has %zu", want, json_array_size (parts));
    for (size_t i = 0; i < want; i++) {
        const char *hex = json_string_value (json_array_get (parts, i));
        bool same = has_inline && i == 0 ? s_hex_eq (hex, head->inline_part, head->inline_len)
                                         : s_hex_eq (hex, frames[i + !has_inline].data,
                                                     frames[i + !has_inline].size);
        if (!same) return s_fail (id, "part %zu differs", i);
    }

    //  zh_head_write from the decoded fields gives back the head frame
    uint8_t *buf = malloc (frames[0].size + 1);
    assert_non_null (buf);
    long n = zh_head_write (buf, frames[0].size, msg->hdr.command, msg->hdr.ttl, msg->hdr.flags,
                            (const char *)head->dest, head->dest_len, (const char *)head->src,
                            head->src_len, head->meta, head->meta_len, head->inline_part,
                            head->inline_len);
    bool same = n == (long)frames[0].size && memcmp (buf, frames[0].data, frames[0].size) == 0;
    free (buf);
    if (!same) return s_fail (id, "zh_head_write does not give back the head frame");
    (void)count;
    return 0;
}

//  ---------------------------------------------------------------------
//  Frames

static int
s_check_control (const char *id, const zh_msg_t *msg, const zh_frame_view_t *frames, size_t count,
                 const json_t *vector, const json_t *expect)
{
    if (s_check_body (id, &msg->body, json_object_get (expect, "body"),
                      json_object_get (expect, "unknown_keys")))
        return -1;
    if (!json_is_true (json_object_get (vector, "canonical"))) return 0;
    //  canonical: [header] alone for an empty body, else [header][body]
    //  as zh_body_encode writes it
    size_t size = 0;
    uint8_t *body = zh_body_encode (&msg->body, &size);
    assert_non_null (body);
    uint8_t header[ZH_HEADER_SIZE];
    zh_header_write (header, msg->hdr.command, 0, 0);
    bool same = frames[0].size == ZH_HEADER_SIZE && memcmp (frames[0].data, header, 6) == 0;
    if (msg->body.present == 0)
        same = same && count == 1;
    else
        same = same && count == 2 && frames[1].size == size &&
               memcmp (frames[1].data, body, size) == 0;
    free (body);
    return same ? 0 : s_fail (id, "canonical, but zh_body_encode writes other bytes");
}

//  A BATCH (§14): each element, decoded as the lone one-frame message it
//  is, matches the vector's element; zh_batch_put of the elements gives
//  the frame back.
static int
s_check_batch (const char *id, const zh_frame_view_t *frame, const json_t *expect)
{
    json_t *elements = json_object_get (expect, "elements");
    if (!json_is_array (elements) || json_array_size (elements) == 0)
        return s_fail (id, "decode.elements is not a non-empty array");
    zh_batch_iter_t it;
    zh_error_t err;
    if (zh_batch_begin (&it, frame->data, frame->size, &err)) return s_fail (id, "%s", err.reason);
    uint8_t *buf = malloc (frame->size);
    assert_non_null (buf);
    zh_header_write (buf, ZH_BATCH, 0, 0);
    size_t used = ZH_HEADER_SIZE, n = 0;
    const uint8_t *elem;
    size_t len;
    int rc = 0, more;
    while (rc == 0 && (more = zh_batch_next (&it, &elem, &len, &err)) == 1) {
        json_t *want = json_array_get (elements, n);
        zh_frame_view_t view = {elem, len};
        zh_msg_t msg;
        char eid[160];
        snprintf (eid, sizeof eid, "%s element %zu", id, n + 1);
        if (!want)
            rc = s_fail (id, "more elements than the vector's %zu", json_array_size (elements));
        else if (zh_msg_decode (&msg, &view, 1, &err))
            rc = s_fail (eid, "refused: %s", err.reason);
        else if (msg.hdr.command != json_integer_value (json_object_get (want, "command")) ||
                 msg.hdr.ttl != json_integer_value (json_object_get (want, "ttl")) ||
                 msg.hdr.flags != json_integer_value (json_object_get (want, "flags")))
            rc = s_fail (eid, "command, ttl or flags differ");
        else
            rc = s_check_head (eid, &msg, &view, 1, want);
        if (rc == 0 && zh_batch_put (buf, frame->size, &used, elem, len))
            rc = s_fail (eid, "zh_batch_put: no room");
        n++;
    }
    if (rc == 0 && more != 0) rc = s_fail (id, "the walk failed: %s", err.reason);
    if (rc == 0 && n != json_array_size (elements))
        rc = s_fail (id, "%zu elements, the vector has %zu", n, json_array_size (elements));
    if (rc == 0 && (used != frame->size || memcmp (buf, frame->data, used) != 0))
        rc = s_fail (id, "zh_batch_put of the elements does not give back the frame");
    free (buf);
    return rc;
}

//  A refused BATCH: the walk returns elements_before elements, then the
//  container's fault.
static int
s_check_batch_prefix (const char *id, const zh_frame_view_t *frame, json_int_t before)
{
    zh_batch_iter_t it;
    zh_error_t err;
    json_int_t n = 0;
    int more = -1;
    if (zh_batch_begin (&it, frame->data, frame->size, &err) == 0) {
        const uint8_t *elem;
        size_t len;
        while ((more = zh_batch_next (&it, &elem, &len, &err)) == 1)
            n++;
    }
    if (more != -1) return s_fail (id, "the container walks cleanly; the vector says it is bad");
    return n == before ? 0
                       : s_fail (id, "%lld elements stand before the fault, the vector says %lld",
                                 (long long)n, (long long)before);
}

static int
s_check_frame_vector (const json_t *vector)
{
    const char *id = json_string_value (json_object_get (vector, "id"));
    if (!id) return s_fail ("(no id)", "a vector without an id");
    if (!json_is_string (json_object_get (vector, "description")))
        return s_fail (id, "no description");
    json_t *hexes = json_object_get (vector, "frames");
    size_t count = json_array_size (hexes);
    if (count == 0) return s_fail (id, "no frames");
    zh_frame_view_t *frames = calloc (count, sizeof *frames);
    uint8_t **owned = calloc (count, sizeof *owned);
    assert_true (frames && owned);
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        size_t size;
        if (s_unhex (json_string_value (json_array_get (hexes, i)), &owned[i], &size))
            rc = s_fail (id, "frame %zu is not hex", i);
        else
            frames[i] = (zh_frame_view_t){owned[i], size};
    }
    json_t *expect = json_object_get (vector, "decode");
    json_t *error = json_object_get (vector, "error");
    if (rc == 0 && !expect == !error) rc = s_fail (id, "needs exactly one of decode and error");

    zh_msg_t msg;
    zh_error_t err;
    memset (&err, 0, sizeof err);
    int decoded = rc == 0 ? zh_msg_decode (&msg, frames, count, &err) : -1;
    if (rc == 0 && error) {
        int code = (int)json_integer_value (json_object_get (error, "code"));
        const char *name = json_string_value (json_object_get (error, "name"));
        if (!name || strcmp (name, zh_error_code_name (code)) != 0)
            rc = s_fail (id, "error name %s is not the name of %d (%s)", name ? name : "(none)",
                         code, zh_error_code_name (code));
        else if (code == ZH_ERR_TOO_LARGE) {
            //  The codec accepts it; the broker's size check refuses it.
            json_int_t limit = json_integer_value (
                json_object_get (json_object_get (vector, "limits"), "max_msg_bytes"));
            if (decoded != 0)
                rc = s_fail (id, "want a decodable message over the limit, got %d: %s", err.code,
                             err.reason);
            else if (limit <= 0 || msg.total_size <= (size_t)limit)
                rc = s_fail (id, "%zu bytes is not over max_msg_bytes %lld", msg.total_size,
                             (long long)limit);
            else if (zh_command_has_head (msg.hdr.command))
                rc = s_fail (id, "a SEND over the limit is TOO_LARGE (a RETURN), not ERROR 413");
        } else if (decoded == 0)
            rc = s_fail (id, "decoded, but the vector expects ERROR %d", code);
        else if (err.code != code)
            rc = s_fail (id, "refused with %d (%s), the vector expects %d", err.code, err.reason,
                         code);
        else if (json_object_get (error, "elements_before"))
            rc = s_check_batch_prefix (
                id, &frames[0], json_integer_value (json_object_get (error, "elements_before")));
    } else if (rc == 0) {
        const char *name = json_string_value (json_object_get (expect, "name"));
        if (decoded != 0)
            rc = s_fail (id, "refused with %d: %s", err.code, err.reason);
        else if (msg.hdr.command != json_integer_value (json_object_get (expect, "command")) ||
                 !name || strcmp (name, zh_command_name (msg.hdr.command)) != 0)
            rc = s_fail (id, "command 0x%02x, not the vector's", msg.hdr.command);
        else if (msg.hdr.ttl != json_integer_value (json_object_get (expect, "ttl")) ||
                 msg.hdr.flags != json_integer_value (json_object_get (expect, "flags")))
            rc = s_fail (id, "ttl %u flags %u differ from the vector", msg.hdr.ttl, msg.hdr.flags);
        else if (msg.hdr.command == ZH_BATCH)
            rc = s_check_batch (id, &frames[0], expect);
        else if (zh_command_has_head (msg.hdr.command))
            rc = s_check_head (id, &msg, frames, count, expect);
        else
            rc = s_check_control (id, &msg, frames, count, vector, expect);
    }
    for (size_t i = 0; i < count; i++)
        free (owned[i]);
    free (owned);
    free (frames);
    return rc;
}

static void
test_frames (void **state)
{
    json_t *doc = s_load ("frames.json", "zhost-test-vectors/frames", "vectors");
    json_t *vectors = json_object_get (doc, "vectors");
    size_t failed = 0, index;
    json_t *vector;
    json_array_foreach (vectors, index, vector) failed += s_check_frame_vector (vector) != 0;
    print_message ("frames.json: %zu vectors, %zu failed\n", json_array_size (vectors), failed);
    json_decref (doc);
    assert_int_equal (failed, 0);
}

//  ---------------------------------------------------------------------
//  Addresses

static int
s_check_id (const char *id, const char *which, const zh_id_t *got, const json_t *expect)
{
    if (!s_str_eq (json_object_get (expect, "text"), got->text.ptr, got->text.len) ||
        !s_str_eq (json_object_get (expect, "label"), got->label.ptr, got->label.len))
        return s_fail (id, "%s id differs", which);
    json_t *uid = json_object_get (expect, "uid");
    if (json_is_null (uid) ? got->has_uid : !got->has_uid)
        return s_fail (id, "%s id: has_uid differs", which);
    if (got->has_uid) {
        char text[24];
        snprintf (text, sizeof text, "%" PRIu64, got->uid);
        if (!json_is_string (uid) || strcmp (json_string_value (uid), text) != 0)
            return s_fail (id, "%s uid %s differs", which, text);
    }
    return 0;
}

static int
s_check_address (const json_t *vector, size_t index)
{
    json_t *text = json_object_get (vector, "text");
    char label[96];
    snprintf (label, sizeof label, "addresses[%zu] %.60s", index,
              text ? json_string_value (text)
                   : json_string_value (json_object_get (vector, "hex")));
    const char *id = label;
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (json_is_string (text)) {
        len = json_string_length (text);
        bytes = malloc (len + 1);
        assert_non_null (bytes);
        memcpy (bytes, json_string_value (text), len);
    } else if (s_unhex (json_string_value (json_object_get (vector, "hex")), &bytes, &len))
        return s_fail (id, "neither text nor hex");

    zh_addr_t addr;
    zh_error_t err;
    int parsed = zh_addr_parse (&addr, (const char *)bytes, len, &err);
    int rc = 0;
    json_t *error = json_object_get (vector, "error");
    if (error) {
        const char *category = json_string_value (json_object_get (error, "category"));
        size_t clen = category ? strlen (category) : 0;
        if (parsed == 0)
            rc = s_fail (id, "parsed, but the vector expects a refusal");
        else if (err.code != json_integer_value (json_object_get (error, "code")))
            rc = s_fail (id, "refused with %d", err.code);
        else if (!category || strncmp (err.reason, category, clen) != 0 || err.reason[clen] != ':')
            rc = s_fail (id, "refused for \"%s\", the vector says %s", err.reason,
                         category ? category : "(none)");
    } else if (parsed != 0)
        rc = s_fail (id, "refused: %s", err.reason);
    else {
        static const char *kinds[] = {"", "proc", "actor", "port"};
        const char *kind = json_string_value (json_object_get (vector, "kind"));
        json_t *actor = json_object_get (vector, "actor");
        json_t *port = json_object_get (vector, "port");
        char port_text[24];
        snprintf (port_text, sizeof port_text, "%" PRIu64, addr.port);
        char canonical[ZH_ADDR_MAX + 1];
        int n = zh_addr_format (&addr, canonical, sizeof canonical);
        if (!kind || strcmp (kind, kinds[addr.kind]) != 0)
            rc = s_fail (id, "kind %s, not the vector's", kinds[addr.kind]);
        else if (s_check_id (id, "proc", &addr.proc, json_object_get (vector, "proc")))
            rc = -1;
        else if (addr.kind == ZH_ADDR_PROC ? !json_is_null (actor)
                                           : s_check_id (id, "actor", &addr.actor, actor) != 0)
            rc = s_fail (id, "actor differs");
        else if (addr.kind == ZH_ADDR_PORT
                     ? !json_is_string (port) || strcmp (json_string_value (port), port_text) != 0
                     : !json_is_null (port))
            rc = s_fail (id, "port differs");
        else if (!s_str_eq (json_object_get (vector, "endpoint"), addr.endpoint.ptr,
                            addr.endpoint.len))
            rc = s_fail (id, "endpoint differs");
        else if (n != (int)len || memcmp (canonical, bytes, len) != 0)
            rc = s_fail (id, "zh_addr_format does not give back the text");
    }
    free (bytes);
    return rc;
}

static int
s_check_uid58 (const json_t *vector, size_t index)
{
    const char *text = json_string_value (json_object_get (vector, "text"));
    char id[64];
    snprintf (id, sizeof id, "uid58[%zu] \"%s\"", index, text ? text : "");
    if (!text) return s_fail (id, "no text");
    uint64_t value = 0;
    zh_error_t err;
    int rc = zh_uid58_decode (text, strlen (text), &value, &err);
    if (json_object_get (vector, "error")) {
        if (rc == 0) return s_fail (id, "decoded, but the vector expects a refusal");
        return err.code == ZH_ERR_MALFORMED ? 0 : s_fail (id, "refused with %d", err.code);
    }
    const char *want = json_string_value (json_object_get (vector, "value"));
    char got[24], buf[ZH_UID58_MAX + 1];
    snprintf (got, sizeof got, "%" PRIu64, value);
    if (rc != 0) return s_fail (id, "refused: %s", err.reason);
    if (!want || strcmp (want, got) != 0) return s_fail (id, "decodes to %s", got);
    size_t n = zh_uid58_encode (value, buf);
    if (n != strlen (text) || memcmp (buf, text, n) != 0)
        return s_fail (id, "%s encodes to %.*s", got, (int)n, buf);
    return 0;
}

static void
test_addresses (void **state)
{
    json_t *doc = s_load ("addresses.json", "zhost-test-vectors/addresses", "addresses");
    json_t *list = json_object_get (doc, "addresses");
    size_t failed = 0, index;
    json_t *vector;
    json_array_foreach (list, index, vector) failed += s_check_address (vector, index) != 0;
    print_message ("addresses.json: %zu addresses, %zu failed\n", json_array_size (list), failed);
    json_decref (doc);
    assert_int_equal (failed, 0);
}

static void
test_uid58 (void **state)
{
    json_t *doc = s_load ("addresses.json", "zhost-test-vectors/addresses", "uid58");
    json_t *list = json_object_get (doc, "uid58");
    size_t failed = 0, index;
    json_t *vector;
    json_array_foreach (list, index, vector) failed += s_check_uid58 (vector, index) != 0;
    print_message ("addresses.json: %zu uid58 vectors, %zu failed\n", json_array_size (list),
                   failed);
    json_decref (doc);
    assert_int_equal (failed, 0);
}

int
main (int argc, char **argv)
{
    if (argc > 1) s_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_frames),
        cmocka_unit_test (test_addresses),
        cmocka_unit_test (test_uid58),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
