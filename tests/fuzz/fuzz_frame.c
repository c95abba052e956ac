/*  fuzz_frame.c — libFuzzer target for the ZHP/1 frame codec (zh_proto.c).

    Where it sits: stands in for the broker's receive path. The input is
    split into a multipart message, which goes through zh_msg_decode as a
    message from the wire would. Whatever decodes must re-encode to the
    same thing:
        control  zh_body_encode → zh_body_decode gives the same fields
        SEND/RETURN  zh_head_write of the decoded head gives the same bytes
        BATCH    zh_batch_put of the decoded elements gives the same bytes
    Anything refused must carry one of the codes the codec may answer
    (400, 404, 426). The raw input is also fed to every other decoder
    (RETURN meta, meta lookups, each command's body, a head's address
    rules) and to the guard in front of msgpack-c.

    Input layout: byte 0 = frame count (mod 8); then per frame a u16
    big-endian length and that many bytes, clamped to what is left.

        build: cmake -S . -B build-fuzz -DZH_FUZZ=ON -DCMAKE_C_COMPILER=clang
        run:   ./build-fuzz/fuzz_frame -max_total_time=60 corpus-copy/
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "zh_proto.h"

#define FRAMES_MAX 8

static size_t
split_frames (const uint8_t *data, size_t size, zh_frame_view_t *frames)
{
    if (size == 0) return 0;
    size_t count = data[0] % FRAMES_MAX, off = 1;
    for (size_t i = 0; i < count; i++) {
        size_t len = 0;
        if (size - off >= 2) {
            len = ((size_t)data[off] << 8) | data[off + 1];
            off += 2;
        }
        if (len > size - off) len = size - off;
        frames[i].data = data + off;
        frames[i].size = len;
        off += len;
    }
    return count;
}

static void
check (bool ok)
{
    if (!ok) abort ();
}

static bool
span_same (zh_span_t a, zh_span_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp (a.ptr, b.ptr, a.len) == 0);
}

static bool
body_same (const zh_body_t *a, const zh_body_t *b)
{
    uint32_t p = a->present;
    if (a->command != b->command || p != b->present) return false;
    return (!(p & ZH_F_LABEL) || span_same (a->label, b->label)) &&
           (!(p & ZH_F_PID) || a->pid == b->pid) &&
           (!(p & ZH_F_LANG) || span_same (a->lang, b->lang)) &&
           (!(p & ZH_F_PROC) || span_same (a->proc, b->proc)) &&
           (!(p & ZH_F_HOST) || span_same (a->host, b->host)) &&
           (!(p & ZH_F_AGENT) || span_same (a->agent, b->agent)) &&
           (!(p & ZH_F_HEARTBEAT_MS) || a->heartbeat_ms == b->heartbeat_ms) &&
           (!(p & ZH_F_MAX_MSG_BYTES) || a->max_msg_bytes == b->max_msg_bytes) &&
           (!(p & ZH_F_HWM) || a->hwm == b->hwm) &&
           (!(p & ZH_F_INCARNATION) || a->incarnation == b->incarnation) &&
           (!(p & ZH_F_ENDPOINT) || span_same (a->endpoint, b->endpoint)) &&
           (!(p & ZH_F_REASON) || span_same (a->reason, b->reason)) &&
           (!(p & ZH_F_CODE) || a->code == b->code) &&
           (!(p & ZH_F_DEST) || span_same (a->dest, b->dest)) &&
           (!(p & ZH_F_SEQ) || a->seq == b->seq) &&
           (!(p & ZH_F_TIMEOUT_MS) || a->timeout_ms == b->timeout_ms) &&
           (!(p & ZH_F_BATCH) || a->batch == b->batch) &&
           (!(p & ZH_F_BATCH_MAX_BYTES) || a->batch_max_bytes == b->batch_max_bytes) &&
           (!(p & ZH_F_LIVENESS) || a->liveness == b->liveness);
}

//  A decoded control body survives encode → decode unchanged.
static void
check_body_round_trip (const zh_body_t *body)
{
    size_t size;
    uint8_t *bytes = zh_body_encode (body, &size);
    check (bytes != NULL);
    zh_body_t again;
    check (zh_body_decode (&again, body->command, bytes, size, NULL) == 0);
    check (body_same (body, &again));
    free (bytes);
}

//  A decoded head, written again, is the same bytes.
static void
check_head_round_trip (const zh_head_t *head, const zh_frame_view_t *frame)
{
    uint8_t *buf = malloc (frame->size ? frame->size : 1);
    check (buf != NULL);
    size_t inline_len = (head->hdr.flags & ZH_FLAG_INLINE) ? head->inline_len : 0;
    check (zh_head_size (head->dest_len, head->src_len, head->meta_len, inline_len) == frame->size);
    long n =
        zh_head_write (buf, frame->size, head->hdr.command, head->hdr.ttl, head->hdr.flags,
                       (const char *)head->dest, head->dest_len, (const char *)head->src,
                       head->src_len, head->meta, head->meta_len, head->inline_part, inline_len);
    check (n >= 0 && (size_t)n == frame->size);
    check (memcmp (buf, frame->data, frame->size) == 0);
    free (buf);
}

//  A RETURN meta that decodes re-encodes (its last failure as the new
//  one) to the same failures, dest and meta bytes.
static void
check_return_meta_round_trip (const zh_return_meta_t *rm)
{
    if (rm->failure_count == 0 || rm->failure_count >= ZH_FAILURES_MAX) return;
    const zh_failure_t *last = &rm->failures[rm->failure_count - 1];
    char *texts[3];
    const zh_span_t *spans[3] = {&last->code, &last->reason, &last->at};
    for (int i = 0; i < 3; i++) {
        if (memchr (spans[i]->ptr, 0, spans[i]->len))
            return; //  the new failure is passed as C strings
    }
    for (int i = 0; i < 3; i++) {
        texts[i] = strndup (spans[i]->ptr ? spans[i]->ptr : "", spans[i]->len);
        check (texts[i] != NULL);
    }
    size_t size;
    uint8_t *bytes =
        zh_return_meta_encode (rm->failures, rm->failure_count - 1, texts[0], texts[1], texts[2],
                               rm->dest.ptr, rm->dest.len, rm->meta, rm->meta_len, &size);
    check (bytes != NULL);
    zh_return_meta_t again;
    check (zh_return_meta_decode (&again, bytes, size, NULL) == 0);
    check (again.failure_count == rm->failure_count);
    for (size_t i = 0; i < rm->failure_count; i++)
        check (span_same (again.failures[i].code, rm->failures[i].code) &&
               span_same (again.failures[i].reason, rm->failures[i].reason) &&
               span_same (again.failures[i].at, rm->failures[i].at));
    check (span_same (again.dest, rm->dest));
    check (again.meta_len == rm->meta_len && memcmp (again.meta, rm->meta, rm->meta_len) == 0);
    free (bytes);
    for (int i = 0; i < 3; i++)
        free (texts[i]);
}

//  A BATCH that decodes is rebuilt element by element with zh_batch_put to
//  the same bytes; every element is a SEND or RETURN head that decodes.
static void
check_batch_round_trip (const zh_frame_view_t *frame, size_t elements)
{
    zh_batch_iter_t it;
    check (zh_batch_begin (&it, frame->data, frame->size, NULL) == 0);
    uint8_t *buf = malloc (frame->size);
    check (buf != NULL);
    zh_header_write (buf, ZH_BATCH, 0, 0);
    size_t used = ZH_HEADER_SIZE, n = 0;
    const uint8_t *elem;
    size_t len;
    while (zh_batch_next (&it, &elem, &len, NULL) == 1) {
        zh_head_t head;
        check (zh_head_decode (&head, elem, len, NULL) == 0);
        check (zh_batch_put (buf, frame->size, &used, elem, len) == 0);
        n++;
    }
    check (n == elements && n > 0);
    check (used == frame->size && memcmp (buf, frame->data, used) == 0);
    free (buf);
}

static void
feed_raw (const uint8_t *data, size_t size)
{
    static const uint8_t commands[] = {ZH_ATTACH,  ZH_BOOTSTRAP, ZH_READY, ZH_HELLO,
                                       ZH_WELCOME, ZH_PING,      ZH_PONG,  ZH_BYE,
                                       ZH_ERROR,   ZH_STOP,      ZH_SEND};
    zh_return_meta_t rm;
    if (zh_return_meta_decode (&rm, data, size, NULL) == 0) check_return_meta_round_trip (&rm);
    //  The raw bytes as a BATCH: the walk ends, cleanly or with a 400, and
    //  never reads past the frame.
    zh_batch_iter_t it;
    zh_error_t berr;
    if (zh_batch_begin (&it, data, size, &berr) == 0) {
        const uint8_t *elem;
        size_t len;
        int rc;
        while ((rc = zh_batch_next (&it, &elem, &len, &berr)) == 1)
            check (elem >= data && elem + len <= data + size && len > 0);
        check (rc == 0 || berr.code == ZH_ERR_MALFORMED);
    }
    int64_t seq;
    zh_span_t reply;
    zh_meta_find_seq (data, size, &seq);
    zh_meta_find_reply (data, size, &reply);
    for (size_t i = 0; i < sizeof commands; i++) {
        zh_body_t body;
        if (zh_body_decode (&body, commands[i], data, size, NULL) == 0)
            check_body_round_trip (&body);
    }
    zh_head_t head;
    if (zh_head_decode (&head, data, size, NULL) == 0) {
        //  The head's address rules (the codec's, as the broker uses them).
        zh_addr_t dest, src;
        if (zh_head_parse_dest (&head, &dest, NULL) == 0)
            check (zh_head_dest_kind_ok (head.hdr.command, dest.kind));
        if (zh_head_parse_src (&head, &src, NULL) == 0) check (zh_head_src_kind_ok (src.kind));
    }
    //  The guard in front of msgpack-c: what it refuses, zh_msgpack_unpack
    //  refuses too; what it passes, msgpack-c unpacks with a zone that
    //  grows with the input only (PROTO-2), or refuses for its own nesting
    //  limit (MSGPACK_EMBED_STACK_SIZE).
    msgpack_zone zone;
    msgpack_object root;
    if (msgpack_zone_init (&zone, 256)) {
        int unpacked = zh_msgpack_unpack (data, size, &zone, &root);
        if (zh_msgpack_check (data, size) != 0) check (unpacked == -1);
        msgpack_zone_destroy (&zone);
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    zh_frame_view_t frames[FRAMES_MAX];
    size_t count = split_frames (data, size, frames);
    zh_msg_t msg;
    zh_error_t err;
    zh_error_clear (&err);
    if (zh_msg_decode (&msg, frames, count, &err) == 0) {
        if (msg.hdr.command == ZH_BATCH)
            check_batch_round_trip (&frames[0], msg.batch_elements);
        else if (zh_command_has_head (msg.hdr.command)) {
            check_head_round_trip (&msg.head, &frames[0]);
            check (msg.payload_frames == count - 1);
            int64_t seq;
            zh_meta_find_seq (msg.head.meta, msg.head.meta_len, &seq);
        } else
            check_body_round_trip (&msg.body);
    } else
        check (err.code == ZH_ERR_MALFORMED || err.code == ZH_ERR_UNKNOWN_COMMAND ||
               err.code == ZH_ERR_VERSION);
    feed_raw (data, size);
    return 0;
}
