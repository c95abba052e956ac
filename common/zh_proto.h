/*  zh_proto.h — the ZHP/1 frame codec (docs/protocol.md §3–§5).

    Where it sits: between the sockets and everything else. The broker
    calls zh_header_check and zh_head_decode on every message it receives
    (the hot path: no allocation, no msgpack), and zh_body_decode /
    zh_body_encode for the control commands (ATTACH, READY, HELLO, …).
    zh_msg_decode checks a whole multipart message at once; the fuzz target
    and the tests drive it, and so do clients that want one call.

    The decoder trusts no length, type or count from the wire. Each failure
    is mapped to the ERROR code of §7: 400 malformed, 404 unknown command,
    426 unsupported version (413 is decided by the caller, which knows the
    configured max_msg_bytes).

    Wire summary (all integers big-endian):
        header  = 'Z' 'H' version(1) command ttl flags            6 bytes
        control = [header][body?]  body = msgpack map, string keys
        SEND    = [head][payload frame]*
        head    = header D:u16 dest S:u16 src M:u32 meta [inline part]
*/
#ifndef ZH_PROTO_H
#define ZH_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "zh_addr.h"
#include "zh_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ZH_MAGIC0      0x5A
#define ZH_MAGIC1      0x48
#define ZH_VERSION     1
#define ZH_HEADER_SIZE 6
#define ZH_TTL_DEFAULT 64
#define ZH_FIELD_MAX   1024 //  D and S: 1..1024
#define ZH_STRING_MAX  4096 //  any string in a control body
#define ZH_MAX_FRAMES  1024 //  payload frames in one SEND we accept

//  Commands (§3)
enum {
    ZH_ATTACH = 0x01,
    ZH_BOOTSTRAP = 0x02,
    ZH_READY = 0x03,
    ZH_HELLO = 0x04,
    ZH_WELCOME = 0x05,
    ZH_SEND = 0x10,
    ZH_RETURN = 0x11,
    ZH_BATCH = 0x12, //  §14: many one-frame SENDs and RETURNs in one frame
    ZH_PING = 0x20,
    ZH_PONG = 0x21,
    ZH_BYE = 0x22,
    ZH_ERROR = 0x23,
    ZH_STOP = 0x30
};

//  Flags (§3), SEND and RETURN only
#define ZH_FLAG_RETURN_UNDELIVERABLE 0x01
#define ZH_FLAG_INLINE               0x02
#define ZH_FLAGS_KNOWN               0x03

//  Name of a command ("ATTACH", …) or NULL if unknown.
const char *zh_command_name (int command);

//  True for SEND and RETURN (commands with a head).
static inline bool
zh_command_has_head (int command)
{
    return command == ZH_SEND || command == ZH_RETURN;
}

typedef struct {
    uint8_t version;
    uint8_t command;
    uint8_t ttl;
    uint8_t flags;
} zh_header_t;

//  Check the first frame's header in the order of §3: length and magic
//  (400) → version (426) → command (404) → for a control command, the
//  frame is exactly 6 bytes with ttl and flags 0 (400); for SEND and
//  RETURN, unknown flag bits are 400. Returns 0 and fills hdr, or -1 with
//  err->code set.
int zh_header_check (zh_header_t *hdr, const uint8_t *data, size_t size, zh_error_t *err);

//  Write a 6-byte header into buf.
void zh_header_write (uint8_t *buf, uint8_t command, uint8_t ttl, uint8_t flags);

//  A decoded SEND or RETURN head. Pointers point into the frame.
typedef struct {
    zh_header_t hdr;
    const uint8_t *dest;
    uint16_t dest_len;
    const uint8_t *src;
    uint16_t src_len;
    const uint8_t *meta; //  NULL when meta_len is 0 (the empty map)
    uint32_t meta_len;
    const uint8_t *inline_part; //  valid only if hdr.flags & ZH_FLAG_INLINE
    size_t inline_len;          //  0 is one empty part when INLINE is set
    size_t ttl_offset;          //  byte offset of ttl in the frame (4)
} zh_head_t;

//  Decode a head frame (header already valid or not: it is checked too).
//  400 when a length runs past the end of the frame, D or S is outside
//  1..1024, bytes follow meta while INLINE is clear, or meta is not a map
//  (first byte not 0x80–0x8f, 0xde, 0xdf). Addresses are NOT parsed here.
//  Returns 0 or -1 with err.
int zh_head_decode (zh_head_t *head, const uint8_t *frame, size_t size, zh_error_t *err);

//  Size of a head with these fields (inline_len counts only if INLINE).
size_t zh_head_size (size_t dest_len, size_t src_len, size_t meta_len, size_t inline_len);

//  Write a head into buf (capacity size). meta may be NULL with meta_len
//  0; inline_part is written only if flags has ZH_FLAG_INLINE. Returns
//  the bytes written or -1 if it does not fit or a field is out of range.
long zh_head_write (uint8_t *buf, size_t size, uint8_t command, uint8_t ttl, uint8_t flags,
                    const char *dest, size_t dest_len, const char *src, size_t src_len,
                    const uint8_t *meta, size_t meta_len, const uint8_t *inline_part,
                    size_t inline_len);

//  True if a msgpack value starting with this byte is a map.
static inline bool
zh_msgpack_is_map (uint8_t first)
{
    return (first >= 0x80 && first <= 0x8f) || first == 0xde || first == 0xdf;
}

//  ---------------------------------------------------------------------
//  Control bodies. One struct holds the fields of every command; `present`
//  says which were in the map (ZH_F_* bits). Strings are spans into the
//  body bytes given to zh_body_decode.

enum {
    ZH_F_LABEL = 1u << 0,
    ZH_F_PID = 1u << 1,
    ZH_F_LANG = 1u << 2,
    ZH_F_PROC = 1u << 3,
    ZH_F_HOST = 1u << 4,
    ZH_F_AGENT = 1u << 5,
    ZH_F_HEARTBEAT_MS = 1u << 6,
    ZH_F_MAX_MSG_BYTES = 1u << 7,
    ZH_F_HWM = 1u << 8,
    ZH_F_INCARNATION = 1u << 9,
    ZH_F_ENDPOINT = 1u << 10,
    ZH_F_REASON = 1u << 11,
    ZH_F_CODE = 1u << 12,
    ZH_F_DEST = 1u << 13,
    ZH_F_SEQ = 1u << 14,
    ZH_F_TIMEOUT_MS = 1u << 15,
    ZH_F_BATCH = 1u << 16,           //  ATTACH, BOOTSTRAP, READY, HELLO, WELCOME
    ZH_F_BATCH_MAX_BYTES = 1u << 17, //  BOOTSTRAP, WELCOME
    ZH_F_LIVENESS = 1u << 18         //  BOOTSTRAP
};

typedef struct {
    uint8_t command;
    uint32_t present;
    zh_span_t label;          //  ATTACH
    int64_t pid;              //  ATTACH, READY
    zh_span_t lang;           //  ATTACH
    zh_span_t proc;           //  BOOTSTRAP, READY
    zh_span_t host;           //  BOOTSTRAP
    zh_span_t agent;          //  BOOTSTRAP
    uint64_t heartbeat_ms;    //  BOOTSTRAP
    uint64_t max_msg_bytes;   //  BOOTSTRAP
    uint64_t hwm;             //  BOOTSTRAP
    uint64_t incarnation;     //  BOOTSTRAP, HELLO, WELCOME
    zh_span_t endpoint;       //  HELLO, WELCOME
    zh_span_t reason;         //  BYE, ERROR, STOP
    int64_t code;             //  ERROR
    zh_span_t dest;           //  ERROR
    int64_t seq;              //  ERROR
    uint64_t timeout_ms;      //  STOP
    bool batch;               //  ATTACH, BOOTSTRAP, READY, HELLO, WELCOME (§14)
    uint64_t batch_max_bytes; //  BOOTSTRAP, WELCOME (§14)
    uint64_t liveness;        //  BOOTSTRAP: heartbeats of silence before a drop
} zh_body_t;

//  Decode the body of a control command. data may be NULL / size 0 (the
//  empty map). Unknown keys (including another command's fields) are
//  ignored; a known key given twice, a known key with the wrong type,
//  a string over ZH_STRING_MAX, a body that is not one map with string
//  keys, trailing bytes, or a missing required field (BOOTSTRAP: all;
//  READY: proc; HELLO/WELCOME: endpoint, incarnation; ERROR: code,
//  reason) is 400. Returns 0 or -1 with err.
int zh_body_decode (zh_body_t *body, uint8_t command, const uint8_t *data, size_t size,
                    zh_error_t *err);

//  Encode the fields of body marked present (and valid for its command)
//  as a msgpack map. Returns a malloc'd buffer (caller frees) and sets
//  *size, or NULL on allocation failure.
uint8_t *zh_body_encode (const zh_body_t *body, size_t *size);

//  Set a span from a NUL-terminated string (helper for building bodies).
zh_span_t zh_span_of (const char *s);

//  ---------------------------------------------------------------------
//  BATCH (§14): [header 0x12, ttl 0, flags 0][u32 L1][element 1] … [u32 Ln][element n]
//  Each element is, byte for byte, a one-frame SEND or RETURN. The walk is
//  on the broker's hot path: it allocates nothing and decodes nothing but
//  the lengths; each element is then checked as a lone message would be.

#define ZH_BATCH_LEN_SIZE 4 //  bytes of an element's length

typedef struct {
    const uint8_t *data; //  the BATCH frame
    size_t size;         //  its bytes
    size_t offset;       //  where the next element's length starts
    size_t index;        //  elements returned so far
} zh_batch_iter_t;

//  Start a walk of a BATCH frame: its header must be a BATCH with ttl and
//  flags 0 (400), of version 1 (426), and it must hold something (no
//  elements: 400). 0, or -1 with err.
int zh_batch_begin (zh_batch_iter_t *it, const uint8_t *frame, size_t size, zh_error_t *err);

//  The next element: 1 with *elem and *len set; 0 at the clean end; -1
//  with err (400) when the container is malformed: a length of 0, a length
//  that runs past the frame, or bytes left over that cannot hold a length.
//  Elements returned before a fault stand (§14).
int zh_batch_next (zh_batch_iter_t *it, const uint8_t **elem, size_t *len, zh_error_t *err);

//  Append one element (a one-frame SEND or RETURN of len bytes) to a BATCH
//  being built in buf (capacity size, used bytes *used; write the header
//  first with zh_header_write (buf, ZH_BATCH, 0, 0) and *used = 6). 0, or
//  -1 when it does not fit (nothing written).
int zh_batch_put (uint8_t *buf, size_t size, size_t *used, const uint8_t *elem, size_t len);

//  ---------------------------------------------------------------------
//  RETURN meta (§5): {"failures": [{code, reason, at}…], "dest": str,
//  "meta": map}. Root cause first.

#define ZH_FAILURES_MAX 16

typedef struct {
    zh_span_t code;
    zh_span_t reason;
    zh_span_t at;
} zh_failure_t;

typedef struct {
    zh_failure_t failures[ZH_FAILURES_MAX];
    size_t failure_count;
    zh_span_t dest;
    const uint8_t *meta; //  the original meta map, raw msgpack
    size_t meta_len;
} zh_return_meta_t;

//  Encode RETURN meta for one new failure on top of prior failures (the
//  RETURN of a message that already carried failures keeps them, root
//  first: pass them as prior, prior_count). orig_meta is the original
//  SEND's raw meta (NULL/0 means the empty map; bytes that are not
//  exactly one valid msgpack map are written as {} too, so the RETURN
//  meta always decodes). Returns malloc'd bytes
//  and *size, or NULL on allocation failure.
uint8_t *zh_return_meta_encode (const zh_failure_t *prior, size_t prior_count, const char *code,
                                const char *reason, const char *at, const char *orig_dest,
                                size_t orig_dest_len, const uint8_t *orig_meta,
                                size_t orig_meta_len, size_t *size);

//  Decode RETURN meta; 400 when it is not of the form above.
int zh_return_meta_decode (zh_return_meta_t *rm, const uint8_t *data, size_t size, zh_error_t *err);

//  ---------------------------------------------------------------------
//  The guard in front of msgpack-c (PROTO-2). msgpack-c reserves a
//  container's elements as soon as it reads the count, so a few bytes
//  declaring a huge array make it reserve gigabytes. Everything from the
//  wire that msgpack-c unpacks passes this first (the broker's agent
//  requests, libzhost's meta decoding; the Python client has its own).

//  0 if data is exactly one valid msgpack value whose every declared
//  count and length fits in the bytes present; -1 otherwise.
int zh_msgpack_check (const uint8_t *data, size_t size);

//  zh_msgpack_check, then msgpack_unpack into zone: 0 with *root set, or
//  -1 (not exactly one well-formed value, or msgpack-c refused it).
int zh_msgpack_unpack (const uint8_t *data, size_t size, msgpack_zone *zone, msgpack_object *root);

//  ---------------------------------------------------------------------
//  Address checks of a head, the one place they live (the broker, the
//  fuzz targets and libzhost call these): a SEND's dest is a port
//  address; a RETURN's dest is the original src (§5), so an actor or a
//  proc address; a src is an actor or a proc address.

//  True if an address of this kind may be the dest of this command.
static inline bool
zh_head_dest_kind_ok (uint8_t command, zh_addr_kind_t kind)
{
    return command == ZH_SEND ? kind == ZH_ADDR_PORT : kind != ZH_ADDR_PORT;
}

//  True if an address of this kind may be a src.
static inline bool
zh_head_src_kind_ok (zh_addr_kind_t kind)
{
    return kind != ZH_ADDR_PORT;
}

//  Parse and check a head's dest (or src) by the rules above. 0, or -1
//  with err (400) whose reason starts "dest: " (or "src: ").
int zh_head_parse_dest (const zh_head_t *head, zh_addr_t *dest, zh_error_t *err);
int zh_head_parse_src (const zh_head_t *head, zh_addr_t *src, zh_error_t *err);

//  Find an integer "seq" (or a string "reply") at the top level of a meta
//  map without decoding the rest. 0 if found, -1 if absent or not a map.
int zh_meta_find_seq (const uint8_t *meta, size_t size, int64_t *seq);
int zh_meta_find_reply (const uint8_t *meta, size_t size, zh_span_t *reply);

//  ---------------------------------------------------------------------
//  A whole multipart message (as a DEALER sees it: no routing id frame).

typedef struct {
    const uint8_t *data;
    size_t size;
} zh_frame_view_t;

typedef struct {
    zh_header_t hdr;
    zh_head_t head;        //  SEND and RETURN
    zh_body_t body;        //  control commands
    size_t payload_frames; //  frames after the head (SEND/RETURN)
    size_t total_size;     //  sum of all frame sizes
    size_t batch_elements; //  BATCH: elements, each checked as a lone one-frame message
} zh_msg_t;

//  Check and decode a whole message: header, layout (a control command
//  has at most one body frame, a SEND at most ZH_MAX_FRAMES payload
//  frames), head or body. Addresses in a head are parsed too: a SEND dest
//  that is not a port address, a RETURN dest that is not an actor or proc
//  address (it is the original src, §5) or a src that is not an actor or
//  proc address is 400. Size limits (413 / TOO_LARGE) are the caller's:
//  they come after the principal check in §3's order. A BATCH is one frame
//  whose container and every element (a one-frame SEND or RETURN, decoded
//  as such) must be valid; head then holds the last element's. Returns 0
//  or -1 with err.
int zh_msg_decode (zh_msg_t *msg, const zh_frame_view_t *frames, size_t count, zh_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
