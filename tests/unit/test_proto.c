/*  test_proto.c — scenarios for the ZHP/1 frame codec (common/zh_proto.c).

    Where it sits: the codec is the broker's first line of defence, so the
    tests walk it the way a message does: a well-formed message of every
    command survives encode → zh_msg_decode unchanged; every class of
    malformed message is refused with the ERROR code of docs/protocol.md §3/§7
    (each test asserts that code and what the reason names); a seeded
    random generator then round-trips thousands of messages and mutates
    them, which must only ever decode or be refused 400/404/426.

    `test_proto --write-corpus DIR` writes the seed corpus of
    tests/fuzz/fuzz_frame.c (one frame count byte, then u16 length +
    bytes per frame) instead of running the tests.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "zh_pack.h"
#include "zh_proto.h"

#define DEST "echo.worker:7@tcp://10.0.0.5:7100"
#define SRC  "client.remote<3xZ9kLmN>@tcp://10.0.0.5:7100"

//  ---------------------------------------------------------------------
//  Building messages

//  A message under construction: up to 8 owned frames.
typedef struct {
    uint8_t *data[8];
    size_t size[8];
    zh_frame_view_t views[8];
    size_t count;
} msg_t;

static void
msg_add (msg_t *msg, const void *data, size_t size)
{
    assert_true (msg->count < 8);
    uint8_t *copy = malloc (size ? size : 1);
    assert_non_null (copy);
    if (size) memcpy (copy, data, size);
    msg->data[msg->count] = copy;
    msg->size[msg->count] = size;
    msg->views[msg->count] = (zh_frame_view_t){copy, size};
    msg->count++;
}

static void
msg_free (msg_t *msg)
{
    for (size_t i = 0; i < msg->count; i++)
        free (msg->data[i]);
    memset (msg, 0, sizeof *msg);
}

//  A control command: header frame, then the body frame if body is set.
static void
msg_control (msg_t *msg, uint8_t command, const void *body, size_t body_size)
{
    uint8_t header[ZH_HEADER_SIZE];
    zh_header_write (header, command, 0, 0);
    memset (msg, 0, sizeof *msg);
    msg_add (msg, header, sizeof header);
    if (body) msg_add (msg, body, body_size);
}

//  A control command whose body zh_body_encode writes.
static void
msg_control_body (msg_t *msg, const zh_body_t *body)
{
    size_t size;
    uint8_t *bytes = zh_body_encode (body, &size);
    assert_non_null (bytes);
    msg_control (msg, body->command, bytes, size);
    free (bytes);
}

//  A SEND or RETURN head frame (no payload frames yet).
static void
msg_head (msg_t *msg, uint8_t command, uint8_t flags, const char *dest, const char *src,
          const uint8_t *meta, size_t meta_len, const void *inline_part, size_t inline_len)
{
    size_t cap = zh_head_size (strlen (dest), strlen (src), meta_len, inline_len);
    uint8_t *buf = malloc (cap);
    assert_non_null (buf);
    long n = zh_head_write (buf, cap, command, ZH_TTL_DEFAULT, flags, dest, strlen (dest), src,
                            strlen (src), meta, meta_len, inline_part, inline_len);
    assert_true (n > 0);
    memset (msg, 0, sizeof *msg);
    msg_add (msg, buf, (size_t)n);
    free (buf);
}

//  A raw head: any lengths, for the malformed cases.
static size_t
raw_head (uint8_t *buf, uint8_t flags, uint16_t d, const char *dest, uint16_t s, const char *src,
          uint32_t m, const void *meta, size_t meta_bytes)
{
    size_t off = 0;
    zh_header_write (buf, ZH_SEND, 64, flags);
    off = ZH_HEADER_SIZE;
    buf[off++] = (uint8_t)(d >> 8), buf[off++] = (uint8_t)d;
    memcpy (buf + off, dest, strlen (dest)), off += strlen (dest);
    buf[off++] = (uint8_t)(s >> 8), buf[off++] = (uint8_t)s;
    memcpy (buf + off, src, strlen (src)), off += strlen (src);
    buf[off++] = (uint8_t)(m >> 24), buf[off++] = (uint8_t)(m >> 16);
    buf[off++] = (uint8_t)(m >> 8), buf[off++] = (uint8_t)m;
    if (meta_bytes) memcpy (buf + off, meta, meta_bytes), off += meta_bytes;
    return off;
}

//  msgpack helpers for bodies and meta written by hand.
typedef struct {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
} packer_t;

static void
pk_init (packer_t *p)
{
    msgpack_sbuffer_init (&p->sbuf);
    msgpack_packer_init (&p->pk, &p->sbuf, msgpack_sbuffer_write);
}

//  ---------------------------------------------------------------------
//  Asserting

static zh_msg_t s_msg;
static zh_error_t s_err;

static void
expect_ok (const msg_t *msg)
{
    zh_error_clear (&s_err);
    int rc = zh_msg_decode (&s_msg, msg->views, msg->count, &s_err);
    if (rc != 0) print_error ("refused: %d %s\n", s_err.code, s_err.reason);
    assert_int_equal (rc, 0);
}

//  Refused with `code`, and the reason names `mention`.
static void
expect_refused_views (const zh_frame_view_t *views, size_t count, int code, const char *mention)
{
    zh_error_clear (&s_err);
    assert_int_equal (zh_msg_decode (&s_msg, views, count, &s_err), -1);
    if (s_err.code != code || !strstr (s_err.reason, mention))
        print_error ("got %d \"%s\", want %d mentioning \"%s\"\n", s_err.code, s_err.reason, code,
                     mention);
    assert_int_equal (s_err.code, code);
    assert_non_null (strstr (s_err.reason, mention));
}

static void
expect_refused (const msg_t *msg, int code, const char *mention)
{
    expect_refused_views (msg->views, msg->count, code, mention);
}

static void
expect_frame_refused (const void *frame, size_t size, int code, const char *mention)
{
    zh_frame_view_t view = {frame, size};
    expect_refused_views (&view, 1, code, mention);
}

static void
assert_span (zh_span_t span, const char *s)
{
    assert_int_equal (span.len, strlen (s));
    assert_memory_equal (span.ptr, s, span.len);
}

static bool
span_same (zh_span_t a, zh_span_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp (a.ptr, b.ptr, a.len) == 0);
}

//  Two bodies hold the same fields with the same values.
static void
assert_body_equal (const zh_body_t *a, const zh_body_t *b)
{
    assert_int_equal (a->command, b->command);
    assert_int_equal (a->present, b->present);
    uint32_t p = a->present;
    const zh_span_t *spans_a[] = {&a->label, &a->lang,     &a->proc,   &a->host,
                                  &a->agent, &a->endpoint, &a->reason, &a->dest};
    const zh_span_t *spans_b[] = {&b->label, &b->lang,     &b->proc,   &b->host,
                                  &b->agent, &b->endpoint, &b->reason, &b->dest};
    uint32_t span_bits[] = {ZH_F_LABEL, ZH_F_LANG,     ZH_F_PROC,   ZH_F_HOST,
                            ZH_F_AGENT, ZH_F_ENDPOINT, ZH_F_REASON, ZH_F_DEST};
    for (size_t i = 0; i < 8; i++)
        if (p & span_bits[i]) assert_true (span_same (*spans_a[i], *spans_b[i]));
    if (p & ZH_F_PID) assert_true (a->pid == b->pid);
    if (p & ZH_F_HEARTBEAT_MS) assert_true (a->heartbeat_ms == b->heartbeat_ms);
    if (p & ZH_F_MAX_MSG_BYTES) assert_true (a->max_msg_bytes == b->max_msg_bytes);
    if (p & ZH_F_HWM) assert_true (a->hwm == b->hwm);
    if (p & ZH_F_INCARNATION) assert_true (a->incarnation == b->incarnation);
    if (p & ZH_F_CODE) assert_true (a->code == b->code);
    if (p & ZH_F_SEQ) assert_true (a->seq == b->seq);
    if (p & ZH_F_TIMEOUT_MS) assert_true (a->timeout_ms == b->timeout_ms);
}

//  Encode body as a control message, decode it into s_msg, compare. The
//  message stays alive (in s_kept) until the next round trip, so the
//  test can look at the spans s_msg.body holds.
static msg_t s_kept;

static void
round_trip_body (const zh_body_t *body)
{
    msg_free (&s_kept);
    msg_control_body (&s_kept, body);
    expect_ok (&s_kept);
    assert_int_equal (s_msg.hdr.command, body->command);
    assert_int_equal (s_msg.total_size, ZH_HEADER_SIZE + s_kept.size[1]);
    assert_body_equal (&s_msg.body, body);
}

//  ---------------------------------------------------------------------
//  Round trips: every command

static void
test_attach_round_trips_with_and_without_optional_fields (void **state)
{
    zh_body_t body = {.command = ZH_ATTACH};
    round_trip_body (&body); //  an empty ATTACH: a client without label

    body.present = ZH_F_LABEL | ZH_F_PID | ZH_F_LANG;
    body.label = zh_span_of ("mylabel");
    body.pid = 4242;
    body.lang = zh_span_of ("python");
    round_trip_body (&body);
    assert_span (s_msg.body.label, "mylabel");
    assert_span (s_msg.body.lang, "python");

    body.present = ZH_F_PID; //  pid only, and a negative one is still an int
    body.pid = -1;
    round_trip_body (&body);

    //  ATTACH with no body frame at all is the empty map
    msg_t msg;
    msg_control (&msg, ZH_ATTACH, NULL, 0);
    expect_ok (&msg);
    assert_int_equal (s_msg.body.present, 0);
    msg_free (&msg);
}

static void
test_bootstrap_round_trips_every_field (void **state)
{
    zh_body_t body = {.command = ZH_BOOTSTRAP,
                      .present = ZH_F_PROC | ZH_F_HOST | ZH_F_AGENT | ZH_F_HEARTBEAT_MS |
                                 ZH_F_MAX_MSG_BYTES | ZH_F_HWM | ZH_F_INCARNATION,
                      .proc = zh_span_of ("remote<3xZ9kLmN>@tcp://host-a:7100"),
                      .host = zh_span_of ("tcp://host-a:7100"),
                      .agent = zh_span_of ("host_agent.service@tcp://host-a:7100"),
                      .heartbeat_ms = 1000,
                      .max_msg_bytes = 16u << 20,
                      .hwm = 1000,
                      .incarnation = UINT64_MAX};
    round_trip_body (&body);
    assert_true (s_msg.body.incarnation == UINT64_MAX);
    assert_span (s_msg.body.agent, "host_agent.service@tcp://host-a:7100");
}

static void
test_ready_round_trips_proc_and_pid (void **state)
{
    zh_body_t body = {.command = ZH_READY,
                      .present = ZH_F_PROC | ZH_F_PID,
                      .proc = zh_span_of ("worker"),
                      .pid = 31337};
    round_trip_body (&body);
    body.present = ZH_F_PROC; //  pid is optional
    round_trip_body (&body);
}

static void
test_hello_and_welcome_round_trip (void **state)
{
    zh_body_t body = {.command = ZH_HELLO,
                      .present = ZH_F_ENDPOINT | ZH_F_INCARNATION,
                      .endpoint = zh_span_of ("tcp://host-b:7100"),
                      .incarnation = 0x0123456789abcdefULL};
    round_trip_body (&body);
    body.command = ZH_WELCOME;
    round_trip_body (&body);
}

static void
test_ping_pong_with_no_body_empty_frame_and_empty_map (void **state)
{
    uint8_t empty_map = 0x80;
    for (int command = ZH_PING; command <= ZH_PONG; command++) {
        msg_t msg;
        msg_control (&msg, (uint8_t)command, NULL, 0);
        expect_ok (&msg);
        assert_int_equal (s_msg.hdr.command, command);
        assert_int_equal (s_msg.total_size, ZH_HEADER_SIZE);
        msg_free (&msg);
        msg_control (&msg, (uint8_t)command, "", 0); //  zero-length body
        expect_ok (&msg);
        msg_free (&msg);
        msg_control (&msg, (uint8_t)command, &empty_map, 1);
        expect_ok (&msg);
        msg_free (&msg);
        zh_body_t body = {.command = (uint8_t)command};
        round_trip_body (&body);
    }
}

static void
test_bye_round_trips_reason (void **state)
{
    zh_body_t body = {
        .command = ZH_BYE, .present = ZH_F_REASON, .reason = zh_span_of ("heartbeat expired")};
    round_trip_body (&body);
    assert_span (s_msg.body.reason, "heartbeat expired");
}

static void
test_error_round_trips_code_reason_dest_and_seq (void **state)
{
    zh_body_t body = {.command = ZH_ERROR,
                      .present = ZH_F_CODE | ZH_F_REASON | ZH_F_DEST | ZH_F_SEQ,
                      .code = 403,
                      .reason = zh_span_of ("src is not yours"),
                      .dest = zh_span_of (DEST),
                      .seq = -7};
    round_trip_body (&body);
    body.present = ZH_F_CODE | ZH_F_REASON; //  a control command refused: no dest
    round_trip_body (&body);
}

static void
test_stop_round_trips_reason_and_timeout (void **state)
{
    zh_body_t body = {.command = ZH_STOP,
                      .present = ZH_F_REASON | ZH_F_TIMEOUT_MS,
                      .reason = zh_span_of ("stop op"),
                      .timeout_ms = 5000};
    round_trip_body (&body);
}

//  A SEND head frame with the given meta/inline/flags, plus n frames.
static void
check_send (uint8_t flags, const void *inline_part, size_t inline_len, size_t frames)
{
    uint8_t meta[] = {0x81, 0xa3, 's', 'e', 'q', 0x2a}; //  {"seq": 42}
    msg_t msg;
    msg_head (&msg, ZH_SEND, flags, DEST, SRC, meta, sizeof meta, inline_part, inline_len);
    size_t total = msg.size[0];
    for (size_t i = 0; i < frames; i++) {
        char part[32];
        int n = snprintf (part, sizeof part, "frame %zu", i);
        msg_add (&msg, part, (size_t)n);
        total += (size_t)n;
    }
    expect_ok (&msg);
    const zh_head_t *head = &s_msg.head;
    assert_int_equal (head->hdr.command, ZH_SEND);
    assert_int_equal (head->hdr.ttl, ZH_TTL_DEFAULT);
    assert_int_equal (head->hdr.flags, flags);
    assert_int_equal (head->ttl_offset, 4);
    assert_int_equal (msg.data[0][head->ttl_offset], ZH_TTL_DEFAULT);
    assert_int_equal (head->dest_len, strlen (DEST));
    assert_memory_equal (head->dest, DEST, head->dest_len);
    assert_int_equal (head->src_len, strlen (SRC));
    assert_memory_equal (head->src, SRC, head->src_len);
    assert_int_equal (head->meta_len, sizeof meta);
    assert_memory_equal (head->meta, meta, sizeof meta);
    assert_int_equal (s_msg.payload_frames, frames);
    assert_int_equal (s_msg.total_size, total);
    if (flags & ZH_FLAG_INLINE) {
        assert_int_equal (head->inline_len, inline_len);
        if (inline_len) assert_memory_equal (head->inline_part, inline_part, inline_len);
    } else
        assert_int_equal (head->inline_len, 0);
    int64_t seq = 0;
    assert_int_equal (zh_meta_find_seq (head->meta, head->meta_len, &seq), 0);
    assert_true (seq == 42);
    msg_free (&msg);
}

static void
test_send_with_one_inline_part (void **state)
{
    check_send (ZH_FLAG_INLINE | ZH_FLAG_RETURN_UNDELIVERABLE, "hello", 5, 0);
}

static void
test_send_with_payload_frames_only (void **state)
{
    check_send (0, NULL, 0, 3);
}

static void
test_send_with_inline_part_and_frames (void **state)
{
    check_send (ZH_FLAG_INLINE, "first", 5, 2);
}

static void
test_send_with_inline_flag_and_nothing_after_meta_is_one_empty_part (void **state)
{
    check_send (ZH_FLAG_INLINE, NULL, 0, 0);
    assert_non_null (s_msg.head.inline_part);
}

static void
test_send_with_empty_meta_has_null_meta (void **state)
{
    msg_t msg;
    msg_head (&msg, ZH_SEND, 0, DEST, SRC, NULL, 0, NULL, 0);
    expect_ok (&msg);
    assert_null (s_msg.head.meta);
    assert_int_equal (s_msg.head.meta_len, 0);
    int64_t seq;
    assert_int_equal (zh_meta_find_seq (NULL, 0, &seq), -1);
    msg_free (&msg);
}

//  ---------------------------------------------------------------------
//  RETURN and its meta

static void
test_return_round_trips_with_meta_and_original_payload (void **state)
{
    uint8_t orig_meta[] = {0x82, 0xa3, 's', 'e', 'q', 0xcd, 0x01, 0x00, 0xa2, 't', 's', 0x05};
    size_t meta_len;
    uint8_t *meta =
        zh_return_meta_encode (NULL, 0, "NO_SUCH_PROC", "no proc nobody", "tcp://10.0.0.5:7100",
                               DEST, strlen (DEST), orig_meta, sizeof orig_meta, &meta_len);
    assert_non_null (meta);
    msg_t msg;
    const char *service = "service@tcp://10.0.0.5:7100";
    msg_head (&msg, ZH_RETURN, ZH_FLAG_INLINE, SRC, service, meta, meta_len, "payload", 7);
    msg_add (&msg, "frame", 5);
    expect_ok (&msg);
    assert_int_equal (s_msg.hdr.command, ZH_RETURN);
    assert_int_equal (s_msg.payload_frames, 1);
    assert_int_equal (s_msg.head.inline_len, 7);

    zh_return_meta_t rm;
    assert_int_equal (zh_return_meta_decode (&rm, s_msg.head.meta, s_msg.head.meta_len, &s_err), 0);
    assert_int_equal (rm.failure_count, 1);
    assert_span (rm.failures[0].code, "NO_SUCH_PROC");
    assert_span (rm.failures[0].reason, "no proc nobody");
    assert_span (rm.failures[0].at, "tcp://10.0.0.5:7100");
    assert_span (rm.dest, DEST);
    assert_int_equal (rm.meta_len, sizeof orig_meta);
    assert_memory_equal (rm.meta, orig_meta, sizeof orig_meta);
    int64_t seq = 0;
    assert_int_equal (zh_meta_find_seq (rm.meta, rm.meta_len, &seq), 0);
    assert_true (seq == 256);
    free (meta);
    msg_free (&msg);
}

static void
test_return_meta_keeps_prior_failures_root_first_and_meta_byte_exact (void **state)
{
    //  original meta with nesting and a float, which a re-encoder could
    //  easily change: it must come back byte for byte
    packer_t p;
    pk_init (&p);
    msgpack_pack_map (&p.pk, 3);
    zh_pack_str (&p.pk, "reply");
    zh_pack_str (&p.pk, SRC ":1");
    zh_pack_str (&p.pk, "headers");
    msgpack_pack_map (&p.pk, 1);
    zh_pack_str (&p.pk, "trace");
    msgpack_pack_array (&p.pk, 2);
    msgpack_pack_double (&p.pk, 1.5);
    msgpack_pack_nil (&p.pk);
    zh_pack_str (&p.pk, "seq");
    msgpack_pack_int64 (&p.pk, 9);

    zh_failure_t prior[2] = {
        {zh_span_of ("HOST_UNREACHABLE"), zh_span_of ("peer down"), zh_span_of ("tcp://a:1")},
        {zh_span_of ("OVERLOADED"), zh_span_of ("queue full"), zh_span_of ("tcp://b:2")},
    };
    size_t size;
    uint8_t *meta =
        zh_return_meta_encode (prior, 2, "TTL_EXPIRED", "hop limit", "tcp://c:3", DEST,
                               strlen (DEST), (const uint8_t *)p.sbuf.data, p.sbuf.size, &size);
    assert_non_null (meta);
    assert_true (zh_msgpack_is_map (meta[0]));

    zh_return_meta_t rm;
    assert_int_equal (zh_return_meta_decode (&rm, meta, size, &s_err), 0);
    assert_int_equal (rm.failure_count, 3);
    assert_span (rm.failures[0].code, "HOST_UNREACHABLE"); //  root cause first
    assert_span (rm.failures[1].code, "OVERLOADED");
    assert_span (rm.failures[2].code, "TTL_EXPIRED"); //  the new one last
    assert_span (rm.failures[2].reason, "hop limit");
    assert_span (rm.failures[2].at, "tcp://c:3");
    assert_int_equal (rm.meta_len, p.sbuf.size);
    assert_memory_equal (rm.meta, p.sbuf.data, p.sbuf.size);

    //  bouncing the decoded failures again keeps them all, in order
    size_t size2;
    uint8_t *meta2 =
        zh_return_meta_encode (rm.failures, rm.failure_count, "PROC_GONE", "gone", "x@tcp://d:4",
                               rm.dest.ptr, rm.dest.len, rm.meta, rm.meta_len, &size2);
    zh_return_meta_t rm2;
    assert_int_equal (zh_return_meta_decode (&rm2, meta2, size2, &s_err), 0);
    assert_int_equal (rm2.failure_count, 4);
    assert_span (rm2.failures[0].code, "HOST_UNREACHABLE");
    assert_span (rm2.failures[3].code, "PROC_GONE");
    assert_memory_equal (rm2.meta, p.sbuf.data, p.sbuf.size);
    free (meta2);
    free (meta);
    msgpack_sbuffer_destroy (&p.sbuf);
}

static void
test_return_meta_of_empty_or_broken_original_meta_is_empty_map (void **state)
{
    uint8_t broken[] = {0x82, 0xa1, 'a'}; //  a map marker, then truncated
    const uint8_t *origs[] = {NULL, broken, broken};
    size_t lens[] = {0, sizeof broken, 0};
    for (int i = 0; i < 3; i++) {
        size_t size;
        uint8_t *meta = zh_return_meta_encode (NULL, 0, "PROC_GONE", "died", "tcp://h:1", DEST,
                                               strlen (DEST), origs[i], lens[i], &size);
        zh_return_meta_t rm;
        assert_int_equal (zh_return_meta_decode (&rm, meta, size, &s_err), 0);
        assert_int_equal (rm.meta_len, 1);
        assert_int_equal (rm.meta[0], 0x80);
        free (meta);
    }
}

static void
test_return_meta_with_more_than_max_failures_keeps_the_first (void **state)
{
    zh_failure_t prior[ZH_FAILURES_MAX + 3];
    char codes[ZH_FAILURES_MAX + 3][16];
    for (int i = 0; i < ZH_FAILURES_MAX + 3; i++) {
        snprintf (codes[i], sizeof codes[i], "C%d", i);
        prior[i] = (zh_failure_t){zh_span_of (codes[i]), zh_span_of ("r"), zh_span_of ("a")};
    }
    size_t size;
    uint8_t *meta = zh_return_meta_encode (prior, ZH_FAILURES_MAX + 3, "LAST", "r", "a", DEST,
                                           strlen (DEST), NULL, 0, &size);
    zh_return_meta_t rm;
    assert_int_equal (zh_return_meta_decode (&rm, meta, size, &s_err), 0);
    assert_int_equal (rm.failure_count, ZH_FAILURES_MAX);
    assert_span (rm.failures[0].code, "C0");
    assert_span (rm.failures[ZH_FAILURES_MAX - 1].code, "C15");
    free (meta);
}

//  Pack a RETURN meta map by hand with one part wrong.
typedef enum {
    RM_NOT_MAP,
    RM_NO_DEST,
    RM_NO_META,
    RM_FAILURES_NOT_ARRAY,
    RM_NO_FAILURES,
    RM_FAILURE_NO_AT,
    RM_FAILURE_CODE_INT,
    RM_META_NOT_MAP,
    RM_TRAILING,
    RM_NON_STRING_KEY
} rm_break_t;

static void
pack_broken_return_meta (packer_t *p, rm_break_t brk)
{
    pk_init (p);
    if (brk == RM_NOT_MAP) {
        msgpack_pack_array (&p->pk, 0);
        return;
    }
    msgpack_pack_map (&p->pk, (brk == RM_NO_DEST || brk == RM_NO_META) ? 2 : 3);
    zh_pack_str (&p->pk, "failures");
    if (brk == RM_FAILURES_NOT_ARRAY)
        zh_pack_str (&p->pk, "NO_SUCH_PROC");
    else if (brk == RM_NO_FAILURES)
        msgpack_pack_array (&p->pk, 0);
    else {
        msgpack_pack_array (&p->pk, 1);
        msgpack_pack_map (&p->pk, brk == RM_FAILURE_NO_AT ? 2 : 3);
        zh_pack_str (&p->pk, "code");
        if (brk == RM_FAILURE_CODE_INT)
            msgpack_pack_int (&p->pk, 1);
        else
            zh_pack_str (&p->pk, "NO_SUCH_PROC");
        zh_pack_str (&p->pk, "reason");
        zh_pack_str (&p->pk, "none");
        if (brk != RM_FAILURE_NO_AT) {
            zh_pack_str (&p->pk, "at");
            zh_pack_str (&p->pk, "tcp://h:1");
        }
    }
    if (brk != RM_NO_DEST) {
        if (brk == RM_NON_STRING_KEY)
            msgpack_pack_int (&p->pk, 7);
        else
            zh_pack_str (&p->pk, "dest");
        zh_pack_str (&p->pk, DEST);
    }
    if (brk != RM_NO_META) {
        zh_pack_str (&p->pk, "meta");
        if (brk == RM_META_NOT_MAP)
            msgpack_pack_array (&p->pk, 0);
        else
            msgpack_pack_map (&p->pk, 0);
    }
    if (brk == RM_TRAILING) msgpack_pack_nil (&p->pk);
}

static void
test_return_meta_of_the_wrong_shape_is_400 (void **state)
{
    struct {
        rm_break_t brk;
        const char *mention;
    } cases[] = {
        {RM_NOT_MAP, "map"},          {RM_NO_DEST, "needs"},
        {RM_NO_META, "needs"},        {RM_FAILURES_NOT_ARRAY, "not an array"},
        {RM_NO_FAILURES, "empty"},    {RM_FAILURE_NO_AT, "code, reason and at"},
        {RM_FAILURE_CODE_INT, "bad"}, {RM_META_NOT_MAP, "meta"},
        {RM_TRAILING, "one msgpack"}, {RM_NON_STRING_KEY, "non-string key"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        packer_t p;
        pack_broken_return_meta (&p, cases[i].brk);
        zh_return_meta_t rm;
        zh_error_clear (&s_err);
        assert_int_equal (
            zh_return_meta_decode (&rm, (const uint8_t *)p.sbuf.data, p.sbuf.size, &s_err), -1);
        if (!strstr (s_err.reason, cases[i].mention))
            print_error ("case %zu: \"%s\"\n", i, s_err.reason);
        assert_int_equal (s_err.code, ZH_ERR_MALFORMED);
        assert_non_null (strstr (s_err.reason, cases[i].mention));
        msgpack_sbuffer_destroy (&p.sbuf);
    }
    zh_return_meta_t rm;
    assert_int_equal (zh_return_meta_decode (&rm, NULL, 0, &s_err), -1);
    assert_int_equal (s_err.code, ZH_ERR_MALFORMED);
}

static void
test_meta_lookups_read_only_the_top_level (void **state)
{
    packer_t p;
    pk_init (&p);
    msgpack_pack_map (&p.pk, 4);
    msgpack_pack_int (&p.pk, 1); //  a non-string key is skipped
    zh_pack_str (&p.pk, "x");
    zh_pack_str (&p.pk, "headers"); //  a nested seq is not the seq
    msgpack_pack_map (&p.pk, 1);
    zh_pack_str (&p.pk, "seq");
    msgpack_pack_int (&p.pk, 1);
    zh_pack_str (&p.pk, "reply");
    zh_pack_str (&p.pk, SRC);
    zh_pack_str (&p.pk, "seq");
    msgpack_pack_int64 (&p.pk, INT64_MIN);
    const uint8_t *meta = (const uint8_t *)p.sbuf.data;

    int64_t seq = 0;
    zh_span_t reply;
    assert_int_equal (zh_meta_find_seq (meta, p.sbuf.size, &seq), 0);
    assert_true (seq == INT64_MIN);
    assert_int_equal (zh_meta_find_reply (meta, p.sbuf.size, &reply), 0);
    assert_span (reply, SRC);

    uint8_t string_seq[] = {0x81, 0xa3, 's', 'e', 'q', 0xa1, '1'};
    assert_int_equal (zh_meta_find_seq (string_seq, sizeof string_seq, &seq), -1);
    uint8_t big_seq[] = {0x81, 0xa3, 's', 'e', 'q', 0xcf, 0xff, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal (zh_meta_find_seq (big_seq, sizeof big_seq, &seq), -1);
    uint8_t array[] = {0x91, 0x01};
    assert_int_equal (zh_meta_find_seq (array, sizeof array, &seq), -1);
    assert_int_equal (zh_meta_find_reply (array, sizeof array, &reply), -1);
    uint8_t truncated[] = {0x82, 0xa1, 'x', 0xcd};
    assert_int_equal (zh_meta_find_seq (truncated, sizeof truncated, &seq), -1);
    msgpack_sbuffer_destroy (&p.sbuf);
}

static void
test_command_names_and_span_helper (void **state)
{
    assert_string_equal (zh_command_name (ZH_ATTACH), "ATTACH");
    assert_string_equal (zh_command_name (ZH_RETURN), "RETURN");
    assert_string_equal (zh_command_name (ZH_STOP), "STOP");
    assert_null (zh_command_name (0x00));
    assert_string_equal (zh_command_name (0x12), "BATCH");
    assert_null (zh_command_name (0x13));
    assert_null (zh_command_name (0x100 + ZH_SEND));
    zh_span_t span = zh_span_of ("abc");
    assert_int_equal (span.len, 3);
    assert_int_equal (zh_span_of (NULL).len, 0);
}

static void
test_head_write_refuses_what_the_decoder_would_refuse (void **state)
{
    uint8_t buf[4096];
    char long_dest[ZH_FIELD_MAX + 2];
    memset (long_dest, 'a', sizeof long_dest);
    uint8_t not_map[] = {0x90};
    uint8_t map[] = {0x80};
    assert_true (
        zh_head_write (buf, sizeof buf, ZH_SEND, 64, 0, DEST, 0, SRC, 3, NULL, 0, NULL, 0) == -1);
    assert_true (zh_head_write (buf, sizeof buf, ZH_SEND, 64, 0, long_dest, ZH_FIELD_MAX + 1, SRC,
                                3, NULL, 0, NULL, 0) == -1);
    assert_true (zh_head_write (buf, sizeof buf, ZH_SEND, 64, 0, DEST, 3, SRC, 3, not_map, 1, NULL,
                                0) == -1);
    assert_true (
        zh_head_write (buf, sizeof buf, ZH_PING, 64, 0, DEST, 3, SRC, 3, NULL, 0, NULL, 0) == -1);
    assert_true (zh_head_write (buf, sizeof buf, ZH_SEND, 64, 0x04, DEST, 3, SRC, 3, NULL, 0, NULL,
                                0) == -1);
    assert_true (zh_head_write (buf, 20, ZH_SEND, 64, 0, DEST, 3, SRC, 3, map, 1, NULL, 0) == -1);
    assert_true (zh_head_write (buf, 21, ZH_SEND, 64, 0, DEST, 3, SRC, 3, map, 1, NULL, 0) == 21);
    assert_int_equal (zh_head_size (3, 3, 1, 0), 21);
    assert_true (zh_head_size (SIZE_MAX, 1, 1, 1) == SIZE_MAX);
}

//  ---------------------------------------------------------------------
//  Refused: the header (§3 order: 400 → 426 → 404 → 400)

static void
test_header_shorter_than_6_bytes_is_400 (void **state)
{
    uint8_t header[ZH_HEADER_SIZE];
    zh_header_write (header, ZH_PING, 0, 0);
    for (size_t n = 0; n < ZH_HEADER_SIZE; n++)
        expect_frame_refused (header, n, ZH_ERR_MALFORMED, "too short");
}

static void
test_control_header_of_7_bytes_is_400 (void **state)
{
    uint8_t header[ZH_HEADER_SIZE + 1] = {0};
    zh_header_write (header, ZH_PING, 0, 0);
    expect_frame_refused (header, sizeof header, ZH_ERR_MALFORMED, "must be 6");
}

static void
test_wrong_magic_is_400 (void **state)
{
    uint8_t header[ZH_HEADER_SIZE];
    zh_header_write (header, ZH_PING, 0, 0);
    header[0] = 'z';
    expect_frame_refused (header, sizeof header, ZH_ERR_MALFORMED, "magic");
    zh_header_write (header, ZH_PING, 0, 0);
    header[1] = 'h';
    header[2] = 9; //  magic is checked before version
    expect_frame_refused (header, sizeof header, ZH_ERR_MALFORMED, "magic");
}

static void
test_version_0_and_2_is_426 (void **state)
{
    uint8_t header[ZH_HEADER_SIZE];
    zh_header_write (header, ZH_PING, 0, 0);
    header[2] = 0;
    expect_frame_refused (header, sizeof header, ZH_ERR_VERSION, "version 0");
    header[2] = 2;
    expect_frame_refused (header, sizeof header, ZH_ERR_VERSION, "version 2");
    header[3] = 0x7f; //  version is checked before the command
    expect_frame_refused (header, sizeof header, ZH_ERR_VERSION, "version 2");
}

static void
test_unknown_command_is_404 (void **state)
{
    uint8_t header[ZH_HEADER_SIZE];
    uint8_t unknown[] = {0x00, 0x06, 0x13, 0x24, 0x31, 0xff};
    for (size_t i = 0; i < sizeof unknown; i++) {
        zh_header_write (header, unknown[i], 0, 0);
        expect_frame_refused (header, sizeof header, ZH_ERR_UNKNOWN_COMMAND, "unknown command");
    }
    //  command is checked before the control frame's length and ttl
    uint8_t longer[ZH_HEADER_SIZE + 3] = {0};
    zh_header_write (longer, 0x7e, 9, 9);
    expect_frame_refused (longer, sizeof longer, ZH_ERR_UNKNOWN_COMMAND, "0x7e");
}

static void
test_control_with_ttl_or_flags_set_is_400 (void **state)
{
    uint8_t header[ZH_HEADER_SIZE];
    zh_header_write (header, ZH_PING, 64, 0);
    expect_frame_refused (header, sizeof header, ZH_ERR_MALFORMED, "ttl and flags");
    zh_header_write (header, ZH_BYE, 0, ZH_FLAG_INLINE);
    expect_frame_refused (header, sizeof header, ZH_ERR_MALFORMED, "ttl and flags");
}

static void
test_send_and_return_with_unknown_flag_bits_are_400 (void **state)
{
    uint8_t flags[] = {0x04, 0x80, 0xff};
    for (size_t i = 0; i < sizeof flags; i++) {
        msg_t msg;
        msg_head (&msg, ZH_SEND, 0, DEST, SRC, NULL, 0, NULL, 0);
        msg.data[0][5] = flags[i];
        expect_refused (&msg, ZH_ERR_MALFORMED, "unknown flag bits");
        msg.data[0][3] = ZH_RETURN;
        expect_refused (&msg, ZH_ERR_MALFORMED, "unknown flag bits");
        msg_free (&msg);
    }
}

//  ---------------------------------------------------------------------
//  Refused: frame layout

static void
test_message_with_no_frames_is_400 (void **state)
{
    expect_refused_views (NULL, 0, ZH_ERR_MALFORMED, "no frames");
}

static void
test_control_command_with_extra_frames_is_400 (void **state)
{
    msg_t msg;
    msg_control (&msg, ZH_PING, "\x80", 1);
    msg_add (&msg, "\x80", 1);
    expect_refused (&msg, ZH_ERR_MALFORMED, "extra frames");
    msg_free (&msg);
}

static void
test_send_with_more_than_max_payload_frames_is_400 (void **state)
{
    msg_t msg;
    msg_head (&msg, ZH_SEND, 0, DEST, SRC, NULL, 0, NULL, 0);
    zh_frame_view_t *views = calloc (ZH_MAX_FRAMES + 2, sizeof *views);
    views[0] = msg.views[0];
    for (size_t i = 1; i < ZH_MAX_FRAMES + 2; i++)
        views[i] = (zh_frame_view_t){(const uint8_t *)"x", 1};
    assert_int_equal (zh_msg_decode (&s_msg, views, ZH_MAX_FRAMES + 1, &s_err), 0);
    assert_int_equal (s_msg.payload_frames, ZH_MAX_FRAMES);
    expect_refused_views (views, ZH_MAX_FRAMES + 2, ZH_ERR_MALFORMED, "payload frames");
    free (views);
    msg_free (&msg);
}

//  ---------------------------------------------------------------------
//  Refused: malformed heads

static void
test_head_lengths_running_past_the_end_are_400 (void **state)
{
    uint8_t buf[256];
    size_t n;
    //  D says 200 but the frame ends sooner
    n = raw_head (buf, 0, 200, DEST, 0, "", 0, NULL, 0);
    expect_frame_refused (buf, n, ZH_ERR_MALFORMED, "dest (200 bytes) runs past the end");
    //  S says 300
    n = raw_head (buf, 0, strlen (DEST), DEST, 300, SRC, 0, NULL, 0);
    expect_frame_refused (buf, n - 4, ZH_ERR_MALFORMED, "src (300 bytes) runs past the end");
    //  M says 1000 with 1 byte of meta
    n = raw_head (buf, 0, strlen (DEST), DEST, strlen (SRC), SRC, 1000, "\x80", 1);
    expect_frame_refused (buf, n, ZH_ERR_MALFORMED, "meta (1000 bytes) runs past the end");
    //  M = 0xffffffff: the largest length must not wrap the offset
    n = raw_head (buf, 0, strlen (DEST), DEST, strlen (SRC), SRC, UINT32_MAX, "\x80", 1);
    expect_frame_refused (buf, n, ZH_ERR_MALFORMED, "runs past the end");
    //  the frame ends inside a length field
    n = raw_head (buf, 0, strlen (DEST), DEST, strlen (SRC), SRC, 0, NULL, 0);
    expect_frame_refused (buf, n - 2, ZH_ERR_MALFORMED, "before the meta length");
    expect_frame_refused (buf, ZH_HEADER_SIZE + 1, ZH_ERR_MALFORMED, "before the dest length");
    expect_frame_refused (buf, ZH_HEADER_SIZE + 2 + strlen (DEST) + 1, ZH_ERR_MALFORMED,
                          "before the src length");
}

static void
test_head_with_bytes_after_meta_and_no_inline_flag_is_400 (void **state)
{
    uint8_t buf[256];
    size_t n = raw_head (buf, 0, strlen (DEST), DEST, strlen (SRC), SRC, 1, "\x80junk", 5);
    expect_frame_refused (buf, n, ZH_ERR_MALFORMED, "4 bytes follow meta but INLINE is clear");
    expect_frame_refused (buf, n - 3, ZH_ERR_MALFORMED, "1 bytes follow meta but INLINE is clear");
    buf[5] = ZH_FLAG_INLINE; //  the same bytes are an inline part with the flag
    zh_frame_view_t view = {buf, n};
    assert_int_equal (zh_msg_decode (&s_msg, &view, 1, &s_err), 0);
    assert_int_equal (s_msg.head.inline_len, 4);
    assert_memory_equal (s_msg.head.inline_part, "junk", 4);
}

static void
test_head_dest_or_src_length_outside_1_to_1024_is_400 (void **state)
{
    uint8_t *buf = calloc (1, 4096);
    char *big = malloc (ZH_FIELD_MAX + 2);
    memset (big, 'a', ZH_FIELD_MAX + 1);
    big[ZH_FIELD_MAX + 1] = 0;
    size_t n = raw_head (buf, 0, 0, "", strlen (SRC), SRC, 0, NULL, 0);
    expect_frame_refused (buf, n, ZH_ERR_MALFORMED, "dest length 0 outside 1..1024");
    n = raw_head (buf, 0, ZH_FIELD_MAX + 1, big, strlen (SRC), SRC, 0, NULL, 0);
    expect_frame_refused (buf, n, ZH_ERR_MALFORMED, "dest length 1025 outside 1..1024");
    n = raw_head (buf, 0, strlen (DEST), DEST, 0, "", 0, NULL, 0);
    expect_frame_refused (buf, n, ZH_ERR_MALFORMED, "src length 0 outside");
    n = raw_head (buf, 0, strlen (DEST), DEST, ZH_FIELD_MAX + 1, big, 0, NULL, 0);
    expect_frame_refused (buf, n, ZH_ERR_MALFORMED, "src length 1025 outside");
    free (big);
    free (buf);
}

static void
test_head_meta_that_is_not_a_map_is_400 (void **state)
{
    uint8_t not_maps[] = {0x90, 0x00, 0xa0, 0xc0, 0xdc, 0xff};
    for (size_t i = 0; i < sizeof not_maps; i++) {
        uint8_t buf[256];
        size_t n = raw_head (buf, 0, strlen (DEST), DEST, strlen (SRC), SRC, 1, &not_maps[i], 1);
        expect_frame_refused (buf, n, ZH_ERR_MALFORMED, "meta is not a msgpack map");
    }
}

static void
test_head_on_a_control_command_is_refused_by_head_decode (void **state)
{
    uint8_t header[ZH_HEADER_SIZE];
    zh_header_write (header, ZH_PING, 0, 0);
    zh_head_t head;
    assert_int_equal (zh_head_decode (&head, header, sizeof header, &s_err), -1);
    assert_int_equal (s_err.code, ZH_ERR_MALFORMED);
    assert_non_null (strstr (s_err.reason, "has no head"));
}

//  ---------------------------------------------------------------------
//  Refused: addresses in a head

static void
test_send_dest_that_is_not_a_port_address_is_400 (void **state)
{
    const char *dests[] = {"echo.worker@tcp://h:1", "worker@tcp://h:1", "not an address",
                           "echo.worker:7"};
    for (size_t i = 0; i < 4; i++) {
        msg_t msg;
        msg_head (&msg, ZH_SEND, 0, dests[i], SRC, NULL, 0, NULL, 0);
        //  Not an address at all names its fault; an address of the wrong kind says so.
        expect_refused (&msg, ZH_ERR_MALFORMED,
                        i < 2 ? "dest: a SEND's dest must be a port address" : "dest: ");
        msg_free (&msg);
    }
}

static void
test_src_that_is_not_an_actor_or_proc_address_is_400 (void **state)
{
    const char *srcs[] = {"Worker@tcp://h:1", "nobody", "echo.worker:7@tcp://h:1"};
    for (size_t i = 0; i < 3; i++) {
        msg_t msg;
        msg_head (&msg, ZH_SEND, 0, DEST, srcs[i], NULL, 0, NULL, 0);
        expect_refused (&msg, ZH_ERR_MALFORMED,
                        i == 2 ? "src: must be an actor or proc address" : "src: ");
        msg_free (&msg);
    }
    msg_t msg; //  a proc address is also a valid src
    msg_head (&msg, ZH_SEND, 0, DEST, "worker@tcp://h:1", NULL, 0, NULL, 0);
    expect_ok (&msg);
    msg_free (&msg);
}

static void
test_return_goes_to_an_actor_or_proc_and_not_a_port (void **state)
{
    size_t size;
    uint8_t *meta = zh_return_meta_encode (NULL, 0, "NO_SUCH_PORT", "no", "tcp://h:1", DEST,
                                           strlen (DEST), NULL, 0, &size);
    msg_t msg;
    msg_head (&msg, ZH_RETURN, 0, SRC, "service@tcp://h:1", meta, size, NULL, 0);
    expect_ok (&msg);
    msg_free (&msg);
    msg_head (&msg, ZH_RETURN, 0, "worker@tcp://h:1", "service@tcp://h:1", meta, size, NULL, 0);
    expect_ok (&msg);
    msg_free (&msg);
    msg_head (&msg, ZH_RETURN, 0, DEST, "service@tcp://h:1", meta, size, NULL, 0);
    expect_refused (&msg, ZH_ERR_MALFORMED,
                    "dest: a RETURN's dest (the original src) must be an actor or proc address");
    msg_free (&msg);
    free (meta);
}

//  ---------------------------------------------------------------------
//  Refused: control bodies

static void
expect_body_refused (uint8_t command, const void *body, size_t size, const char *mention)
{
    msg_t msg;
    msg_control (&msg, command, body, size);
    expect_refused (&msg, ZH_ERR_MALFORMED, mention);
    msg_free (&msg);
}

static void
expect_packed_body_refused (uint8_t command, packer_t *p, const char *mention)
{
    expect_body_refused (command, p->sbuf.data, p->sbuf.size, mention);
    msgpack_sbuffer_destroy (&p->sbuf);
}

static void
test_body_that_is_not_a_map_is_400 (void **state)
{
    expect_body_refused (ZH_ATTACH, "\x91\x01", 2, "ATTACH body: not a msgpack map"); //  [1]
    expect_body_refused (ZH_ATTACH, "\x07", 1, "not a msgpack map");                  //  7
    expect_body_refused (ZH_BYE, "\xa2hi", 3, "BYE body: not a msgpack map");         //  "hi"
    expect_body_refused (ZH_PING, "\xc0", 1, "not a msgpack map");                    //  nil
    expect_body_refused (ZH_PING, "\xc1", 1, "not valid msgpack");
    expect_body_refused (ZH_PING, "\x81\xa1", 2, "not valid msgpack"); //  truncated
}

static void
test_body_with_trailing_bytes_is_400 (void **state)
{
    expect_body_refused (ZH_PING, "\x80\x80", 2, "1 trailing bytes");
    expect_body_refused (ZH_ATTACH, "\x81\xa3pid\x01\x00\x00", 8, "2 trailing bytes");
}

static void
test_body_with_non_string_keys_is_400 (void **state)
{
    expect_body_refused (ZH_ATTACH, "\x81\x01\x02", 3, "key 0 is not a string");
    expect_body_refused (ZH_PING, "\x82\xa1x\x01\xc4\x01x\x02", 8, "key 1 is not a string");
}

static void
test_body_with_a_huge_claimed_count_is_400_without_allocating_it (void **state)
{
    //  PROTO-2: msgpack-c would allocate 4G map entries up front
    expect_body_refused (ZH_PING, "\xdf\xff\xff\xff\xff", 5, "not valid msgpack");
    expect_body_refused (ZH_PING, "\x81\xa1x\xdd\xff\xff\xff\xff", 8, "not valid msgpack");
}

//  One key with a value of the wrong type for its field.
typedef enum { V_STR, V_INT, V_NEG, V_BIN, V_FLOAT, V_BIGU } value_kind_t;

static void
pack_one_field (packer_t *p, const char *key, value_kind_t kind, const char *extra_key)
{
    pk_init (p);
    msgpack_pack_map (&p->pk, extra_key ? 2 : 1);
    if (extra_key) {
        zh_pack_str (&p->pk, extra_key);
        zh_pack_str (&p->pk, "x");
    }
    zh_pack_str (&p->pk, key);
    switch (kind) {
    case V_STR:
        zh_pack_str (&p->pk, "123");
        break;
    case V_INT:
        msgpack_pack_int (&p->pk, 123);
        break;
    case V_NEG:
        msgpack_pack_int (&p->pk, -5);
        break;
    case V_BIN:
        msgpack_pack_bin (&p->pk, 1), msgpack_pack_bin_body (&p->pk, "x", 1);
        break;
    case V_FLOAT:
        msgpack_pack_double (&p->pk, 1.0);
        break;
    case V_BIGU:
        msgpack_pack_uint64 (&p->pk, UINT64_MAX);
        break;
    }
}

static void
test_body_values_of_the_wrong_type_are_400 (void **state)
{
    struct {
        uint8_t command;
        const char *key;
        value_kind_t kind;
        const char *mention;
    } cases[] = {
        {ZH_ATTACH, "pid", V_STR, "ATTACH body: pid must be an integer"},
        {ZH_ATTACH, "label", V_INT, "ATTACH body: label must be a string"},
        {ZH_ATTACH, "lang", V_BIN, "lang must be a string"},
        {ZH_ATTACH, "pid", V_FLOAT, "pid must be an integer"},
        {ZH_ATTACH, "pid", V_BIGU, "pid must be an integer in int64 range"},
        {ZH_BOOTSTRAP, "heartbeat_ms", V_NEG, "heartbeat_ms must be a non-negative integer"},
        {ZH_BOOTSTRAP, "hwm", V_STR, "hwm must be a non-negative integer"},
        {ZH_BOOTSTRAP, "proc", V_INT, "proc must be a string"},
        {ZH_HELLO, "incarnation", V_NEG, "incarnation must be a non-negative integer"},
        {ZH_WELCOME, "endpoint", V_INT, "endpoint must be a string"},
        {ZH_READY, "pid", V_STR, "READY body: pid must be an integer"},
        {ZH_ERROR, "code", V_STR, "ERROR body: code must be an integer"},
        {ZH_ERROR, "seq", V_FLOAT, "seq must be an integer"},
        {ZH_ERROR, "dest", V_INT, "dest must be a string"},
        {ZH_BYE, "reason", V_INT, "BYE body: reason must be a string"},
        {ZH_STOP, "timeout_ms", V_NEG, "STOP body: timeout_ms must be a non-negative integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        packer_t p;
        pack_one_field (&p, cases[i].key, cases[i].kind, NULL);
        expect_packed_body_refused (cases[i].command, &p, cases[i].mention);
    }
}

static void
test_body_signed_fields_take_every_integer_kind (void **state)
{
    //  pid as int8 (positive), int16 (negative), uint32 and negative fixint
    uint8_t bodies[][10] = {
        {0x81, 0xa3, 'p', 'i', 'd', 0xd0, 0x05},
        {0x81, 0xa3, 'p', 'i', 'd', 0xd1, 0xff, 0x00},
        {0x81, 0xa3, 'p', 'i', 'd', 0xce, 0x80, 0x00, 0x00},
        {0x81, 0xa3, 'p', 'i', 'd', 0xff},
    };
    size_t sizes[] = {7, 8, 10, 6};
    int64_t want[] = {5, -256, 0x80000000LL, -1};
    for (size_t i = 0; i < 4; i++) {
        zh_body_t body;
        assert_int_equal (zh_body_decode (&body, ZH_ATTACH, bodies[i], sizes[i], &s_err), 0);
        assert_true (body.present == ZH_F_PID);
        assert_true (body.pid == want[i]);
    }
    //  a uint field takes a positive value in a signed encoding
    uint8_t timeout[] = {0x81, 0xaa, 't', 'i', 'm', 'e', 'o', 'u', 't', '_', 'm', 's', 0xd0, 0x07};
    zh_body_t body;
    assert_int_equal (zh_body_decode (&body, ZH_STOP, timeout, sizeof timeout, &s_err), 0);
    assert_int_equal (body.present, ZH_F_TIMEOUT_MS);
    assert_true (body.timeout_ms == 7);
}

static void
test_body_strings_over_the_limit_are_400 (void **state)
{
    char *text = malloc (ZH_STRING_MAX + 2);
    memset (text, 'r', ZH_STRING_MAX + 1);
    text[ZH_STRING_MAX + 1] = 0;
    packer_t p;
    pk_init (&p);
    msgpack_pack_map (&p.pk, 1);
    zh_pack_str (&p.pk, "reason");
    zh_pack_str (&p.pk, text);
    expect_packed_body_refused (ZH_BYE, &p, "reason is 4097 bytes, over the 4096-byte");

    text[ZH_STRING_MAX] = 0; //  exactly at the limit is fine
    zh_body_t body = {.command = ZH_BYE, .present = ZH_F_REASON, .reason = zh_span_of (text)};
    round_trip_body (&body);
    free (text);
}

static void
test_body_missing_required_fields_is_400 (void **state)
{
    zh_body_t boot = {.command = ZH_BOOTSTRAP,
                      .present = ZH_F_HOST | ZH_F_AGENT | ZH_F_HEARTBEAT_MS | ZH_F_MAX_MSG_BYTES |
                                 ZH_F_HWM | ZH_F_INCARNATION,
                      .host = zh_span_of ("tcp://h:1"),
                      .agent = zh_span_of ("host_agent.service@tcp://h:1")};
    msg_t msg;
    msg_control_body (&msg, &boot);
    expect_refused (&msg, ZH_ERR_MALFORMED, "BOOTSTRAP body: proc is required");
    msg_free (&msg);

    zh_body_t error = {.command = ZH_ERROR, .present = ZH_F_REASON, .reason = zh_span_of ("x")};
    msg_control_body (&msg, &error);
    expect_refused (&msg, ZH_ERR_MALFORMED, "ERROR body: code is required");
    msg_free (&msg);

    error.present = ZH_F_CODE;
    msg_control_body (&msg, &error);
    expect_refused (&msg, ZH_ERR_MALFORMED, "ERROR body: reason is required");
    msg_free (&msg);

    zh_body_t hello = {.command = ZH_HELLO, .present = ZH_F_ENDPOINT, .endpoint = zh_span_of ("e")};
    msg_control_body (&msg, &hello);
    expect_refused (&msg, ZH_ERR_MALFORMED, "HELLO body: incarnation is required");
    msg_free (&msg);

    msg_control (&msg, ZH_READY, NULL, 0); //  no body frame: the empty map
    expect_refused (&msg, ZH_ERR_MALFORMED, "READY body: proc is required");
    msg_free (&msg);
    msg_control (&msg, ZH_WELCOME, "", 0);
    expect_refused (&msg, ZH_ERR_MALFORMED, "WELCOME body: incarnation is required");
    msg_free (&msg);
}

static void
test_body_ignores_unknown_keys_and_other_commands_fields (void **state)
{
    packer_t p;
    pk_init (&p);
    msgpack_pack_map (&p.pk, 4);
    zh_pack_str (&p.pk, "future"); //  unknown, with a value of any shape
    msgpack_pack_array (&p.pk, 2);
    msgpack_pack_nil (&p.pk);
    msgpack_pack_map (&p.pk, 0);
    zh_pack_str (&p.pk, "code"); //  an ERROR field, wrong type: ignored in a BYE
    zh_pack_str (&p.pk, "not an int");
    zh_pack_str (&p.pk, "reason");
    zh_pack_str (&p.pk, "bye now");
    zh_pack_str (&p.pk, "timeout_ms"); //  a STOP field
    msgpack_pack_int (&p.pk, -1);
    msg_t msg;
    msg_control (&msg, ZH_BYE, p.sbuf.data, p.sbuf.size);
    expect_ok (&msg);
    assert_int_equal (s_msg.body.present, ZH_F_REASON);
    assert_span (s_msg.body.reason, "bye now");
    msg_free (&msg);
    msgpack_sbuffer_destroy (&p.sbuf);
}

static void
test_body_with_a_field_given_twice_is_400 (void **state)
{
    packer_t p;
    pack_one_field (&p, "reason", V_STR, "reason");
    expect_packed_body_refused (ZH_BYE, &p, "reason given twice");
}

static void
test_body_decode_refuses_commands_without_a_body (void **state)
{
    zh_body_t body;
    assert_int_equal (zh_body_decode (&body, ZH_SEND, NULL, 0, &s_err), -1);
    assert_int_equal (s_err.code, ZH_ERR_MALFORMED);
    assert_int_equal (zh_body_decode (&body, 0x77, NULL, 0, &s_err), -1);
    assert_int_equal (s_err.code, ZH_ERR_MALFORMED);
}

//  ---------------------------------------------------------------------
//  Seeded random messages

static uint64_t s_rng = 0x5eed2026;

static uint64_t
rnd (void)
{
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 0x2545F4914F6CDD1DULL;
}

static size_t
rnd_below (size_t n)
{
    return (size_t)(rnd () % n);
}

static void
rnd_bytes (uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)rnd ();
}

//  Append a random valid label.
static size_t
rnd_label (char *out)
{
    static const char letters[] = "abcdefghijklmnopqrstuvwxyz";
    static const char chars[] = "abcdefghijklmnopqrstuvwxyz0123456789_-";
    size_t len = rnd_below (8) == 0 ? 1 + rnd_below (ZH_LABEL_MAX) : 1 + rnd_below (10);
    for (size_t i = 0; i < len; i++)
        out[i] = i == 0 || i == len - 1 ? letters[rnd_below (26)] : chars[rnd_below (38)];
    return len;
}

//  Append a random valid id: label, label<uid58> or <uid58>.
static size_t
rnd_id (char *out)
{
    size_t n = 0, form = rnd_below (3);
    if (form != 2) n += rnd_label (out);
    if (form != 0) {
        char digits[16];
        uint64_t v = rnd () >> rnd_below (64);
        size_t k = 0;
        do
            digits[k++] = zh_uid58_alphabet[v % 58], v /= 58;
        while (v);
        out[n++] = '<';
        while (k)
            out[n++] = digits[--k];
        out[n++] = '>';
    }
    return n;
}

static size_t
rnd_endpoint (char *out)
{
    switch (rnd_below (3)) {
    case 0:
        return (size_t)sprintf (out, "tcp://host-%zu:%zu", rnd_below (100), rnd_below (65536));
    case 1:
        return (size_t)sprintf (out, "ipc:///tmp/zh%zu/backend", rnd_below (1000));
    default:
        return (size_t)sprintf (out, "inproc://zhost-backend-%zu", rnd_below (10));
    }
}

//  A random address of this kind, NUL-terminated.
static void
rnd_address (char *out, zh_addr_kind_t kind)
{
    size_t n = 0;
    if (kind != ZH_ADDR_PROC) {
        n += rnd_id (out);
        out[n++] = '.';
    }
    n += rnd_id (out + n);
    if (kind == ZH_ADDR_PORT)
        n += (size_t)sprintf (out + n, ":%llu", (unsigned long long)(rnd () >> rnd_below (64)));
    out[n++] = '@';
    n += rnd_endpoint (out + n);
    out[n] = 0;
}

static void
rnd_text (char *out, size_t max)
{
    size_t len = rnd_below (max);
    for (size_t i = 0; i < len; i++)
        out[i] = (char)(' ' + rnd_below (95));
    out[len] = 0;
}

//  Random meta: empty, or a map of known and unknown keys.
static void
rnd_meta (packer_t *p, bool *has_seq, int64_t *seq)
{
    pk_init (p);
    *has_seq = false;
    if (rnd_below (4) == 0) return;
    size_t keys = rnd_below (5);
    msgpack_pack_map (&p->pk, keys);
    for (size_t k = 0; k < keys; k++) {
        char text[ZH_FIELD_MAX + 1];
        switch (rnd_below (5)) {
        case 0:
            if (*has_seq) { //  keep seq unique so the lookup is well defined
                zh_pack_str (&p->pk, "ts");
                msgpack_pack_int64 (&p->pk, (int64_t)rnd ());
                break;
            }
            *has_seq = true;
            *seq = (int64_t)(rnd () >> rnd_below (64)) * (rnd_below (2) ? 1 : -1);
            zh_pack_str (&p->pk, "seq");
            msgpack_pack_int64 (&p->pk, *seq);
            break;
        case 1:
            zh_pack_str (&p->pk, "reply");
            rnd_address (text, ZH_ADDR_PORT);
            zh_pack_str (&p->pk, text);
            break;
        case 2:
            zh_pack_str (&p->pk, "headers");
            msgpack_pack_map (&p->pk, 1);
            rnd_text (text, 20);
            zh_pack_str (&p->pk, text);
            msgpack_pack_array (&p->pk, 2);
            msgpack_pack_double (&p->pk, 0.25);
            msgpack_pack_true (&p->pk);
            break;
        case 3:
            zh_pack_str (&p->pk, "ts");
            msgpack_pack_uint64 (&p->pk, rnd ());
            break;
        default:
            rnd_text (text, 20);
            zh_pack_str (&p->pk, text);
            msgpack_pack_bin (&p->pk, 3);
            msgpack_pack_bin_body (&p->pk, "abc", 3);
            break;
        }
    }
}

static const uint8_t s_controls[] = {ZH_ATTACH, ZH_BOOTSTRAP, ZH_READY, ZH_HELLO, ZH_WELCOME,
                                     ZH_PING,   ZH_PONG,      ZH_BYE,   ZH_ERROR, ZH_STOP};

//  Texts live here while a random body points into them.
static char s_texts[16][ZH_STRING_MAX + 1];

//  zh_body_encode then zh_body_decode: the fields that survive, or -1
//  when the decoder refuses (a required field is missing).
static int64_t
surviving_fields (const zh_body_t *body)
{
    size_t size;
    zh_body_t back;
    uint8_t *bytes = zh_body_encode (body, &size);
    assert_non_null (bytes);
    int rc = zh_body_decode (&back, body->command, bytes, size, NULL);
    free (bytes);
    return rc == 0 ? (int64_t)back.present : -1;
}

//  A random valid body: a random subset of the command's fields (all of
//  them when the subset lacks a required one), random values.
static void
rnd_body (zh_body_t *body, uint8_t command)
{
    memset (body, 0, sizeof *body);
    body->command = command;
    zh_span_t *spans[] = {&body->label, &body->lang,     &body->proc,   &body->host,
                          &body->agent, &body->endpoint, &body->reason, &body->dest};
    for (size_t i = 0; i < 8; i++) {
        rnd_text (s_texts[i], (rnd_below (50) == 0 ? ZH_STRING_MAX : 60) + 1);
        *spans[i] = zh_span_of (s_texts[i]);
    }
    body->pid = (int64_t)rnd () >> rnd_below (64);
    body->code = (int64_t)rnd () >> rnd_below (64);
    body->seq = (int64_t)rnd () >> rnd_below (64);
    body->heartbeat_ms = rnd () >> rnd_below (64);
    body->max_msg_bytes = rnd () >> rnd_below (64);
    body->hwm = rnd () >> rnd_below (64);
    body->incarnation = rnd ();
    body->timeout_ms = rnd () >> rnd_below (64);

    body->present = 0xffff;
    uint32_t all = surviving_fields (body);
    body->present = all & (uint32_t)rnd ();
    if (surviving_fields (body) != body->present) body->present = all;
}

//  One random valid message into msg; the generator's view in the out
//  parameters for comparison.
typedef struct {
    uint8_t command;
    zh_body_t body;
    char dest[ZH_FIELD_MAX + 1];
    char src[ZH_FIELD_MAX + 1];
    packer_t meta;
    bool has_seq;
    int64_t seq;
    uint8_t flags;
    uint8_t inline_part[64];
    size_t inline_len;
    size_t frames;
    zh_failure_t prior[3];
    size_t prior_count;
} expect_t;

static void
rnd_message (msg_t *msg, expect_t *want)
{
    memset (msg, 0, sizeof *msg);
    if (rnd_below (3) != 0) {
        want->command = s_controls[rnd_below (sizeof s_controls)];
        rnd_body (&want->body, want->command);
        if (want->body.present == 0 && rnd_below (2))
            msg_control (msg, want->command, NULL, 0);
        else
            msg_control_body (msg, &want->body);
        return;
    }
    want->command = rnd_below (2) ? ZH_SEND : ZH_RETURN;
    rnd_address (want->src, rnd_below (2) ? ZH_ADDR_ACTOR : ZH_ADDR_PROC);
    rnd_meta (&want->meta, &want->has_seq, &want->seq);
    want->flags = (uint8_t)rnd_below (4);
    want->inline_len = rnd_below (sizeof want->inline_part);
    rnd_bytes (want->inline_part, want->inline_len);
    const uint8_t *meta = (const uint8_t *)want->meta.sbuf.data;
    size_t meta_len = want->meta.sbuf.size;
    uint8_t *return_meta = NULL;
    if (want->command == ZH_SEND)
        rnd_address (want->dest, ZH_ADDR_PORT);
    else {
        want->flags &= ZH_FLAG_INLINE;
        rnd_address (want->dest, rnd_below (2) ? ZH_ADDR_ACTOR : ZH_ADDR_PROC);
        want->prior_count = rnd_below (3);
        for (size_t i = 0; i < want->prior_count; i++)
            want->prior[i] = (zh_failure_t){zh_span_of (zh_rc_name ((zh_rc_t)rnd_below (9))),
                                            zh_span_of ("earlier"), zh_span_of ("tcp://x:1")};
        char orig_dest[ZH_FIELD_MAX + 1];
        rnd_address (orig_dest, ZH_ADDR_PORT);
        return_meta =
            zh_return_meta_encode (want->prior, want->prior_count, "PROC_GONE", "died", want->src,
                                   orig_dest, strlen (orig_dest), meta, meta_len, &meta_len);
        meta = return_meta;
    }
    if (!(want->flags & ZH_FLAG_INLINE)) want->inline_len = 0;
    msg_head (msg, want->command, want->flags, want->dest, want->src, meta, meta_len,
              want->inline_part, want->inline_len);
    want->frames = rnd_below (4);
    for (size_t i = 0; i < want->frames; i++) {
        uint8_t part[128];
        size_t n = rnd_below (sizeof part);
        rnd_bytes (part, n);
        msg_add (msg, part, n);
    }
    free (return_meta);
}

static void
check_random_head (const msg_t *msg, const expect_t *want)
{
    const zh_head_t *head = &s_msg.head;
    assert_int_equal (head->hdr.flags, want->flags);
    assert_int_equal (head->dest_len, strlen (want->dest));
    assert_memory_equal (head->dest, want->dest, head->dest_len);
    assert_int_equal (head->src_len, strlen (want->src));
    assert_memory_equal (head->src, want->src, head->src_len);
    assert_int_equal (head->inline_len, want->inline_len);
    if (want->inline_len)
        assert_memory_equal (head->inline_part, want->inline_part, want->inline_len);
    assert_int_equal (s_msg.payload_frames, want->frames);
    const uint8_t *orig_meta = head->meta;
    size_t orig_len = head->meta_len;
    if (want->command == ZH_RETURN) {
        zh_return_meta_t rm;
        assert_int_equal (zh_return_meta_decode (&rm, head->meta, head->meta_len, &s_err), 0);
        assert_int_equal (rm.failure_count, want->prior_count + 1);
        for (size_t i = 0; i < want->prior_count; i++)
            assert_true (span_same (rm.failures[i].code, want->prior[i].code));
        assert_span (rm.failures[want->prior_count].at, want->src);
        orig_meta = rm.meta;
        orig_len = rm.meta_len;
        if (want->meta.sbuf.size == 0) {
            assert_int_equal (orig_len, 1);
            assert_int_equal (orig_meta[0], 0x80);
        }
    }
    if (want->meta.sbuf.size && want->command == ZH_SEND)
        assert_int_equal (orig_len, want->meta.sbuf.size);
    if (want->meta.sbuf.size)
        assert_memory_equal (orig_meta, want->meta.sbuf.data, want->meta.sbuf.size);
    int64_t seq = 0;
    assert_int_equal (zh_meta_find_seq (orig_meta, orig_len, &seq), want->has_seq ? 0 : -1);
    if (want->has_seq) assert_true (seq == want->seq);
}

static void
test_random_messages_round_trip (void **state)
{
    s_rng = 0x5eed2026;
    for (int i = 0; i < 5000; i++) {
        msg_t msg;
        expect_t want;
        memset (&want, 0, sizeof want);
        rnd_message (&msg, &want);
        expect_ok (&msg);
        assert_int_equal (s_msg.hdr.command, want.command);
        size_t total = 0;
        for (size_t f = 0; f < msg.count; f++)
            total += msg.size[f];
        assert_int_equal (s_msg.total_size, total);
        if (zh_command_has_head (want.command))
            check_random_head (&msg, &want);
        else
            assert_body_equal (&s_msg.body, &want.body);
        msgpack_sbuffer_destroy (&want.meta.sbuf);
        msg_free (&msg);
    }
}

//  Damage a message a few ways at once.
static void
mutate (msg_t *msg)
{
    size_t rounds = 1 + rnd_below (4);
    for (size_t r = 0; r < rounds && msg->count > 0; r++) {
        size_t f = rnd_below (msg->count);
        uint8_t *data = msg->data[f];
        size_t size = msg->size[f];
        switch (rnd_below (6)) {
        case 0: //  flip a bit
        case 1: //  (twice as likely: the interesting one)
            if (size) data[rnd_below (size)] ^= (uint8_t)(1u << rnd_below (8));
            break;
        case 2: //  overwrite a byte, often in the header and lengths
            if (size) data[rnd_below (size < 20 ? size : 20)] = (uint8_t)rnd ();
            break;
        case 3: //  truncate
            msg->size[f] = size ? rnd_below (size) : 0;
            break;
        case 4: //  drop the last frame
            msg->count--;
            free (msg->data[msg->count]);
            break;
        default: //  add a frame of noise
            if (msg->count < 8) {
                uint8_t noise[16];
                rnd_bytes (noise, sizeof noise);
                msg_add (msg, noise, rnd_below (sizeof noise));
            }
            break;
        }
        if (f < msg->count) msg->views[f] = (zh_frame_view_t){msg->data[f], msg->size[f]};
    }
}

static void
test_random_mutations_decode_or_are_refused_400_404_426 (void **state)
{
    s_rng = 0xbadc0de;
    size_t decoded = 0, refused[3] = {0};
    for (int i = 0; i < 20000; i++) {
        msg_t msg;
        expect_t want;
        memset (&want, 0, sizeof want);
        rnd_message (&msg, &want);
        mutate (&msg);
        zh_error_clear (&s_err);
        if (zh_msg_decode (&s_msg, msg.views, msg.count, &s_err) == 0)
            decoded++;
        else if (s_err.code == ZH_ERR_MALFORMED)
            refused[0]++;
        else if (s_err.code == ZH_ERR_UNKNOWN_COMMAND)
            refused[1]++;
        else {
            assert_int_equal (s_err.code, ZH_ERR_VERSION);
            refused[2]++;
        }
        //  the other entry points take any bytes too
        for (size_t f = 0; f < msg.count; f++) {
            zh_return_meta_t rm;
            zh_body_t body;
            int64_t seq;
            zh_span_t reply;
            zh_return_meta_decode (&rm, msg.data[f], msg.size[f], NULL);
            zh_meta_find_seq (msg.data[f], msg.size[f], &seq);
            zh_meta_find_reply (msg.data[f], msg.size[f], &reply);
            zh_body_decode (&body, s_controls[i % sizeof s_controls], msg.data[f], msg.size[f],
                            NULL);
        }
        msgpack_sbuffer_destroy (&want.meta.sbuf);
        msg_free (&msg);
    }
    //  the mutations reach every outcome
    assert_true (decoded > 0 && refused[0] > 0 && refused[1] > 0 && refused[2] > 0);
}

//  ---------------------------------------------------------------------
//  The fuzz seed corpus (tests/fuzz/corpus/frame): --write-corpus DIR

static void
corpus_write (const char *dir, const char *name, const msg_t *msg)
{
    char path[512];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    FILE *file = fopen (path, "wb");
    if (!file) {
        perror (path);
        exit (1);
    }
    fputc ((int)msg->count, file);
    for (size_t i = 0; i < msg->count; i++) {
        size_t n = msg->size[i] > 0xffff ? 0xffff : msg->size[i];
        fputc ((int)(n >> 8), file);
        fputc ((int)(n & 0xff), file);
        fwrite (msg->data[i], 1, n, file);
    }
    fclose (file);
}

static int
write_corpus (const char *dir)
{
    msg_t msg;
    zh_body_t bodies[] = {
        {.command = ZH_ATTACH,
         .present = ZH_F_LABEL | ZH_F_PID | ZH_F_LANG,
         .label = zh_span_of ("mylabel"),
         .pid = 42,
         .lang = zh_span_of ("c")},
        {.command = ZH_BOOTSTRAP,
         .present = 0x3f8,
         .proc = zh_span_of ("remote<3xZ9kLmN>@tcp://h:1"),
         .host = zh_span_of ("tcp://h:1"),
         .agent = zh_span_of ("host_agent.service@tcp://h:1"),
         .heartbeat_ms = 1000,
         .max_msg_bytes = 1 << 24,
         .hwm = 1000,
         .incarnation = 0xfeedface},
        {.command = ZH_READY, .present = ZH_F_PROC | ZH_F_PID, .proc = zh_span_of ("w"), .pid = 7},
        {.command = ZH_HELLO,
         .present = ZH_F_ENDPOINT | ZH_F_INCARNATION,
         .endpoint = zh_span_of ("tcp://a:1"),
         .incarnation = 9},
        {.command = ZH_WELCOME,
         .present = ZH_F_ENDPOINT | ZH_F_INCARNATION,
         .endpoint = zh_span_of ("tcp://b:2"),
         .incarnation = 10},
        {.command = ZH_PING},
        {.command = ZH_PONG},
        {.command = ZH_BYE, .present = ZH_F_REASON, .reason = zh_span_of ("shutdown")},
        {.command = ZH_ERROR,
         .present = ZH_F_CODE | ZH_F_REASON | ZH_F_DEST | ZH_F_SEQ,
         .code = 400,
         .reason = zh_span_of ("bad"),
         .dest = zh_span_of (DEST),
         .seq = -3},
        {.command = ZH_STOP,
         .present = ZH_F_REASON | ZH_F_TIMEOUT_MS,
         .reason = zh_span_of ("stop"),
         .timeout_ms = 500},
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char name[64];
        msg_control_body (&msg, &bodies[i]);
        snprintf (name, sizeof name, "%02zu-%s", i, zh_command_name (bodies[i].command));
        corpus_write (dir, name, &msg);
        msg_free (&msg);
    }
    uint8_t meta[] = {0x82, 0xa3, 's', 'e', 'q', 0x2a, 0xa5, 'r', 'e', 'p', 'l', 'y', 0xa1, 'x'};
    msg_head (&msg, ZH_SEND, ZH_FLAG_INLINE | ZH_FLAG_RETURN_UNDELIVERABLE, DEST, SRC, meta,
              sizeof meta, "hi", 2);
    corpus_write (dir, "20-SEND-inline", &msg);
    msg_add (&msg, "frame1", 6);
    msg_add (&msg, "", 0);
    corpus_write (dir, "21-SEND-inline-frames", &msg);
    msg_free (&msg);
    msg_head (&msg, ZH_SEND, 0, DEST, "worker@tcp://h:1", NULL, 0, NULL, 0);
    msg_add (&msg, "payload", 7);
    corpus_write (dir, "22-SEND-frames", &msg);
    msg_free (&msg);
    msg_head (&msg, ZH_SEND, ZH_FLAG_INLINE, DEST, SRC, NULL, 0, NULL, 0);
    corpus_write (dir, "23-SEND-empty-inline", &msg);
    msg_free (&msg);

    zh_failure_t prior = {zh_span_of ("HOST_UNREACHABLE"), zh_span_of ("down"),
                          zh_span_of ("tcp://a:1")};
    size_t size;
    uint8_t *rmeta = zh_return_meta_encode (&prior, 1, "TTL_EXPIRED", "hops", "tcp://b:2", DEST,
                                            strlen (DEST), meta, sizeof meta, &size);
    msg_head (&msg, ZH_RETURN, ZH_FLAG_INLINE, SRC, "service@tcp://h:1", rmeta, size, "hi", 2);
    corpus_write (dir, "30-RETURN", &msg);
    msg_free (&msg);
    //  the raw input is also fed to zh_return_meta_decode: a bare RETURN meta
    char path[512];
    snprintf (path, sizeof path, "%s/31-return-meta-raw", dir);
    FILE *file = fopen (path, "wb");
    fwrite (rmeta, 1, size, file);
    fclose (file);
    free (rmeta);

    //  a few near misses
    uint8_t header[ZH_HEADER_SIZE];
    zh_header_write (header, ZH_PING, 0, 0);
    header[2] = 2;
    msg_control (&msg, ZH_PING, NULL, 0);
    memcpy (msg.data[0], header, sizeof header);
    corpus_write (dir, "40-version-2", &msg);
    msg_free (&msg);
    msg_control (&msg, ZH_BYE, "\x81\xa6reason\xa1x\x00", 11);
    corpus_write (dir, "41-body-trailing", &msg);
    msg_free (&msg);
    return 0;
}

//  ---------------------------------------------------------------------
//  The guard in front of msgpack-c (PROTO-2)

//  This process's VmPeak in KiB (from /proc/self/status).
static long
s_vm_peak_kib (void)
{
    FILE *f = fopen ("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets (line, sizeof line, f))
        if (strncmp (line, "VmPeak:", 7) == 0) kib = atol (line + 7);
    if (f) fclose (f);
    return kib;
}

//  A few bytes declaring a container of 4 G elements are refused before
//  msgpack-c sees them, so no address space is reserved for them; valid
//  values, nested ones included, pass and unpack.
static void
test_msgpack_guard_refuses_declared_counts_it_cannot_hold (void **state)
{
    const uint8_t huge[][8] = {
        {0xdd, 0xff, 0xff, 0xff, 0xff},                  //  array32 of 2^32-1
        {0xdf, 0xff, 0xff, 0xff, 0xff},                  //  map32 of 2^32-1
        {0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff}, //  {x: array32 …}
        {0xdb, 0xff, 0xff, 0xff, 0xff},                  //  str32 of 4 GiB
        {0xc6, 0x7f, 0xff, 0xff, 0xff},                  //  bin32 of 2 GiB
    };
    const size_t sizes[] = {5, 5, 8, 5, 5};
    long before = s_vm_peak_kib ();
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        assert_int_equal (zh_msgpack_check (huge[i], sizes[i]), -1);
        msgpack_zone zone;
        assert_true (msgpack_zone_init (&zone, 256));
        msgpack_object root;
        assert_int_equal (zh_msgpack_unpack (huge[i], sizes[i], &zone, &root), -1);
        msgpack_zone_destroy (&zone);
    }
    long after = s_vm_peak_kib ();
    assert_true (before > 0 && after - before < 64 * 1024);

    const uint8_t ok[] = {0x82, 0xa2, 'o',  'p', 0xa4, 'p',  'i',
                          'n',  'g',  0xa1, 'n', 0x92, 0x01, 0x80};
    assert_int_equal (zh_msgpack_check (ok, sizeof ok), 0);
    assert_int_equal (zh_msgpack_check (ok, sizeof ok - 1), -1); //  truncated
    uint8_t trailing[sizeof ok + 1];
    memcpy (trailing, ok, sizeof ok);
    trailing[sizeof ok] = 0xc0;
    assert_int_equal (zh_msgpack_check (trailing, sizeof trailing), -1); //  two values
    assert_int_equal (zh_msgpack_check (NULL, 0), -1);
    msgpack_zone zone;
    assert_true (msgpack_zone_init (&zone, 256));
    msgpack_object root;
    assert_int_equal (zh_msgpack_unpack (ok, sizeof ok, &zone, &root), 0);
    assert_int_equal (root.type, MSGPACK_OBJECT_MAP);
    assert_int_equal (root.via.map.size, 2);
    msgpack_zone_destroy (&zone);
}

//  The head's address rules live in the codec: a SEND goes to a port, a
//  RETURN back to an actor or proc (the original src), a src is never a
//  port.
static void
test_head_address_kinds (void **state)
{
    assert_true (zh_head_dest_kind_ok (ZH_SEND, ZH_ADDR_PORT));
    assert_false (zh_head_dest_kind_ok (ZH_SEND, ZH_ADDR_ACTOR));
    assert_false (zh_head_dest_kind_ok (ZH_SEND, ZH_ADDR_PROC));
    assert_false (zh_head_dest_kind_ok (ZH_RETURN, ZH_ADDR_PORT));
    assert_true (zh_head_dest_kind_ok (ZH_RETURN, ZH_ADDR_ACTOR));
    assert_true (zh_head_dest_kind_ok (ZH_RETURN, ZH_ADDR_PROC));
    assert_false (zh_head_src_kind_ok (ZH_ADDR_PORT));
    assert_true (zh_head_src_kind_ok (ZH_ADDR_ACTOR));
}

//  ---------------------------------------------------------------------
//  BATCH (§14)

//  A one-frame SEND to dest with inline text, into buf; its length.
static size_t
batch_elem (uint8_t *buf, size_t cap, uint8_t command, const char *dest, const char *text)
{
    long n = zh_head_write (buf, cap, command, ZH_TTL_DEFAULT, ZH_FLAG_INLINE, dest, strlen (dest),
                            SRC, strlen (SRC), NULL, 0, (const uint8_t *)text, strlen (text));
    assert_true (n > 0);
    return (size_t)n;
}

static void
test_batch_walks_its_elements_in_order_and_rebuilds_the_same_bytes (void **state)
{
    (void)state;
    uint8_t frame[512], elem[128];
    size_t used = ZH_HEADER_SIZE;
    zh_header_write (frame, ZH_BATCH, 0, 0);
    const char *texts[] = {"one", "two", ""};
    size_t lens[3];
    for (int i = 0; i < 3; i++) {
        lens[i] = batch_elem (elem, sizeof elem, ZH_SEND, DEST, texts[i]);
        assert_int_equal (zh_batch_put (frame, sizeof frame, &used, elem, lens[i]), 0);
    }
    //  Full: nothing written.
    size_t before = used;
    assert_int_equal (zh_batch_put (frame, used + 3, &used, elem, lens[2]), -1);
    assert_int_equal (used, before);
    assert_int_equal (zh_batch_put (frame, sizeof frame, &used, elem, 0), -1);

    zh_batch_iter_t it;
    zh_error_t err;
    assert_int_equal (zh_batch_begin (&it, frame, used, &err), 0);
    const uint8_t *e;
    size_t len;
    for (int i = 0; i < 3; i++) {
        assert_int_equal (zh_batch_next (&it, &e, &len, &err), 1);
        assert_int_equal (len, lens[i]);
        zh_head_t head;
        assert_int_equal (zh_head_decode (&head, e, len, &err), 0);
        assert_int_equal (head.inline_len, strlen (texts[i]));
        assert_memory_equal (head.inline_part, texts[i], head.inline_len);
    }
    assert_int_equal (zh_batch_next (&it, &e, &len, &err), 0);
    assert_int_equal (it.index, 3);

    zh_frame_view_t view = {frame, used};
    zh_msg_t msg;
    assert_int_equal (zh_msg_decode (&msg, &view, 1, &err), 0);
    assert_int_equal (msg.hdr.command, ZH_BATCH);
    assert_int_equal (msg.batch_elements, 3);
    assert_string_equal (zh_command_name (ZH_BATCH), "BATCH");
}

//  The container's faults, each ERROR 400 (426 for a version), and the
//  elements before a fault stand.
static void
test_batch_container_faults_are_400_after_the_good_elements (void **state)
{
    (void)state;
    uint8_t good[128];
    size_t glen = batch_elem (good, sizeof good, ZH_SEND, DEST, "ok");
    uint8_t frame[512];
    zh_batch_iter_t it;
    zh_error_t err;
    const uint8_t *e;
    size_t len, used;

    //  No elements.
    zh_header_write (frame, ZH_BATCH, 0, 0);
    assert_int_equal (zh_batch_begin (&it, frame, ZH_HEADER_SIZE, &err), -1);
    assert_int_equal (err.code, ZH_ERR_MALFORMED);
    assert_non_null (strstr (err.reason, "no elements"));
    //  ttl or flags set; another version.
    zh_header_write (frame, ZH_BATCH, 1, 0);
    assert_int_equal (zh_batch_begin (&it, frame, 20, &err), -1);
    assert_int_equal (err.code, ZH_ERR_MALFORMED);
    zh_header_write (frame, ZH_BATCH, 0, 2);
    assert_int_equal (zh_batch_begin (&it, frame, 20, &err), -1);
    assert_int_equal (err.code, ZH_ERR_MALFORMED);
    zh_header_write (frame, ZH_BATCH, 0, 0);
    frame[2] = 2;
    assert_int_equal (zh_batch_begin (&it, frame, 20, &err), -1);
    assert_int_equal (err.code, ZH_ERR_VERSION);

    struct {
        const char *name;
        uint8_t tail[8];
        size_t tail_len;
        const char *needle;
    } faults[] = {
        {"length 0", {0, 0, 0, 0, 0x5a}, 5, "length 0"},
        {"runs past", {0, 0, 1, 0, 0x5a, 0x48}, 6, "claims 256 bytes"},
        {"left over", {0, 0}, 2, "too few for a length"},
    };
    for (size_t f = 0; f < sizeof faults / sizeof faults[0]; f++) {
        zh_header_write (frame, ZH_BATCH, 0, 0);
        used = ZH_HEADER_SIZE;
        assert_int_equal (zh_batch_put (frame, sizeof frame, &used, good, glen), 0);
        memcpy (frame + used, faults[f].tail, faults[f].tail_len);
        used += faults[f].tail_len;
        assert_int_equal (zh_batch_begin (&it, frame, used, &err), 0);
        assert_int_equal (zh_batch_next (&it, &e, &len, &err), 1); //  the good one stands
        assert_int_equal (len, glen);
        assert_int_equal (zh_batch_next (&it, &e, &len, &err), -1);
        assert_int_equal (err.code, ZH_ERR_MALFORMED);
        assert_non_null (strstr (err.reason, faults[f].needle));
        zh_frame_view_t view = {frame, used};
        zh_msg_t msg;
        assert_int_equal (zh_msg_decode (&msg, &view, 1, &err), -1);
        assert_int_equal (err.code, ZH_ERR_MALFORMED);
    }
}

//  zh_msg_decode checks each element as a lone one-frame message.
static void
test_batch_elements_are_checked_as_lone_messages (void **state)
{
    (void)state;
    uint8_t frame[512], elem[128];
    zh_error_t err;
    zh_msg_t msg;
    size_t used;
    //  A BATCH is one frame.
    zh_header_write (frame, ZH_BATCH, 0, 0);
    used = ZH_HEADER_SIZE;
    size_t n = batch_elem (elem, sizeof elem, ZH_SEND, DEST, "x");
    assert_int_equal (zh_batch_put (frame, sizeof frame, &used, elem, n), 0);
    zh_frame_view_t two[2] = {{frame, used}, {(const uint8_t *)"p", 1}};
    assert_int_equal (zh_msg_decode (&msg, two, 2, &err), -1);
    assert_int_equal (err.code, ZH_ERR_MALFORMED);
    //  A control command inside: 400; an unknown one: 404; a bad dest: 400.
    uint8_t ping[ZH_HEADER_SIZE], unknown[ZH_HEADER_SIZE];
    zh_header_write (ping, ZH_PING, 0, 0);
    zh_header_write (unknown, 0x7f, 0, 0);
    struct {
        const uint8_t *elem;
        size_t len;
        int code;
    } cases[] = {
        {ping, sizeof ping, ZH_ERR_MALFORMED},
        {unknown, sizeof unknown, ZH_ERR_UNKNOWN_COMMAND},
        {elem, batch_elem (elem, sizeof elem, ZH_SEND, "not an address", "x"), ZH_ERR_MALFORMED}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        zh_header_write (frame, ZH_BATCH, 0, 0);
        used = ZH_HEADER_SIZE;
        assert_int_equal (zh_batch_put (frame, sizeof frame, &used, cases[c].elem, cases[c].len),
                          0);
        zh_frame_view_t view = {frame, used};
        assert_int_equal (zh_msg_decode (&msg, &view, 1, &err), -1);
        assert_int_equal (err.code, cases[c].code);
    }
}

//  batch, batch_max_bytes and liveness ride in the bodies §3 names.
static void
test_batch_fields_round_trip_in_the_bodies_that_carry_them (void **state)
{
    (void)state;
    uint8_t commands[] = {ZH_ATTACH, ZH_READY, ZH_HELLO, ZH_WELCOME};
    for (size_t i = 0; i < sizeof commands; i++) {
        zh_body_t body = {.command = commands[i], .batch = true, .batch_max_bytes = 262144};
        body.present = ZH_F_BATCH | ZH_F_BATCH_MAX_BYTES;
        if (commands[i] == ZH_READY) body.proc = zh_span_of (SRC), body.present |= ZH_F_PROC;
        if (commands[i] == ZH_HELLO || commands[i] == ZH_WELCOME) {
            body.endpoint = zh_span_of ("tcp://h:1");
            body.incarnation = 7;
            body.present |= ZH_F_ENDPOINT | ZH_F_INCARNATION;
        }
        size_t size;
        uint8_t *bytes = zh_body_encode (&body, &size);
        assert_non_null (bytes);
        zh_body_t back;
        zh_error_t err;
        assert_int_equal (zh_body_decode (&back, commands[i], bytes, size, &err), 0);
        assert_true (back.present & ZH_F_BATCH);
        assert_true (back.batch);
        //  batch_max_bytes only where §3 puts it (WELCOME here).
        assert_int_equal ((back.present & ZH_F_BATCH_MAX_BYTES) != 0, commands[i] == ZH_WELCOME);
        free (bytes);
    }
    //  A batch that is not a bool is 400.
    packer_t p;
    pk_init (&p);
    msgpack_pack_map (&p.pk, 1);
    msgpack_pack_str (&p.pk, 5);
    msgpack_pack_str_body (&p.pk, "batch", 5);
    msgpack_pack_int (&p.pk, 1);
    zh_body_t body;
    zh_error_t err;
    assert_int_equal (
        zh_body_decode (&body, ZH_ATTACH, (const uint8_t *)p.sbuf.data, p.sbuf.size, &err), -1);
    assert_int_equal (err.code, ZH_ERR_MALFORMED);
    assert_non_null (strstr (err.reason, "batch must be true or false"));
    msgpack_sbuffer_destroy (&p.sbuf);
}

int
main (int argc, char *argv[])
{
    if (argc == 3 && strcmp (argv[1], "--write-corpus") == 0) return write_corpus (argv[2]);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_attach_round_trips_with_and_without_optional_fields),
        cmocka_unit_test (test_bootstrap_round_trips_every_field),
        cmocka_unit_test (test_ready_round_trips_proc_and_pid),
        cmocka_unit_test (test_hello_and_welcome_round_trip),
        cmocka_unit_test (test_ping_pong_with_no_body_empty_frame_and_empty_map),
        cmocka_unit_test (test_bye_round_trips_reason),
        cmocka_unit_test (test_error_round_trips_code_reason_dest_and_seq),
        cmocka_unit_test (test_stop_round_trips_reason_and_timeout),
        cmocka_unit_test (test_send_with_one_inline_part),
        cmocka_unit_test (test_send_with_payload_frames_only),
        cmocka_unit_test (test_send_with_inline_part_and_frames),
        cmocka_unit_test (test_send_with_inline_flag_and_nothing_after_meta_is_one_empty_part),
        cmocka_unit_test (test_send_with_empty_meta_has_null_meta),
        cmocka_unit_test (test_return_round_trips_with_meta_and_original_payload),
        cmocka_unit_test (test_return_meta_keeps_prior_failures_root_first_and_meta_byte_exact),
        cmocka_unit_test (test_return_meta_of_empty_or_broken_original_meta_is_empty_map),
        cmocka_unit_test (test_return_meta_with_more_than_max_failures_keeps_the_first),
        cmocka_unit_test (test_return_meta_of_the_wrong_shape_is_400),
        cmocka_unit_test (test_meta_lookups_read_only_the_top_level),
        cmocka_unit_test (test_command_names_and_span_helper),
        cmocka_unit_test (test_head_write_refuses_what_the_decoder_would_refuse),
        cmocka_unit_test (test_header_shorter_than_6_bytes_is_400),
        cmocka_unit_test (test_control_header_of_7_bytes_is_400),
        cmocka_unit_test (test_wrong_magic_is_400),
        cmocka_unit_test (test_version_0_and_2_is_426),
        cmocka_unit_test (test_unknown_command_is_404),
        cmocka_unit_test (test_control_with_ttl_or_flags_set_is_400),
        cmocka_unit_test (test_send_and_return_with_unknown_flag_bits_are_400),
        cmocka_unit_test (test_message_with_no_frames_is_400),
        cmocka_unit_test (test_control_command_with_extra_frames_is_400),
        cmocka_unit_test (test_send_with_more_than_max_payload_frames_is_400),
        cmocka_unit_test (test_head_lengths_running_past_the_end_are_400),
        cmocka_unit_test (test_head_with_bytes_after_meta_and_no_inline_flag_is_400),
        cmocka_unit_test (test_head_dest_or_src_length_outside_1_to_1024_is_400),
        cmocka_unit_test (test_head_meta_that_is_not_a_map_is_400),
        cmocka_unit_test (test_head_on_a_control_command_is_refused_by_head_decode),
        cmocka_unit_test (test_send_dest_that_is_not_a_port_address_is_400),
        cmocka_unit_test (test_src_that_is_not_an_actor_or_proc_address_is_400),
        cmocka_unit_test (test_return_goes_to_an_actor_or_proc_and_not_a_port),
        cmocka_unit_test (test_body_that_is_not_a_map_is_400),
        cmocka_unit_test (test_body_with_trailing_bytes_is_400),
        cmocka_unit_test (test_body_with_non_string_keys_is_400),
        cmocka_unit_test (test_body_with_a_huge_claimed_count_is_400_without_allocating_it),
        cmocka_unit_test (test_body_values_of_the_wrong_type_are_400),
        cmocka_unit_test (test_body_signed_fields_take_every_integer_kind),
        cmocka_unit_test (test_body_strings_over_the_limit_are_400),
        cmocka_unit_test (test_body_missing_required_fields_is_400),
        cmocka_unit_test (test_body_ignores_unknown_keys_and_other_commands_fields),
        cmocka_unit_test (test_body_with_a_field_given_twice_is_400),
        cmocka_unit_test (test_body_decode_refuses_commands_without_a_body),
        cmocka_unit_test (test_random_messages_round_trip),
        cmocka_unit_test (test_random_mutations_decode_or_are_refused_400_404_426),
        cmocka_unit_test (test_msgpack_guard_refuses_declared_counts_it_cannot_hold),
        cmocka_unit_test (test_head_address_kinds),
        cmocka_unit_test (test_batch_walks_its_elements_in_order_and_rebuilds_the_same_bytes),
        cmocka_unit_test (test_batch_container_faults_are_400_after_the_good_elements),
        cmocka_unit_test (test_batch_elements_are_checked_as_lone_messages),
        cmocka_unit_test (test_batch_fields_round_trip_in_the_bodies_that_carry_them),
    };
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    msg_free (&s_kept);
    return failed;
}
