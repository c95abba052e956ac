/*  test_libzhost.c — libzhost's per-proc caches (LZ-1) against a real
    broker, embedded on a thread of this program.

    Scenario: two procs attach over tcp, `a` (actor `sender`) and `b`
    (actor `recv`, port 1). a posts to recv:1 again and again, so both the
    post's dest check and b's dispatch answer from their caches. Between
    posts the test changes what the cache must not hide: a dest of the
    same length that is not an address (refused), b's port closed
    (NO_SUCH_PORT back to sender) and reopened (delivered), an actor that
    does not exist yet (NO_SUCH_ACTOR) and then does (delivered), and two
    dests in turn (each reaches its own actor).

    Second scenario (AC-2, PROTOCOL §8 "no declared length or count from
    the wire is trusted"): a raw client sends b SENDs whose meta declares
    far more than it holds (an array32 of 2^32 or 2^26 elements, a map32
    of 2^24 pairs, in a few bytes; under `headers`, behind a good
    `reply`), and a RETURN whose meta does the same. b survives, delivers
    each SEND with its payload and no meta (reply, seq and headers
    absent: unreadable meta is the empty map), drops the RETURN, then
    handles a well-formed SEND as usual; its VmPeak grows by less than
    64 MiB throughout (msgpack-c would reserve gigabytes).

    Third scenario (BATCH, docs/protocol.md §14, end to end): both procs
    negotiate batching with the broker (BOOTSTRAP's 256 KiB); `a` corks,
    requests an echo actor on `b` 200 times and flushes, so its requests
    leave as BATCH frames (what test_libzhost_batch shows against a fake
    broker) and the broker would refuse them whole were they wrong; b
    answers each in its handler, so a step's replies leave together too.
    Every answer comes back to its own request, in order. Then again with
    b attached under ZHOST_BATCH=0: the broker sends it lone SENDs and
    takes its lone replies, and a still batches.
*/
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "zh_proto.h"
#include "zh_test_broker.h"
#include "zh_wire.h"
#include "zhost/zhost.h"

typedef struct {
    int delivered;
    char last_payload[64];
} counter_t;

typedef struct {
    int returned;
    char code[32];
} bounces_t;

static int
s_count (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    (void)actor;
    counter_t *c = (counter_t *)arg;
    c->delivered++;
    size_t n = msg->part_count ? msg->parts[0].size : 0;
    if (n >= sizeof c->last_payload) n = sizeof c->last_payload - 1;
    memcpy (c->last_payload, n ? msg->parts[0].data : "", n);
    c->last_payload[n] = 0;
    return 0;
}

static int
s_bounced (zhost_actor_t *actor, const zhost_undeliverable_t *u, void *arg)
{
    (void)actor;
    bounces_t *b = (bounces_t *)arg;
    b->returned++;
    snprintf (b->code, sizeof b->code, "%s", u->failure_count ? u->failures[0].code : "-");
    return 0;
}

//  Step both procs until *watch reaches want (or 5 s pass).
static bool
s_pump (zhost_proc_t *a, zhost_proc_t *b, const int *watch, int want)
{
    for (int i = 0; i < 500 && *watch < want; i++) {
        zhost_proc_step (a, 5);
        zhost_proc_step (b, 5);
    }
    return *watch >= want;
}

static int
s_post (zhost_proc_t *a, zhost_actor_t *from, const char *dest, const char *text,
        zhost_error_t *err)
{
    zhost_part_t part = {text, strlen (text)};
    return zhost_proc_post (a, from, dest, &part, 1, NULL, err);
}

static void
test_caches_never_hide_a_change (void **state)
{
    (void)state;
    zh_test_broker_t t;
    zh_test_broker_new (&t, "--linger", "200ms", "--log-level", "error", NULL);
    zh_test_broker_run (&t);
    const char *frontend = t.frontend;

    zhost_error_t zerr;
    zhost_proc_t *a = zhost_proc_attach (frontend, "a", &zerr);
    assert_non_null (a);
    zhost_proc_t *b = zhost_proc_attach (frontend, "b", &zerr);
    assert_non_null (b);
    bounces_t bounces = {0};
    zhost_actor_handlers_t on_a = {.on_undeliverable = s_bounced};
    zhost_actor_t *sender = zhost_proc_spawn_actor (a, "sender", &on_a, &bounces);
    zhost_actor_t *recv = zhost_proc_spawn_actor (b, "recv", NULL, NULL);
    assert_non_null (sender);
    assert_non_null (recv);
    counter_t at_recv = {0}, at_late = {0};
    assert_int_equal (zhost_actor_open_port (recv, 1, s_count, &at_recv), 0);
    char dest[1100], bad[1100], late_dest[1100];
    assert_true (zhost_actor_port_addr (recv, 1, dest, sizeof dest) > 0);

    //  post: a → broker → b, twice (the second from both caches).
    assert_int_equal (s_post (a, sender, dest, "one", &zerr), 0);
    assert_true (s_pump (a, b, &at_recv.delivered, 1));
    assert_int_equal (s_post (a, sender, dest, "two", &zerr), 0);
    assert_true (s_pump (a, b, &at_recv.delivered, 2));
    assert_string_equal (at_recv.last_payload, "two");

    //  A dest of the same length that is not a port address is refused,
    //  though it differs from the cached one in one byte only.
    snprintf (bad, sizeof bad, "%s", dest);
    *strstr (bad, ":1@") = '@';
    assert_int_equal (strlen (bad), strlen (dest));
    assert_int_equal (s_post (a, sender, bad, "x", &zerr), -1);
    assert_int_equal (zerr.code, ZHOST_E_INVALID);
    assert_int_equal (s_post (a, sender, "", "x", &zerr), -1);
    assert_int_equal (zerr.code, ZHOST_E_INVALID);

    //  b closes port 1: the same dest now comes back NO_SUCH_PORT; reopened,
    //  it is delivered again.
    assert_int_equal (zhost_actor_close_port (recv, 1), 0);
    assert_int_equal (s_post (a, sender, dest, "closed", &zerr), 0);
    assert_true (s_pump (a, b, &bounces.returned, 1));
    assert_string_equal (bounces.code, "NO_SUCH_PORT");
    assert_int_equal (at_recv.delivered, 2);
    assert_int_equal (zhost_actor_open_port (recv, 1, s_count, &at_recv), 0);
    assert_int_equal (s_post (a, sender, dest, "three", &zerr), 0);
    assert_true (s_pump (a, b, &at_recv.delivered, 3));

    //  An actor that is not there yet: NO_SUCH_ACTOR, then, once spawned,
    //  delivered at the same dest.
    snprintf (late_dest, sizeof late_dest, "late.%s", zhost_proc_addr (b));
    char *at = strchr (late_dest, '@');
    char tail[1100];
    snprintf (tail, sizeof tail, "%s", at);
    snprintf (at, sizeof late_dest - (size_t)(at - late_dest), ":1%s", tail);
    assert_int_equal (s_post (a, sender, late_dest, "early", &zerr), 0);
    assert_true (s_pump (a, b, &bounces.returned, 2));
    assert_string_equal (bounces.code, "NO_SUCH_ACTOR");
    zhost_actor_t *late = zhost_proc_spawn_actor (b, "late", NULL, NULL);
    assert_non_null (late);
    assert_int_equal (zhost_actor_open_port (late, 1, s_count, &at_late), 0);
    assert_int_equal (s_post (a, sender, late_dest, "late", &zerr), 0);
    assert_true (s_pump (a, b, &at_late.delivered, 1));

    //  Two dests in turn: each reaches its own actor.
    for (int i = 0; i < 3; i++) {
        assert_int_equal (s_post (a, sender, dest, "to recv", &zerr), 0);
        assert_int_equal (s_post (a, sender, late_dest, "to late", &zerr), 0);
    }
    assert_true (s_pump (a, b, &at_late.delivered, 4));
    assert_true (s_pump (a, b, &at_recv.delivered, 6));
    assert_string_equal (at_recv.last_payload, "to recv");
    assert_string_equal (at_late.last_payload, "to late");
    assert_int_equal (bounces.returned, 2);

    zhost_proc_destroy (&a);
    zhost_proc_destroy (&b);
    assert_int_equal (zh_test_broker_end (&t), 0);
}

//  ---------------------------------------------------------------------
//  Meta that lies about its size

//  What the receiving handler saw of the last message.
typedef struct {
    int delivered;
    bool had_meta, had_reply, had_seq, had_headers;
    int64_t seq;
    char payload[64];
} seen_t;

static int
s_seen (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    (void)actor;
    seen_t *seen = (seen_t *)arg;
    seen->delivered++;
    seen->had_meta = msg->meta != NULL;
    seen->had_reply = msg->reply != NULL;
    seen->had_seq = msg->has_seq;
    seen->seq = msg->seq;
    seen->had_headers = msg->headers != NULL;
    size_t n = msg->part_count ? msg->parts[0].size : 0;
    if (n >= sizeof seen->payload) n = sizeof seen->payload - 1;
    memcpy (seen->payload, n ? msg->parts[0].data : "", n);
    seen->payload[n] = 0;
    return 0;
}

static int
s_returned (zhost_actor_t *actor, const zhost_undeliverable_t *u, void *arg)
{
    (void)actor, (void)u;
    (*(int *)arg)++;
    return 0;
}

//  The process's peak virtual size, in KiB (VmPeak of /proc/self/status).
static long
s_vm_peak_kib (void)
{
    FILE *f = fopen ("/proc/self/status", "r");
    assert_non_null (f);
    char line[256];
    long kib = -1;
    while (fgets (line, sizeof line, f))
        if (sscanf (line, "VmPeak: %ld kB", &kib) == 1) break;
    fclose (f);
    assert_true (kib > 0);
    return kib;
}

//  A raw client: a DEALER that ATTACHes by hand, so it can send any meta.
typedef struct {
    void *ctx;
    void *sock;
    char proc[ZH_ADDR_MAX + 1]; //  its proc address, from BOOTSTRAP
    char src[ZH_ADDR_MAX + 8];  //  raw.<proc>: the actor it sends from
} raw_t;

static void
s_raw_attach (raw_t *raw, const char *frontend)
{
    raw->ctx = zmq_ctx_new ();
    raw->sock = zmq_socket (raw->ctx, ZMQ_DEALER);
    uint8_t rid[16] = {0x7a, 'r', 'a', 'w'};
    zmq_setsockopt (raw->sock, ZMQ_ROUTING_ID, rid, sizeof rid);
    int linger = 0;
    zmq_setsockopt (raw->sock, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal (zmq_connect (raw->sock, frontend), 0);
    assert_int_equal (zh_wire_send_command (raw->sock, NULL, 0, ZH_ATTACH, NULL, 0), 0);
    zmq_pollitem_t item = {raw->sock, 0, ZMQ_POLLIN, 0};
    assert_int_equal (zmq_poll (&item, 1, 5000), 1);
    uint8_t header[ZH_HEADER_SIZE], body[2048];
    assert_int_equal (zmq_recv (raw->sock, header, sizeof header, 0), ZH_HEADER_SIZE);
    assert_int_equal (header[3], ZH_BOOTSTRAP);
    int n = zmq_recv (raw->sock, body, sizeof body, 0);
    assert_true (n > 0 && n <= (int)sizeof body);
    zh_body_t boot;
    zh_error_t err;
    assert_int_equal (zh_body_decode (&boot, ZH_BOOTSTRAP, body, (size_t)n, &err), 0);
    snprintf (raw->proc, sizeof raw->proc, "%.*s", (int)boot.proc.len, boot.proc.ptr);
    snprintf (raw->src, sizeof raw->src, "raw.%s", raw->proc);
}

//  A one-frame SEND (or RETURN) with this meta and an inline text.
static void
s_raw_send (raw_t *raw, uint8_t command, const char *dest, const uint8_t *meta, size_t meta_len,
            const char *text)
{
    uint8_t head[4096];
    long n = zh_head_write (head, sizeof head, command, ZH_TTL_DEFAULT, ZH_FLAG_INLINE, dest,
                            strlen (dest), raw->src, strlen (raw->src), meta, meta_len,
                            (const uint8_t *)text, strlen (text));
    assert_true (n > 0);
    assert_int_equal (zmq_send (raw->sock, head, (size_t)n, 0), n);
}

static void
s_raw_close (raw_t *raw)
{
    zmq_close (raw->sock);
    zmq_ctx_term (raw->ctx);
}

//  Step b until seen->delivered reaches want (or 5 s pass).
static bool
s_pump_one (zhost_proc_t *b, const int *watch, int want)
{
    for (int i = 0; i < 1000 && *watch < want; i++)
        zhost_proc_step (b, 5);
    return *watch >= want;
}

static void
test_meta_that_lies_about_its_size_is_read_as_empty (void **state)
{
    (void)state;
    zh_test_broker_t t;
    zh_test_broker_new (&t, "--linger", "200ms", "--log-level", "error", NULL);
    zh_test_broker_run (&t);
    zhost_error_t zerr;
    zhost_proc_t *b = zhost_proc_attach (t.frontend, "b", &zerr);
    assert_non_null (b);
    seen_t seen = {0};
    int returned = 0;
    zhost_actor_handlers_t on_b = {.on_undeliverable = s_returned};
    zhost_actor_t *recv = zhost_proc_spawn_actor (b, "recv", &on_b, &returned);
    assert_non_null (recv);
    assert_int_equal (zhost_actor_open_port (recv, 1, s_seen, &seen), 0);
    char dest[1100];
    assert_true (zhost_actor_port_addr (recv, 1, dest, sizeof dest) > 0);
    raw_t raw;
    s_raw_attach (&raw, t.frontend);

    //  Warm-up: every thread has allocated once before VmPeak is read.
    static const uint8_t good[] = {0x82, 0xa3, 's', 'e', 'q',  0x07, 0xa7, 'h',  'e', 'a',
                                   'd',  'e',  'r', 's', 0x81, 0xa1, 'k',  0xa1, 'v'};
    s_raw_send (&raw, ZH_SEND, dest, good, sizeof good, "warm");
    assert_true (s_pump_one (b, &seen.delivered, 1));
    assert_true (seen.had_meta && seen.had_seq && seen.had_headers);
    assert_int_equal (seen.seq, 7);
    long peak_before = s_vm_peak_kib ();

    //  {"x": array32 of 2^32 - 1 elements}, in 8 bytes.
    static const uint8_t huge_array[] = {0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff};
    //  {"headers": array32 of 2^26}: 1 GiB of msgpack objects, were it unpacked.
    static const uint8_t headers_array[] = {0x81, 0xa7, 'h',  'e',  'a',  'd',  'e',
                                            'r',  's',  0xdd, 0x04, 0x00, 0x00, 0x00};
    //  {"reply": <a good port>, "headers": map32 of 2^24 pairs}: the reply
    //  is not taken from meta that does not read as a whole.
    uint8_t reply_then_map[256];
    size_t len = 0;
    const char *reply = dest;
    reply_then_map[len++] = 0x82;
    reply_then_map[len++] = 0xa5;
    memcpy (reply_then_map + len, "reply", 5), len += 5;
    reply_then_map[len++] = 0xd9;
    reply_then_map[len++] = (uint8_t)strlen (reply);
    memcpy (reply_then_map + len, reply, strlen (reply)), len += strlen (reply);
    static const uint8_t map_tail[] = {0xa7, 'h',  'e',  'a',  'd',  'e', 'r',
                                       's',  0xdf, 0x01, 0x00, 0x00, 0x00};
    assert_true (len + sizeof map_tail <= sizeof reply_then_map);
    memcpy (reply_then_map + len, map_tail, sizeof map_tail), len += sizeof map_tail;

    struct {
        const uint8_t *meta;
        size_t len;
        const char *text;
    } lies[] = {{huge_array, sizeof huge_array, "one"},
                {headers_array, sizeof headers_array, "two"},
                {reply_then_map, len, "three"}};
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        s_raw_send (&raw, ZH_SEND, dest, lies[i].meta, lies[i].len, lies[i].text);
        assert_true (s_pump_one (b, &seen.delivered, 2 + (int)i));
        //  Delivered, payload intact, meta read as the empty map.
        assert_string_equal (seen.payload, lies[i].text);
        assert_false (seen.had_meta);
        assert_false (seen.had_reply);
        assert_false (seen.had_seq);
        assert_false (seen.had_headers);
    }

    //  A RETURN to recv whose meta lies too: not RETURN meta, dropped.
    static const uint8_t return_lie[] = {0x81, 0xa8, 'f',  'a',  'i',  'l',  'u', 'r',
                                         'e',  's',  0xdd, 0x04, 0x00, 0x00, 0x00};
    s_raw_send (&raw, ZH_RETURN, zhost_actor_addr (recv), return_lie, sizeof return_lie, "back");

    //  And b goes on as before: a well-formed SEND keeps its meta.
    s_raw_send (&raw, ZH_SEND, dest, good, sizeof good, "after");
    assert_true (s_pump_one (b, &seen.delivered, 5));
    assert_string_equal (seen.payload, "after");
    assert_true (seen.had_meta && seen.had_seq && seen.had_headers);
    assert_int_equal (returned, 0);
    assert_int_equal (zhost_proc_status (b), ZHOST_RUNNING);

    //  libzhost never writes such meta itself: headers that are not one
    //  well-formed map are left out of a post, the rest of meta stays.
    zhost_post_opts_t opts = {
        .has_seq = true, .seq = 9, .headers = huge_array, .headers_size = sizeof huge_array};
    zhost_part_t part = {"own", 3};
    assert_int_equal (zhost_proc_post (b, recv, dest, &part, 1, &opts, &zerr), 0);
    assert_true (s_pump_one (b, &seen.delivered, 6));
    assert_string_equal (seen.payload, "own");
    assert_true (seen.had_meta && seen.had_seq);
    assert_int_equal (seen.seq, 9);
    assert_false (seen.had_headers);

    long grown = s_vm_peak_kib () - peak_before;
    if (grown >= 64 * 1024) print_error ("VmPeak grew by %ld KiB\n", grown);
    assert_true (grown < 64 * 1024);

    s_raw_close (&raw);
    zhost_proc_destroy (&b);
    assert_int_equal (zh_test_broker_end (&t), 0);
}

//  ---------------------------------------------------------------------
//  Request/reply echo, batched

static int
s_echo (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    (void)arg;
    return zhost_actor_reply (actor, msg, msg->parts, msg->part_count);
}

#define ECHO_N 200

typedef struct {
    int answered;
    int order[ECHO_N]; //  which request each answer was, in arrival order
    bool wrong;        //  an answer that is not its request's text
} echoes_t;

static echoes_t s_echoes;

static void
s_on_echo (zhost_actor_t *actor, zhost_errno_t status, const zhost_msg_t *msg,
           const zhost_undeliverable_t *u, void *arg)
{
    (void)actor, (void)u;
    int i = (int)(intptr_t)arg;
    char want[16];
    int n = snprintf (want, sizeof want, "echo-%d", i);
    if (status != ZHOST_OK || msg->part_count != 1 || msg->parts[0].size != (size_t)n ||
        memcmp (msg->parts[0].data, want, (size_t)n) != 0)
        s_echoes.wrong = true;
    if (s_echoes.answered < ECHO_N) s_echoes.order[s_echoes.answered] = i;
    s_echoes.answered++;
}

static void
s_echo_round (const char *frontend, bool b_batches)
{
    zhost_error_t zerr;
    zhost_proc_t *a = zhost_proc_attach (frontend, "a", &zerr);
    assert_non_null (a);
    if (!b_batches) setenv ("ZHOST_BATCH", "0", 1);
    zhost_proc_t *b = zhost_proc_attach (frontend, "b", &zerr);
    unsetenv ("ZHOST_BATCH");
    assert_non_null (b);
    assert_int_equal (zhost_proc_batch_max_bytes (a), 262144);
    assert_int_equal (zhost_proc_batch_max_bytes (b), b_batches ? 262144 : 0);
    zhost_actor_t *client = zhost_proc_spawn_actor (a, "client", NULL, NULL);
    zhost_actor_t *echo = zhost_proc_spawn_actor (b, "echo", NULL, NULL);
    assert_int_equal (zhost_actor_open_port (echo, 1, s_echo, NULL), 0);
    char dest[1100];
    assert_true (zhost_actor_port_addr (echo, 1, dest, sizeof dest) > 0);
    memset (&s_echoes, 0, sizeof s_echoes);
    assert_int_equal (zhost_proc_cork (a), 0);
    for (int i = 0; i < ECHO_N; i++) {
        char text[16];
        zhost_part_t part = {text, (size_t)snprintf (text, sizeof text, "echo-%d", i)};
        assert_true (zhost_proc_request_async (a, client, dest, &part, 1, 5000, s_on_echo,
                                               (void *)(intptr_t)i) != 0);
    }
    assert_int_equal (zhost_proc_flush (a), 0);
    assert_true (s_pump (a, b, &s_echoes.answered, ECHO_N));
    assert_int_equal (s_echoes.answered, ECHO_N);
    assert_false (s_echoes.wrong);
    for (int i = 0; i < ECHO_N; i++)
        assert_int_equal (s_echoes.order[i], i);
    zhost_proc_destroy (&a);
    zhost_proc_destroy (&b);
}

static void
test_request_reply_echo_batched (void **state)
{
    (void)state;
    zh_test_broker_t t;
    zh_test_broker_new (&t, "--linger", "200ms", "--log-level", "error", NULL);
    zh_test_broker_run (&t);
    s_echo_round (t.frontend, true);
    s_echo_round (t.frontend, false);
    assert_int_equal (zh_test_broker_end (&t), 0);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_caches_never_hide_a_change),
        cmocka_unit_test (test_meta_that_lies_about_its_size_is_read_as_empty),
        cmocka_unit_test (test_request_reply_echo_batched),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
