/*  zh_addr.h — proc, actor and port addresses of ZHP/1 (docs/protocol.md §2).

    Where it sits: the broker parses the dest and src of every SEND with
    zh_addr_parse to find the proc id and endpoint it routes on; procs and
    clients build addresses with the format functions. Pure code: no
    sockets, no allocation in parse.

        label    = 1..63 of [a-z0-9_-], first a letter, last a letter or digit
        uid58    = base58 of a u64 (alphabet below; 0 is "1")
        id       = label | label "<" uid58 ">" | "<" uid58 ">"
        proc     = id "@" endpoint
        actor    = id "." id "@" endpoint          (actor "." proc)
        port     = id "." id ":" u64 "@" endpoint

    ADDR-1 (one spelling): a uid58 with a leading "1" (a zero digit) other
    than "1" itself, or a port with a leading zero other than "0", is
    refused. Every accepted address therefore has exactly one spelling, so
    comparing the bytes of two addresses compares the addresses, and the
    broker can use the proc id text as its routing key.

    ADDR-2 (first @): an address splits at its first '@'; everything after
    it is the endpoint (an ipc://@abstract endpoint may hold '@' itself).
*/
#ifndef ZH_ADDR_H
#define ZH_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zh_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ZH_LABEL_MAX    63 //  bytes in a label
#define ZH_UID58_MAX    11 //  base58 digits of UINT64_MAX
#define ZH_ID_MAX       (ZH_LABEL_MAX + ZH_UID58_MAX + 2)
#define ZH_ADDR_MAX     1024 //  bytes in any address (the head's D and S bound)
#define ZH_ENDPOINT_MAX 1000 //  bytes in an endpoint

extern const char zh_uid58_alphabet[59];

//  A slice of the text that was parsed (not NUL-terminated).
typedef struct {
    const char *ptr;
    size_t len;
} zh_span_t;

typedef enum { ZH_ADDR_PROC = 1, ZH_ADDR_ACTOR = 2, ZH_ADDR_PORT = 3 } zh_addr_kind_t;

//  One id: "worker", "worker<3xZ9kLmN>" or "<3xZ9kLmN>".
typedef struct {
    zh_span_t text;  //  the whole id as written
    zh_span_t label; //  empty for "<uid58>"
    bool has_uid;
    uint64_t uid;
} zh_id_t;

//  A parsed address. Spans point into the text given to zh_addr_parse,
//  which must outlive this struct.
typedef struct {
    zh_addr_kind_t kind;
    zh_id_t actor; //  ACTOR and PORT only
    zh_id_t proc;
    uint64_t port;      //  PORT only
    zh_span_t endpoint; //  everything after the first '@'
    zh_span_t text;     //  the whole address
} zh_addr_t;

//  Parse any of the three forms. Returns 0, or -1 with err (code 400)
//  saying what is wrong and at which byte offset.
int zh_addr_parse (zh_addr_t *addr, const char *text, size_t len, zh_error_t *err);

//  Parse and require one kind (e.g. a dest must be a port address).
int zh_addr_parse_kind (zh_addr_t *addr, zh_addr_kind_t kind, const char *text, size_t len,
                        zh_error_t *err);

//  Validate one label / one id / one endpoint. 0 or -1 with err.
int zh_label_check (const char *text, size_t len, zh_error_t *err);
int zh_id_parse (zh_id_t *id, const char *text, size_t len, zh_error_t *err);
int zh_endpoint_check (const char *text, size_t len, zh_error_t *err);

//  A fresh random u64 (getrandom; the uid of a new id, an incarnation).
uint64_t zh_random_u64 (void);

//  uid58: encode writes at most ZH_UID58_MAX chars plus NUL into buf
//  (size >= 12) and returns the length; decode refuses non-alphabet
//  characters, values beyond u64 and non-canonical leading "1"s.
size_t zh_uid58_encode (uint64_t value, char *buf);
int zh_uid58_decode (const char *text, size_t len, uint64_t *value, zh_error_t *err);

//  Print an id from its parts: label may be NULL (then has_uid must be
//  true). Returns the length written (NUL-terminated), or -1 if buf is too
//  small.
int zh_id_format (char *buf, size_t size, const char *label, bool has_uid, uint64_t uid);

//  Print addresses from their parts. proc_id and actor_id are id texts;
//  endpoint is an endpoint text. Returns the length (NUL-terminated) or -1
//  if buf is too small.
int zh_proc_addr_format (char *buf, size_t size, const char *proc_id, const char *endpoint);
int zh_actor_addr_format (char *buf, size_t size, const char *actor_id, const char *proc_id,
                          const char *endpoint);
int zh_port_addr_format (char *buf, size_t size, const char *actor_id, const char *proc_id,
                         uint64_t port, const char *endpoint);

//  Print a parsed address back (the same bytes it was parsed from, by
//  ADDR-1). Returns the length or -1.
int zh_addr_format (const zh_addr_t *addr, char *buf, size_t size);

//  True if both name the same proc (same proc id and endpoint).
bool zh_addr_same_proc (const zh_addr_t *a, const zh_addr_t *b);

//  Full comparison: same kind, ids, port and endpoint.
bool zh_addr_equal (const zh_addr_t *a, const zh_addr_t *b);

//  True if span equals the NUL-terminated string s.
bool zh_span_eq (zh_span_t span, const char *s);

#ifdef __cplusplus
}
#endif
#endif
