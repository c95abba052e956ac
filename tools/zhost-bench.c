/*  zhost-bench — how fast is zhost-broker, beside a classic raw-libzmq forwarder?

    Where it sits: a stand-alone benchmark program (not a timed test). It
    starts each server as a child process, attaches its own clients over tcp
    on 127.0.0.1 and measures, in one invocation:

      - throughput client → server → client, 64 B and 1 KiB payloads, 1→1 and
        4→4 (four senders, each to its own receiver, at once). A zhost message
        is one SEND frame carrying the payload as its inline part (INLINE);
      - round-trip latency p50/p99: ping-pong between two clients;
      - with --callgrind: instructions per forwarded 64 B message, the server
        run under valgrind --tool=callgrind (start-up included).

    Each figure is also measured through two brokers (zhost2): broker A and
    broker B, each with its own runtime dir and loopback frontend, each
    advertising it; senders attach to A, receivers to B, and a SEND to
    `b.<proc>:1@tcp://127.0.0.1:PORT_B` goes client -> A -> peer link ->
    B -> client (docs/broker.md, Peer links). Printed beside the one-broker
    path: throughput zhost2 / zhost, rtt of one broker, of two, and what the
    second broker adds (two minus one). Its server cpu is both brokers'.

    zhost-batch: the same broker path with clients that negotiate BATCH
    (docs/protocol.md §14): a sender packs its SENDs into BATCH frames of up
    to --batch-elements, as a client library does for posts under
    cork/flush; receivers take BATCH frames and lone SENDs alike. Its rtt
    is a lone request/reply over batch-negotiated connections.
    nats: nats-server (started here on a free loopback port) with libnats
    clients: natsConnection_Publish in a loop and a flush, async
    subscriptions counting; rtt by natsConnection_Request.

    Each figure is printed beside the same figure for two baselines:

      classic  a ROUTER in its own process; a DEALER sends [dest-id][payload];
               the ROUTER receives [sender-id][dest-id][payload] and sends
               [dest-id][sender-id][payload]. Nothing else.
      bare     a ROUTER that receives [sender-id][frame], frame =
               [id length][dest-id][payload], and sends [dest-id][frame].

    Fairness: every server is its own process (fork+exec), the same transport,
    message counts and high-water marks (--hwm on every socket and on the
    broker). Every run is bounded: receivers give up after --timeout of
    silence and report what was lost; senders give up when blocked as long.
    The same program is the forwarder: zhost-bench --forwarder|--bare ENDPOINT.

    The hot path's ZHP/1 head (docs/protocol.md §4) is written by hand here: it
    is a few bytes, prefixed to each payload. Control commands go through
    zh_wire and strings are packed with zh_pack, as in every other client.
*/
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <msgpack.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include <nats/nats.h>

#include "zh_pack.h"
#include "zh_proto.h"
#include "zh_wire.h"

#if defined(__has_include)
#if __has_include(<zhost/zhost.h>)
#include <zhost/zhost.h>
#define HAVE_LIBZHOST 1
#endif
#endif

#define ID_LEN     16                      //  routing id of every client
#define PREFIX_MAX (14 + 2 * ZH_FIELD_MAX) //  a head without its inline part
#define FRAMES_MAX 4                       //  frames a client keeps per message
#define SLICE_MS   100                     //  socket timeouts: how often loops look up
#define MAX_PAIRS  4
#define MAX_REPEAT 15
#define STOP_BYTE  'Q' //  a 1-byte payload that ends an echo

//  SYS_ZHOST2: two brokers, client → broker A → peer link → broker B → client.
//  SYS_ZHOSTB: one broker, clients that negotiate BATCH (docs/protocol.md §14).
//  SYS_NATS: nats-server with libnats clients.
typedef enum {
    SYS_ZHOST,
    SYS_CLASSIC,
    SYS_BARE,
    SYS_ZHOST2,
    SYS_ZHOSTB,
    SYS_NATS,
    SYS_COUNT,
    CHILD_RAW,
    CHILD_LIB
} sys_t;
static const char *sys_names[SYS_COUNT] = {"zhost",  "classic",     "bare",
                                           "zhost2", "zhost-batch", "nats"};

static bool
sys_is_broker (sys_t s)
{
    return s == SYS_ZHOST || s == SYS_ZHOST2 || s == SYS_ZHOSTB;
}

//  ---------------------------------------------------------------------
//  Options

typedef struct {
    const char *self;    //  this executable (runs the forwarders)
    const char *broker;  //  zhost-broker, NULL when not found
    size_t count;        //  messages per sender per 64 B throughput run
    size_t count_1k;     //  messages per sender per 1 KiB throughput run
    size_t rtt_count;    //  round trips per latency run
    size_t warmup;       //  round trips not counted
    int repeat;          //  runs per figure; the median is reported
    int hwm;             //  every socket's SNDHWM/RCVHWM and the broker's --hwm
    int timeout_ms;      //  silence after which a receiver gives up
    int time_limit_ms;   //  bound on one run
    int io_threads;      //  of the clients' zmq context(s)
    bool client_ctx_own; //  --client-ctx own: one context per client
    size_t cg_count;     //  messages in a --callgrind run
    int cg_pairs;        //  sender/receiver pairs of a --callgrind run
    int cg_size;         //  payload bytes of a --callgrind run
    const char *cg_dir;  //  keep callgrind outputs here
    bool callgrind;
    bool json;
    bool bare_as_zhp; //  pad bare frames to the length of zhost's SEND frames
    bool pin;         //  servers on the last CPU, this process on the others
    bool enabled[SYS_COUNT];
    bool spawn_mode;         //  --spawn-latency: spawn/stop latency only
    bool lib_mode;           //  --lib: libzhost beside the raw zhost client only
    const char *test_proc;   //  zh-test-proc, NULL when not found
    size_t spawn_count;      //  procs spawned, stopped, then bulk-stopped
    int max_in_flight;       //  of the bulk stop_all
    size_t lib_cg_count;     //  messages of the client-side callgrind run (0: none)
    int scrape_hz;           //  --scrape-hz: brokers get --metrics, scraped this often (0: not)
    int batch_elements;      //  zhost-batch: most elements a sender puts in one BATCH frame
    const char *nats_server; //  nats-server, NULL when not found
} opts_t;

static opts_t opts = {
    .count = 1000000,
    .count_1k = 250000,
    .rtt_count = 20000,
    .warmup = 1000,
    .repeat = 3,
    .hwm = 1000000,
    .timeout_ms = 5000,
    .time_limit_ms = 120000,
    .io_threads = 1,
    .cg_count = 100000,
    .cg_pairs = 1,
    .cg_size = 64,
    .client_ctx_own = true,
    .enabled = {true, true, true, true, true, true},
    .spawn_count = 50,
    .max_in_flight = 16,
    .lib_cg_count = 20000,
    .batch_elements = 256,
};

static int64_t
now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
msleep (int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep (&ts, NULL);
}

//  ---------------------------------------------------------------------
//  ZHP/1 by hand: a SEND head prefix, the payload of a received head, and
//  control bodies (msgpack maps).

static void
put_be16 (uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static size_t
get_be16 (const uint8_t *p)
{
    return (size_t)p[0] << 8 | p[1];
}

static size_t
get_be32 (const uint8_t *p)
{
    return (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
}

//  Write a SEND head up to its inline part: header (ttl 64, INLINE),
//  dest, src, empty meta. The payload is appended after it. 0 if too long.
static size_t
head_prefix_write (uint8_t *buf, size_t cap, const char *dest, const char *src)
{
    size_t d = strlen (dest), s = strlen (src);
    if (d < 1 || d > ZH_FIELD_MAX || s < 1 || s > ZH_FIELD_MAX || 14 + d + s > cap) return 0;
    uint8_t *p = buf;
    *p++ = ZH_MAGIC0;
    *p++ = ZH_MAGIC1;
    *p++ = ZH_VERSION;
    *p++ = ZH_SEND;
    *p++ = ZH_TTL_DEFAULT;
    *p++ = ZH_FLAG_INLINE;
    put_be16 (p, d);
    memcpy (p + 2, dest, d);
    p += 2 + d;
    put_be16 (p, s);
    memcpy (p + 2, src, s);
    p += 2 + s;
    memset (p, 0, 4); //  M = 0: the empty map
    return (size_t)(p + 4 - buf);
}

//  Find the inline part of a SEND/RETURN head. -1 when a length runs past
//  the frame; 0 with *len 0 and *part NULL when INLINE is clear.
static int
head_inline_part (const uint8_t *f, size_t n, const uint8_t **part, size_t *len)
{
    if (n < 8) return -1;
    size_t off = 8 + get_be16 (f + 6);
    if (off + 2 > n) return -1;
    off += 2 + get_be16 (f + off);
    if (off + 4 > n) return -1;
    off += 4 + get_be32 (f + off);
    if (off > n) return -1;
    *part = (f[5] & ZH_FLAG_INLINE) ? f + off : NULL;
    *len = (f[5] & ZH_FLAG_INLINE) ? n - off : 0;
    return 0;
}

//  The fields of a control body the bench cares about.
typedef struct {
    char proc[128];
    char host[256];
    char reason[256];
    int64_t heartbeat_ms;
    int64_t code;
    bool batch;              //  BOOTSTRAP: the broker takes and sends BATCH (§14)
    int64_t batch_max_bytes; //  BOOTSTRAP: bound of a BATCH frame
} body_t;

static bool
key_is (const msgpack_object *k, const char *name)
{
    size_t n = strlen (name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp (k->via.str.ptr, name, n) == 0;
}

static void
copy_str (char *dst, size_t cap, const msgpack_object *o)
{
    if (o->type != MSGPACK_OBJECT_STR) return;
    size_t n = o->via.str.size < cap - 1 ? o->via.str.size : cap - 1;
    memcpy (dst, o->via.str.ptr, n);
    dst[n] = 0;
}

static int64_t
obj_int (const msgpack_object *o)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return (int64_t)o->via.u64;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return o->via.i64;
    return 0;
}

static void
body_field (body_t *b, const msgpack_object_kv *kv)
{
    if (key_is (&kv->key, "proc")) copy_str (b->proc, sizeof b->proc, &kv->val);
    if (key_is (&kv->key, "host")) copy_str (b->host, sizeof b->host, &kv->val);
    if (key_is (&kv->key, "reason")) copy_str (b->reason, sizeof b->reason, &kv->val);
    if (key_is (&kv->key, "heartbeat_ms")) b->heartbeat_ms = obj_int (&kv->val);
    if (key_is (&kv->key, "code")) b->code = obj_int (&kv->val);
    if (key_is (&kv->key, "batch"))
        b->batch = kv->val.type == MSGPACK_OBJECT_BOOLEAN && kv->val.via.boolean;
    if (key_is (&kv->key, "batch_max_bytes")) b->batch_max_bytes = obj_int (&kv->val);
}

//  Decode a control body (an empty one is the empty map). 0 or -1.
static int
body_parse (const uint8_t *data, size_t size, body_t *b)
{
    memset (b, 0, sizeof *b);
    if (size == 0) return 0;
    if (zh_msgpack_check (data, size) != 0) return -1; //  the guard before msgpack-c
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    int rc = -1;
    if (msgpack_unpack_next (&u, (const char *)data, size, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < u.data.via.map.size; i++)
            body_field (b, &u.data.via.map.ptr[i]);
        rc = 0;
    }
    msgpack_unpacked_destroy (&u);
    return rc;
}

//  ---------------------------------------------------------------------
//  A client: one DEALER, speaking zhost, classic or bare. Not thread-safe;
//  it may move to another thread at a pthread_create.

typedef struct {
    sys_t sys;
    void *sock;
    void *own_ctx; //  --client-ctx own: this client's context, else NULL
    uint8_t id[ID_LEN];
    char proc[128];             //  zhost: the assigned proc id
    char host[256];             //  zhost: the advertised endpoint
    int64_t hb_ns;              //  zhost: heartbeat interval from BOOTSTRAP
    int64_t last_ping_ns;       //  zhost: when we last sent PING
    uint8_t prefix[PREFIX_MAX]; //  zhost: head before the payload; bare: [len][dest-id]
    size_t prefix_len;
    size_t pad;                   //  bare: bytes between dest-id and payload
    const char *endpoint;         //  it connected to (the server's, outlives it)
    uint8_t peer_id[ID_LEN];      //  classic: the dest routing id
    zmq_msg_t frames[FRAMES_MAX]; //  the last message received
    int nf;
    atomic_int *abort; //  set by any thread of a run to stop it
    //  When a receiver of the run last got something (NULL outside
    //  throughput runs): a sender blocked while receivers make progress is
    //  flow control, not a hang. libzmq grants a writer credit only every
    //  hwm - 1024 messages read, so with --count near --hwm a sender can
    //  wait for seconds while the server drains the others fairly.
    atomic_llong *progress_ns;
    int64_t idle_ns; //  give up after this long blocked
    bool got_bye;
    size_t returned; //  zhost: RETURNs received
    char error[256]; //  the first failure, "" if none
    //  zhost-batch (§14): the client says batch: true in ATTACH and the
    //  broker must answer batch: true. A receiver walks the BATCH frame in
    //  frames[0] (in_batch) one element at a time; a sender packs up to
    //  opts.batch_elements SENDs, at most batch_max bytes, into bbuf.
    bool batch;
    size_t batch_max; //  BOOTSTRAP's batch_max_bytes
    bool in_batch;    //  frames[0] is a BATCH being walked with bit
    zh_batch_iter_t bit;
    uint8_t *bbuf; //  the BATCH being built (NULL: none yet)
    size_t bcap;   //  its capacity
    size_t bused;  //  its bytes so far (0: empty, not even a header)
    size_t belems; //  its elements
} client_t;

static int
client_fail (client_t *c, const char *fmt, ...)
{
    if (c->error[0] == 0) {
        va_list ap;
        va_start (ap, fmt);
        vsnprintf (c->error, sizeof c->error, fmt, ap);
        va_end (ap);
    }
    if (c->abort) atomic_store (c->abort, 1);
    return -1;
}

static bool
client_aborted (const client_t *c)
{
    return c->abort && atomic_load (c->abort);
}

static void
client_release (client_t *c)
{
    c->in_batch = false;
    for (int i = 0; i < c->nf; i++)
        zmq_msg_close (&c->frames[i]);
    c->nf = 0;
}

static void
set_int_opt (void *sock, int option, int value)
{
    zmq_setsockopt (sock, option, &value, sizeof value);
}

static client_t *
client_open (void *ctx, sys_t sys, const char *endpoint)
{
    client_t *c = calloc (1, sizeof *c);
    if (!c) return NULL;
    c->sys = sys;
    c->endpoint = endpoint;
    c->hb_ns = 1000000000;
    c->idle_ns = (int64_t)opts.timeout_ms * 1000000;
    if (getrandom (c->id, ID_LEN, 0) != ID_LEN) {
        srand48 (now_ns () ^ (long)c);
        for (int i = 0; i < ID_LEN; i++)
            c->id[i] = (uint8_t)lrand48 ();
    }
    if (c->id[0] == 0) c->id[0] = 1;
    if (opts.client_ctx_own) {
        //  As separate client programs would be: a context, and so an I/O
        //  thread, of its own.
        c->own_ctx = zmq_ctx_new ();
        zmq_ctx_set (c->own_ctx, ZMQ_IO_THREADS, opts.io_threads);
        ctx = c->own_ctx;
    }
    c->sock = zmq_socket (ctx, ZMQ_DEALER);
    zmq_setsockopt (c->sock, ZMQ_ROUTING_ID, c->id, ID_LEN);
    set_int_opt (c->sock, ZMQ_SNDHWM, opts.hwm);
    set_int_opt (c->sock, ZMQ_RCVHWM, opts.hwm);
    set_int_opt (c->sock, ZMQ_LINGER, 1000);
    set_int_opt (c->sock, ZMQ_RCVTIMEO, SLICE_MS);
    set_int_opt (c->sock, ZMQ_SNDTIMEO, SLICE_MS);
    if (zmq_connect (c->sock, endpoint) < 0) {
        fprintf (stderr, "zhost-bench: connect %s: %s\n", endpoint, zmq_strerror (errno));
        zmq_close (c->sock);
        if (c->own_ctx) zmq_ctx_term (c->own_ctx);
        free (c);
        return NULL;
    }
    return c;
}

//  Receive one whole message into c->frames (frames beyond FRAMES_MAX are
//  dropped). 1 got one, 0 nothing arrived (timeout), -1 error.
static int
client_recv_msg (client_t *c, int flags)
{
    client_release (c);
    for (;;) {
        zmq_msg_t spare, *f = c->nf < FRAMES_MAX ? &c->frames[c->nf] : &spare;
        zmq_msg_init (f);
        if (zmq_msg_recv (f, c->sock, flags) < 0) {
            int err = errno;
            zmq_msg_close (f);
            if (c->nf == 0 && (err == EAGAIN || err == EINTR)) return 0;
            return client_fail (c, "recv: %s", zmq_strerror (err));
        }
        bool more = zmq_msg_more (f);
        if (f == &spare)
            zmq_msg_close (f);
        else
            c->nf++;
        if (!more) return 1;
        flags &= ~ZMQ_DONTWAIT; //  the rest of a message is already here
    }
}

static const uint8_t *
frame_data (client_t *c, int i)
{
    return zmq_msg_data (&c->frames[i]);
}

static size_t
frame_size (client_t *c, int i)
{
    return zmq_msg_size (&c->frames[i]);
}

//  A control command: [header][body?] (zh_wire). A PING or PONG behind a
//  full queue is skipped, not waited for: the queued SENDs are signs of
//  life enough (PROTOCOL §7: any message).
static int
send_control (client_t *c, uint8_t command, const zh_body_t *body)
{
    bool beat = (command == ZH_PING || command == ZH_PONG) && !body;
    if (zh_wire_send_command (c->sock, NULL, 0, command, body, beat ? ZMQ_DONTWAIT : 0) == 0 ||
        (beat && errno == EAGAIN))
        return 0;
    return client_fail (c, "send command 0x%02x: %s", command, zmq_strerror (errno));
}

//  Note an ERROR from the broker as the client's failure.
static int
client_on_error (client_t *c)
{
    body_t b;
    if (c->nf < 2 || body_parse (frame_data (c, 1), frame_size (c, 1), &b) < 0)
        return client_fail (c, "ERROR from the broker (unreadable body)");
    return client_fail (c, "ERROR %" PRId64 " from the broker: %s", b.code, b.reason);
}

//  A zhost control command arrived. 0 to go on, -1 when the client is done.
static int
zhost_on_control (client_t *c, uint8_t command)
{
    switch (command) {
    case ZH_PING:
        return send_control (c, ZH_PONG, NULL);
    case ZH_ERROR:
        return client_on_error (c);
    case ZH_BYE:
        c->got_bye = true;
        return client_fail (c, "BYE from the broker");
    case ZH_RETURN:
        c->returned++;
        return 0;
    default: //  PONG, a repeated BOOTSTRAP
        return 0;
    }
}

//  zhost-batch: the next element of the BATCH in frames[0], dispatched as
//  if it had come alone (a RETURN is counted). 1 a payload, 0 the BATCH is
//  done, -1 a failure.
static int
batch_next_payload (client_t *c, const uint8_t **p, size_t *len)
{
    for (;;) {
        const uint8_t *e = NULL;
        size_t n = 0;
        zh_error_t err;
        int rc = zh_batch_next (&c->bit, &e, &n, &err);
        if (rc <= 0) c->in_batch = false;
        if (rc == 0) return 0;
        if (rc < 0) return client_fail (c, "zhost: bad BATCH: %s", err.reason);
        if (n < ZH_HEADER_SIZE || e[0] != ZH_MAGIC0 || e[1] != ZH_MAGIC1)
            return client_fail (c, "zhost: BATCH element %zu is not ZHP/1", c->bit.index);
        if (e[3] == ZH_RETURN) {
            c->returned++;
            continue;
        }
        if (e[3] != ZH_SEND)
            return client_fail (c, "zhost: BATCH element %zu: command 0x%02x", c->bit.index, e[3]);
        if (head_inline_part (e, n, p, len) < 0) return client_fail (c, "zhost: bad head");
        if (!*p) *p = e + n; //  INLINE clear: an empty payload (no frames in a BATCH)
        return 1;
    }
}

//  A BATCH arrived in frames[0]: start walking it (batch_next_payload).
static int
batch_start (client_t *c)
{
    zh_error_t err;
    if (!c->batch) return client_fail (c, "zhost: a BATCH on a connection that did not ask");
    if (c->nf != 1) return client_fail (c, "zhost: a BATCH of %d frames", c->nf);
    if (zh_batch_begin (&c->bit, frame_data (c, 0), frame_size (c, 0), &err) < 0)
        return client_fail (c, "zhost: bad BATCH: %s", err.reason);
    c->in_batch = true;
    return 0;
}

//  The payload of the received message. 1 a payload, 0 a control command
//  (handled), -1 a failure.
static int
client_take_payload (client_t *c, const uint8_t **p, size_t *len)
{
    const uint8_t *d = frame_data (c, 0);
    size_t n = frame_size (c, 0);
    switch (c->sys) {
    case SYS_CLASSIC:
        if (c->nf != 2) return client_fail (c, "classic: %d frames, not 2", c->nf);
        *p = frame_data (c, 1);
        *len = frame_size (c, 1);
        return 1;
    case SYS_BARE:
        if (c->nf != 1 || n < 1 || n < 1u + d[0] + c->pad)
            return client_fail (c, "bare: bad frame");
        *p = d + 1 + d[0] + c->pad;
        *len = n - 1 - d[0] - c->pad;
        return 1;
    default:
        if (n < ZH_HEADER_SIZE || d[0] != ZH_MAGIC0 || d[1] != ZH_MAGIC1)
            return client_fail (c, "zhost: not a ZHP/1 frame (%zu bytes)", n);
        if (d[3] == ZH_BATCH) return batch_start (c) < 0 ? -1 : batch_next_payload (c, p, len);
        if (d[3] != ZH_SEND) return zhost_on_control (c, d[3]);
        if (head_inline_part (d, n, p, len) < 0) return client_fail (c, "zhost: bad head");
        if (!*p && c->nf > 1) {
            *p = frame_data (c, 1);
            *len = frame_size (c, 1);
        }
        return 1;
    }
}

//  Wait one slice (or not at all with ZMQ_DONTWAIT) for a payload.
//  1 a payload (valid until the next receive), 0 none, -1 a failure.
static int
client_recv_payload (client_t *c, const uint8_t **p, size_t *len, int flags)
{
    for (;;) {
        if (c->in_batch) {
            int more = batch_next_payload (c, p, len);
            if (more != 0) return more;
        }
        int rc = client_recv_msg (c, flags);
        if (rc <= 0) return rc;
        rc = client_take_payload (c, p, len);
        if (rc != 0) return rc;
    }
}

//  Answer what is waiting without blocking (a sender's PINGs and ERRORs).
static int
client_service (client_t *c)
{
    const uint8_t *p = NULL;
    size_t len = 0;
    int rc;
    while ((rc = client_recv_payload (c, &p, &len, ZMQ_DONTWAIT)) == 1)
        ;
    return rc;
}

//  A zhost receiver sends nothing else: PING so the broker keeps it.
static int
client_keepalive (client_t *c, int64_t now)
{
    if (c->sys != SYS_ZHOST || now - c->last_ping_ns < c->hb_ns / 2) return 0;
    c->last_ping_ns = now;
    return send_control (c, ZH_PING, NULL);
}

//  Send, retrying while the socket is full; gives up after idle_ns.
static int
send_retry (client_t *c, zmq_msg_t *m, int flags)
{
    int64_t blocked_since = 0;
    while (zmq_msg_send (m, c->sock, flags) < 0) {
        if (errno != EAGAIN && errno != EINTR)
            return client_fail (c, "send: %s", zmq_strerror (errno));
        int64_t now = now_ns ();
        if (!blocked_since) blocked_since = now;
        if (c->progress_ns && atomic_load (c->progress_ns) > blocked_since)
            blocked_since = atomic_load (c->progress_ns);
        if (client_aborted (c)) return -1;
        if (now - blocked_since > c->idle_ns)
            return client_fail (c, "send blocked for %d ms", opts.timeout_ms);
        if (c->sys == SYS_ZHOST && client_service (c) < 0) return -1;
    }
    return 0;
}

static int
send_copy (client_t *c, const void *a, size_t alen, const void *b, size_t blen, int flags)
{
    zmq_msg_t m;
    zmq_msg_init_size (&m, alen + blen);
    uint8_t *d = zmq_msg_data (&m);
    if (alen) memcpy (d, a, alen);
    if (blen) memcpy (d + alen, b, blen);
    int rc = send_retry (c, &m, flags);
    if (rc < 0) zmq_msg_close (&m);
    return rc;
}

//  Send one payload to the peer set with client_set_peer.
static int
client_send_payload (client_t *c, const uint8_t *p, size_t len)
{
    if (c->sys == SYS_CLASSIC) {
        if (send_copy (c, c->peer_id, ID_LEN, NULL, 0, ZMQ_SNDMORE) < 0) return -1;
        return send_copy (c, p, len, NULL, 0, 0);
    }
    return send_copy (c, c->prefix, c->prefix_len, p, len, 0);
}

static void
free_buf (void *data, void *hint)
{
    (void)hint;
    free (data);
}

//  zhost-batch: send what is packed, as one BATCH frame that libzmq takes
//  without copying (a single element goes as the lone SEND it is).
static int
batch_flush (client_t *c)
{
    if (c->belems == 0) return 0;
    const size_t first = ZH_HEADER_SIZE + ZH_BATCH_LEN_SIZE;
    int rc;
    if (c->belems == 1)
        rc = send_copy (c, c->bbuf + first, c->bused - first, NULL, 0, 0);
    else {
        zmq_msg_t m;
        zmq_msg_init_data (&m, c->bbuf, c->bused, free_buf, NULL);
        c->bbuf = NULL; //  libzmq frees it once sent
        rc = send_retry (c, &m, 0);
        if (rc < 0) zmq_msg_close (&m);
    }
    c->bused = c->belems = 0;
    return rc;
}

//  Post one payload as a client library does between cork and flush:
//  zhost-batch packs it into the BATCH being built (sent at
//  opts.batch_elements elements, or before batch_max_bytes would be
//  passed; batch_flush sends the rest); one that cannot fit a BATCH goes
//  lone, after what is packed. Everyone else sends at once.
static int
client_post (client_t *c, const uint8_t *p, size_t len)
{
    if (!c->batch) return client_send_payload (c, p, len);
    size_t elen = c->prefix_len + len, need = ZH_BATCH_LEN_SIZE + elen;
    if (ZH_HEADER_SIZE + need > c->batch_max)
        return batch_flush (c) < 0 ? -1 : client_send_payload (c, p, len);
    if (c->belems && (c->belems >= (size_t)opts.batch_elements || c->bused + need > c->bcap) &&
        batch_flush (c) < 0)
        return -1;
    if (c->bbuf && c->bcap < ZH_HEADER_SIZE + need) {
        free (c->bbuf);
        c->bbuf = NULL;
    }
    if (!c->bbuf) {
        size_t cap = ZH_HEADER_SIZE + need * (size_t)opts.batch_elements;
        c->bcap = cap < c->batch_max ? cap : c->batch_max;
        if (!(c->bbuf = malloc (c->bcap))) return client_fail (c, "out of memory");
    }
    if (c->bused == 0) {
        zh_header_write (c->bbuf, ZH_BATCH, 0, 0);
        c->bused = ZH_HEADER_SIZE;
    }
    uint8_t *e = c->bbuf + c->bused;
    e[0] = (uint8_t)(elen >> 24), e[1] = (uint8_t)(elen >> 16), e[2] = (uint8_t)(elen >> 8);
    e[3] = (uint8_t)elen;
    memcpy (e + ZH_BATCH_LEN_SIZE, c->prefix, c->prefix_len);
    if (len) memcpy (e + ZH_BATCH_LEN_SIZE + c->prefix_len, p, len);
    c->bused += need;
    c->belems++;
    return c->belems >= (size_t)opts.batch_elements ? batch_flush (c) : 0;
}

static size_t seen_prefix[SYS_COUNT]; //  the last head/prefix length each system's clients wrote

//  The head a zhost bench client writes before its inline part: dest
//  `b.<peer proc>:1@<peer host>`, src `a.<own proc>@<own host>` (the two
//  hosts differ when the peer is attached to the other broker). Its
//  length, 0 if too long.
static size_t
zhost_prefix_write (uint8_t *buf, size_t cap, const char *peer_proc, const char *own_proc,
                    const char *peer_host, const char *own_host)
{
    char dest[600], src[600];
    snprintf (dest, sizeof dest, "b.%s:1@%s", peer_proc, peer_host);
    snprintf (src, sizeof src, "a.%s@%s", own_proc, own_host);
    return head_prefix_write (buf, cap, dest, src);
}

//  --bare-as-zhp: what zhost_prefix_write gives clients attached at the
//  bare forwarder's endpoint, with a proc id of the usual length (label
//  "bench" and an 11-character uid58, as 97.7 % of random u64s have).
static size_t
bare_pad (const client_t *c)
{
    uint8_t head[PREFIX_MAX];
    size_t len = zhost_prefix_write (head, sizeof head, "bench<3xZ9kLmNpQr>", "bench<3xZ9kLmNpQr>",
                                     c->endpoint, c->endpoint);
    return len > 1 + ID_LEN ? len - (1 + ID_LEN) : 0;
}

//  Address the messages c sends to peer (which may be c itself).
static int
client_set_peer (client_t *c, const client_t *peer)
{
    switch (c->sys) {
    case SYS_CLASSIC:
        memcpy (c->peer_id, peer->id, ID_LEN);
        return 0;
    case SYS_BARE:
        c->prefix[0] = ID_LEN;
        memcpy (c->prefix + 1, peer->id, ID_LEN);
        c->pad = opts.bare_as_zhp ? bare_pad (c) : 0;
        memset (c->prefix + 1 + ID_LEN, 0, c->pad);
        c->prefix_len = 1 + ID_LEN + c->pad;
        seen_prefix[SYS_BARE] = c->prefix_len;
        return 0;
    default:
        c->prefix_len = zhost_prefix_write (c->prefix, sizeof c->prefix, peer->proc, c->proc,
                                            peer->host, c->host);
        seen_prefix[strcmp (peer->host, c->host) ? SYS_ZHOST2 : SYS_ZHOST] = c->prefix_len;
        return c->prefix_len ? 0 : client_fail (c, "head too long");
    }
}

//  Wait up to timeout_ms for a payload. 1, or -1 on failure or timeout.
static int
client_wait_payload (client_t *c, const uint8_t **p, size_t *len, int timeout_ms)
{
    int64_t deadline = now_ns () + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int rc = client_recv_payload (c, p, len, 0);
        if (rc != 0) return rc;
        if (client_aborted (c)) return -1;
        if (now_ns () > deadline) return client_fail (c, "nothing for %d ms", timeout_ms);
    }
}

static int
zhost_send_attach (client_t *c)
{
    zh_body_t body = {.command = ZH_ATTACH,
                      .present = ZH_F_LABEL | ZH_F_LANG | ZH_F_PID,
                      .label = zh_span_of ("bench"),
                      .lang = zh_span_of ("c"),
                      .pid = getpid ()};
    if (c->batch) {
        body.present |= ZH_F_BATCH;
        body.batch = true;
    }
    return send_control (c, ZH_ATTACH, &body);
}

static int
zhost_on_bootstrap (client_t *c)
{
    body_t b;
    if (c->nf < 2 || body_parse (frame_data (c, 1), frame_size (c, 1), &b) < 0 || !b.proc[0] ||
        !b.host[0])
        return client_fail (c, "BOOTSTRAP without proc and host");
    b.proc[strcspn (b.proc, "@")] = 0; //  "id@endpoint" or the bare id: keep the id
    snprintf (c->proc, sizeof c->proc, "%s", b.proc);
    snprintf (c->host, sizeof c->host, "%s", b.host);
    if (b.heartbeat_ms > 0) c->hb_ns = b.heartbeat_ms * 1000000;
    c->last_ping_ns = now_ns ();
    if (c->batch && (!b.batch || b.batch_max_bytes <= ZH_HEADER_SIZE))
        return client_fail (c, "zhost-batch: the broker does not batch (its BOOTSTRAP has no "
                               "batch: true; a broker without docs/protocol.md §14, or "
                               "--batch-max-bytes 0)");
    c->batch_max = c->batch ? (size_t)b.batch_max_bytes : 0;
    return 0;
}

//  ATTACH → BOOTSTRAP: learn our proc id and the advertised endpoint.
static int
zhost_attach (client_t *c)
{
    if (zhost_send_attach (c) < 0) return -1;
    int64_t deadline = now_ns () + (int64_t)opts.timeout_ms * 1000000;
    while (now_ns () < deadline) {
        int rc = client_recv_msg (c, 0);
        if (rc < 0) return -1;
        if (rc == 0 || frame_size (c, 0) < ZH_HEADER_SIZE) continue;
        uint8_t command = frame_data (c, 0)[3];
        if (command == ZH_BOOTSTRAP) return zhost_on_bootstrap (c);
        if (zhost_on_control (c, command) < 0) return -1;
    }
    return client_fail (c, "no BOOTSTRAP within %d ms", opts.timeout_ms);
}

//  Make the server know us. zhost: attach. classic and bare: a message to
//  ourselves; once it is back, the forwarder has our routing id.
static int
client_register (client_t *c)
{
    if (c->sys == SYS_ZHOST) return zhost_attach (c);
    static const uint8_t empty[1];
    const uint8_t *p = NULL;
    size_t len = 0;
    client_set_peer (c, c);
    if (client_send_payload (c, empty, 0) < 0) return -1;
    return client_wait_payload (c, &p, &len, opts.timeout_ms) == 1 ? 0 : -1;
}

//  zhost: BYE, then wait for the broker's BYE (bounded by 3 heartbeats).
static void
zhost_bye (client_t *c)
{
    zh_body_t body = {
        .command = ZH_BYE, .present = ZH_F_REASON, .reason = zh_span_of ("bench done")};
    bool ok = send_control (c, ZH_BYE, &body) == 0;
    int64_t deadline = now_ns () + 3 * c->hb_ns;
    while (ok && !c->got_bye && now_ns () < deadline) {
        int rc = client_recv_msg (c, 0);
        if (rc < 0) break;
        if (rc == 0 || frame_size (c, 0) < ZH_HEADER_SIZE) continue;
        uint8_t command = frame_data (c, 0)[3];
        if (command == ZH_BYE)
            c->got_bye = true;
        else if (command == ZH_PING)
            ok = send_control (c, ZH_PONG, NULL) == 0;
    }
    if (!c->got_bye) fprintf (stderr, "zhost-bench: %s: no BYE from the broker\n", c->proc);
}

static void
client_close (client_t **c_p)
{
    client_t *c = *c_p;
    if (!c) return;
    if (c->sys == SYS_ZHOST && c->proc[0] && !c->got_bye) zhost_bye (c);
    client_release (c);
    free (c->bbuf);
    zmq_close (c->sock);
    if (c->own_ctx) zmq_ctx_term (c->own_ctx);
    free (c);
    *c_p = NULL;
}

//  ---------------------------------------------------------------------
//  Servers: the broker or a forwarder, a child process that prints
//  "frontend ENDPOINT" and "ready" on stdout. SYS_ZHOST2 is two brokers:
//  this one (A, the senders') and `b` (B, the receivers'), each with its
//  own runtime dir and loopback frontend, each advertising that frontend.
//  A dials B (and B dials A, for the echoes of the latency run) at the
//  first SEND addressed to the other's endpoint.

typedef struct _server_t server_t;
struct _server_t {
    sys_t sys;
    pid_t pid;
    int out_fd;
    pthread_t drainer;
    bool running;
    bool valgrind;
    bool spawner; //  zhost: started for the spawn/stop measurement
    char endpoint[512];
    char runtime_dir[64];
    server_t *b;             //  SYS_ZHOST2: broker B, where the receivers attach
    char metrics[80];        //  --scrape-hz: the broker's HOST:PORT of /metrics
    pthread_t scraper;       //  --scrape-hz: GETs /metrics scrape_hz times a second
    bool scraping;           //  scraper runs
    atomic_bool scrape_stop; //  tells the scraper to end
    uint64_t scrapes;        //  scrapes answered
    uint64_t scrape_bytes;   //  bytes of them
    int64_t scrape_max_ns;   //  the slowest scrape
};

//  One HTTP/1.0 GET of /metrics on s->metrics (a plain socket: the bench
//  needs no HTTP library for one request). Bytes read, or -1.
static ssize_t
scrape_once (server_t *s)
{
    char host[64];
    const char *colon = strrchr (s->metrics, ':');
    if (!colon || colon - s->metrics >= (ptrdiff_t)sizeof host) return -1;
    memcpy (host, s->metrics, (size_t)(colon - s->metrics));
    host[colon - s->metrics] = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)atoi (colon + 1))};
    if (inet_pton (AF_INET, host, &sa.sin_addr) != 1) return -1;
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct timeval tv = {2, 0};
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t total = -1;
    static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    if (connect (fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        write (fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1)) {
        char buf[16384];
        ssize_t n;
        total = 0;
        while ((n = read (fd, buf, sizeof buf)) > 0)
            total += n;
        if (n < 0) total = -1;
    }
    close (fd);
    return total;
}

static void *
scraper_main (void *arg)
{
    server_t *s = arg;
    int64_t period = 1000000000LL / opts.scrape_hz;
    int64_t next = now_ns ();
    while (!atomic_load (&s->scrape_stop)) {
        int64_t t0 = now_ns ();
        ssize_t n = scrape_once (s);
        int64_t took = now_ns () - t0;
        if (n > 0) {
            s->scrapes++;
            s->scrape_bytes += (uint64_t)n;
            if (took > s->scrape_max_ns) s->scrape_max_ns = took;
        }
        next += period;
        int64_t wait = next - now_ns ();
        if (wait > 0) msleep ((int)(wait / 1000000)); //  the rate itself, not a condition
    }
    return NULL;
}

static void *
drain_main (void *arg)
{
    server_t *s = arg;
    char buf[4096];
    while (read (s->out_fd, buf, sizeof buf) > 0)
        ;
    return NULL;
}

//  One line of the child's stdout: note the first frontend; 1 at "ready".
static int
server_line (server_t *s, const char *line)
{
    if (strncmp (line, "frontend ", 9) == 0 && !s->endpoint[0])
        snprintf (s->endpoint, sizeof s->endpoint, "%.500s", line + 9);
    if (strncmp (line, "metrics ", 8) == 0)
        snprintf (s->metrics, sizeof s->metrics, "%.70s", line + 8);
    return strcmp (line, "ready") == 0;
}

//  Read the child's stdout until "ready". 0 or -1.
static int
server_wait_ready (server_t *s, int timeout_ms)
{
    char buf[4096];
    size_t used = 0;
    int64_t deadline = now_ns () + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int left = (int)((deadline - now_ns ()) / 1000000);
        struct pollfd pfd = {s->out_fd, POLLIN, 0};
        if (left <= 0 || poll (&pfd, 1, left) <= 0) return -1;
        ssize_t n = read (s->out_fd, buf + used, sizeof buf - 1 - used);
        if (n <= 0) return -1;
        used += (size_t)n;
        buf[used] = 0;
        char *nl;
        while ((nl = strchr (buf, '\n'))) {
            *nl = 0;
            if (server_line (s, buf)) return s->endpoint[0] ? 0 : -1;
            used -= (size_t)(nl + 1 - buf);
            memmove (buf, nl + 1, used + 1);
        }
        if (used == sizeof buf - 1) used = 0; //  an absurd line: forget it
    }
}

static void
server_argv (server_t *s, const char *cg_out, char *hwm, char *cg_arg, const char **argv)
{
    int n = 0;
    if (cg_out) {
        argv[n++] = "valgrind";
        argv[n++] = "--tool=callgrind";
        argv[n++] = "-q";
        argv[n++] = "--dump-instr=no";
        argv[n++] = cg_arg;
    }
    if (sys_is_broker (s->sys)) {
        argv[n++] = opts.broker;
        argv[n++] = "--frontend";
        argv[n++] = "tcp://127.0.0.1:0";
        argv[n++] = "--runtime-dir";
        argv[n++] = s->runtime_dir;
        argv[n++] = "--log-level";
        argv[n++] = "warn";
        if (s->spawner) {
            argv[n++] = "--terminate-timeout";
            argv[n++] = "5s";
        }
        if (opts.scrape_hz) {
            argv[n++] = "--metrics";
            argv[n++] = "0";
        }
    } else {
        argv[n++] = opts.self;
        argv[n++] = s->sys == SYS_BARE ? "--bare" : "--forwarder";
        argv[n++] = "tcp://127.0.0.1:0";
    }
    argv[n++] = "--hwm";
    argv[n++] = hwm;
    argv[n] = NULL;
}

//  Let this process (and the threads it starts later) run on CPUs
//  first..first+n-1 only. 0, or -1 with errno.
static int
pin_to_cpus (long first, long n)
{
    cpu_set_t set;
    CPU_ZERO (&set);
    for (long cpu = first; cpu < first + n; cpu++)
        CPU_SET ((int)cpu, &set);
    return sched_setaffinity (0, sizeof set, &set);
}

static pid_t
spawn_child (const char **argv, int out_fd, int close_fd)
{
    pid_t pid = fork ();
    if (pid == 0) {
        dup2 (out_fd, STDOUT_FILENO);
        close (out_fd);
        close (close_fd);
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        if (opts.pin) pin_to_cpus (sysconf (_SC_NPROCESSORS_ONLN) - 1, 1);
        execvp (argv[0], (char *const *)argv);
        _exit (127);
    }
    return pid;
}

static int remove_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw);

//  Start a server (under callgrind when cg_out is set) and wait for ready.
//  spawner: the broker gets --terminate-timeout 5s (spawn/stop latency).
static int
server_start_as (server_t *s, sys_t sys, const char *cg_out, bool spawner)
{
    memset (s, 0, sizeof *s);
    s->sys = sys;
    s->spawner = spawner && sys == SYS_ZHOST;
    s->valgrind = cg_out != NULL;
    snprintf (s->runtime_dir, sizeof s->runtime_dir, "/tmp/zhost-bench-XXXXXX");
    if (sys_is_broker (sys) && !mkdtemp (s->runtime_dir)) return -1;
    char hwm[32], cg_arg[PATH_MAX + 32];
    const char *argv[24];
    snprintf (hwm, sizeof hwm, "%d", opts.hwm);
    snprintf (cg_arg, sizeof cg_arg, "--callgrind-out-file=%s", cg_out ? cg_out : "");
    server_argv (s, cg_out, hwm, cg_arg, argv);
    int fds[2];
    if (pipe2 (fds, O_CLOEXEC) < 0) return -1;
    s->pid = spawn_child (argv, fds[1], fds[0]);
    close (fds[1]);
    s->out_fd = fds[0];
    if (s->pid < 0 || server_wait_ready (s, cg_out ? 120000 : 20000) < 0) {
        fprintf (stderr, "zhost-bench: %s did not print ready\n", argv[cg_out ? 5 : 0]);
        if (s->pid > 0) kill (s->pid, SIGKILL), waitpid (s->pid, NULL, 0);
        close (s->out_fd);
        return -1;
    }
    s->running = pthread_create (&s->drainer, NULL, drain_main, s) == 0;
    if (opts.scrape_hz && s->metrics[0])
        s->scraping = pthread_create (&s->scraper, NULL, scraper_main, s) == 0;
    return 0;
}

static int server_stop (server_t *s, int timeout_ms);

//  SYS_ZHOST2: A as this server, B beside it (under callgrind too, its
//  output in cg_out with ".b" appended, when cg_out is set).
static int
server_start_pair (server_t *s, const char *cg_out)
{
    char cg_b[PATH_MAX];
    snprintf (cg_b, sizeof cg_b, "%s.b", cg_out ? cg_out : "");
    server_t *b = calloc (1, sizeof *b);
    if (!b || server_start_as (b, SYS_ZHOST, cg_out ? cg_b : NULL, false) < 0) {
        free (b);
        return -1;
    }
    if (server_start_as (s, SYS_ZHOST2, cg_out, false) < 0) {
        server_stop (b, 10000);
        free (b);
        return -1;
    }
    s->b = b;
    return 0;
}

static int nats_server_start (server_t *s);

static int
server_start (server_t *s, sys_t sys, const char *cg_out)
{
    if (sys == SYS_ZHOST2) return server_start_pair (s, cg_out);
    if (sys == SYS_NATS) return nats_server_start (s);
    return server_start_as (s, sys, cg_out, false);
}

//  The endpoint receivers attach to: B's for two brokers.
static const char *
server_rx_endpoint (const server_t *s)
{
    return s->b ? s->b->endpoint : s->endpoint;
}

//  CPU time of the server's processes (both brokers for two), or -1.
static double process_cpu_seconds (pid_t pid);
static double
server_cpu_seconds (const server_t *s)
{
    double a = process_cpu_seconds (s->pid);
    if (!s->b || a < 0) return a;
    double b = process_cpu_seconds (s->b->pid);
    return b < 0 ? -1 : a + b;
}

//  SIGTERM, wait (SIGKILL after timeout_ms), clean up. The exit status.
static int
server_stop (server_t *s, int timeout_ms)
{
    int status = -1;
    if (s->scraping) {
        atomic_store (&s->scrape_stop, true);
        pthread_join (s->scraper, NULL);
        s->scraping = false;
        fprintf (stderr,
                 "zhost-bench: %s: %" PRIu64 " scrapes of /metrics, %" PRIu64
                 " bytes each, slowest %.2f ms\n",
                 sys_names[s->sys], s->scrapes, s->scrapes ? s->scrape_bytes / s->scrapes : 0,
                 (double)s->scrape_max_ns / 1e6);
    }
    kill (s->pid, s->sys == SYS_NATS ? SIGINT : SIGTERM); //  nats-server: 0 only at SIGINT
    int64_t deadline = now_ns () + (int64_t)timeout_ms * 1000000;
    while (waitpid (s->pid, &status, WNOHANG) == 0) {
        if (now_ns () > deadline) {
            fprintf (stderr, "zhost-bench: %s ignored SIGTERM; killed\n", sys_names[s->sys]);
            kill (s->pid, SIGKILL);
            waitpid (s->pid, &status, 0);
            break;
        }
        msleep (10);
    }
    if (s->running) pthread_join (s->drainer, NULL);
    close (s->out_fd);
    if (sys_is_broker (s->sys)) nftw (s->runtime_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
        fprintf (stderr, "zhost-bench: %s ended with status 0x%x\n", sys_names[s->sys], status);
    if (s->b) {
        int b_status = server_stop (s->b, timeout_ms);
        free (s->b);
        s->b = NULL;
        if (WIFEXITED (status) && WEXITSTATUS (status) == 0) status = b_status;
    }
    return status;
}

static int
remove_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove (path);
    return 0;
}

//  ---------------------------------------------------------------------
//  Throughput: `pairs` senders, each sending `count` payloads to its own
//  receiver, all at once. Timed from the start signal to the last arrival.

typedef struct {
    size_t size;
    size_t count;
    int64_t deadline_ns;
    pthread_barrier_t start;
    atomic_int abort;
    atomic_llong progress_ns; //  when a receiver last got a payload
    uint8_t *payload;
} run_t;

typedef struct {
    run_t *run;
    client_t *client;
    size_t done;     //  sent or received
    int64_t last_ns; //  receiver: when the last payload arrived
} role_t;

typedef struct {
    size_t expected;
    size_t received;
    double seconds;
    double rate;          //  received per second
    double server_cpu_us; //  the server process's CPU time (user + sys) per message
    double client_cpu_us; //  this process's (every client thread, its I/O thread) per message
    char error[300];
} tp_result_t;

//  CPU time (user + system, all threads) a process has used, in seconds;
//  from /proc/PID/stat, clock-tick resolution. -1 when unreadable.
static double
process_cpu_seconds (pid_t pid)
{
    char path[64], buf[1024];
    snprintf (path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen (path, "r");
    if (!f) return -1;
    size_t n = fread (buf, 1, sizeof buf - 1, f);
    fclose (f);
    buf[n] = 0;
    const char *p = strrchr (buf, ')');
    unsigned long utime = 0, stime = 0;
    //  after "pid (comm)": state ppid pgrp session tty tpgid flags minflt
    //  cminflt majflt cmajflt utime stime
    if (!p ||
        sscanf (p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf (_SC_CLK_TCK);
}

static void *
sender_main (void *arg)
{
    role_t *r = arg;
    run_t *run = r->run;
    client_t *c = r->client;
    pthread_barrier_wait (&run->start);
    size_t i;
    for (i = 0; i < run->count; i++) {
        if ((i & 1023) == 0) {
            if (atomic_load (&run->abort) || now_ns () > run->deadline_ns) break;
            if (c->sys == SYS_ZHOST && client_service (c) < 0) break;
        }
        if (client_post (c, run->payload, run->size) < 0) break;
    }
    if (i == run->count) batch_flush (c);
    r->done = i;
    return NULL;
}

//  The receiver gives up after the idle timeout, the run's deadline or an abort.
static bool
receiver_gives_up (role_t *r, size_t *seen, int64_t *progress_ns)
{
    client_t *c = r->client;
    int64_t now = now_ns ();
    if (client_keepalive (c, now) < 0 || client_aborted (c)) return true;
    if (r->done != *seen) {
        *seen = r->done;
        *progress_ns = now;
    }
    if (now - *progress_ns > c->idle_ns) {
        client_fail (c, "silent for %d ms", opts.timeout_ms);
        return true;
    }
    if (now > r->run->deadline_ns) {
        client_fail (c, "time limit of %d ms", opts.time_limit_ms);
        return true;
    }
    return false;
}

static void *
receiver_main (void *arg)
{
    role_t *r = arg;
    client_t *c = r->client;
    const uint8_t *p = NULL;
    size_t len = 0, seen = 0, bad = 0;
    pthread_barrier_wait (&r->run->start);
    int64_t progress_ns = now_ns ();
    while (r->done < r->run->count) {
        int rc = client_recv_payload (c, &p, &len, 0);
        if (rc < 0) break;
        if (rc == 1) {
            r->done++;
            bad += len != r->run->size;
            if ((r->done & 255) == 0) {
                int64_t now = now_ns ();
                atomic_store (&r->run->progress_ns, now);
                client_keepalive (c, now);
            }
        } else if (receiver_gives_up (r, &seen, &progress_ns))
            break;
    }
    r->last_ns = now_ns ();
    if (bad) client_fail (c, "%zu payloads of the wrong size", bad);
    return NULL;
}

static void
close_clients (client_t **cs, int n)
{
    for (int i = 0; i < n; i++)
        client_close (&cs[i]);
}

//  Two brokers: one payload from tx to rx before the clock starts, so
//  that the peer link is up (HELLO → WELCOME) and A's pending FIFO
//  (bounded by 64 MiB) never holds a burst. 0 or -1.
static int
link_warmup (client_t *tx, client_t *rx)
{
    static const uint8_t ping[8] = "warmup";
    const uint8_t *p = NULL;
    size_t len = 0;
    if (client_send_payload (tx, ping, sizeof ping) < 0) return -1;
    return client_wait_payload (rx, &p, &len, opts.timeout_ms) == 1 ? 0 : -1;
}

//  Open and register receivers, then senders addressed to them. Two
//  brokers: receivers on B, senders on A, each pair's link warmed up.
static int
open_pairs (void *ctx, const server_t *srv, run_t *run, int pairs, client_t **tx, client_t **rx)
{
    //  clients speak ZHP/1 alike; zhost-batch's negotiate BATCH
    sys_t sys = sys_is_broker (srv->sys) ? SYS_ZHOST : srv->sys;
    bool batch = srv->sys == SYS_ZHOSTB;
    for (int i = 0; i < pairs; i++) {
        rx[i] = client_open (ctx, sys, server_rx_endpoint (srv));
        if (!rx[i]) return -1;
        rx[i]->abort = &run->abort;
        rx[i]->batch = batch;
        if (client_register (rx[i]) < 0) return -1;
    }
    for (int i = 0; i < pairs; i++) {
        tx[i] = client_open (ctx, sys, srv->endpoint);
        if (!tx[i]) return -1;
        tx[i]->abort = &run->abort;
        tx[i]->batch = batch;
        tx[i]->progress_ns = &run->progress_ns;
        if (client_register (tx[i]) < 0 || client_set_peer (tx[i], rx[i]) < 0) return -1;
        if (srv->b && link_warmup (tx[i], rx[i]) < 0) return -1;
    }
    return 0;
}

//  The first failure of any client, for the report.
static void
first_error (client_t **cs, int n, char *out, size_t cap)
{
    for (int i = 0; i < n && !out[0]; i++)
        if (cs[i] && cs[i]->error[0])
            snprintf (out, cap, "%s %d: %s", i < n / 2 ? "receiver" : "sender", i % (n / 2),
                      cs[i]->error);
}

static void
tp_collect (role_t *rxr, int pairs, int64_t t0, tp_result_t *res)
{
    int64_t last = t0;
    for (int i = 0; i < pairs; i++) {
        res->received += rxr[i].done;
        if (rxr[i].last_ns > last) last = rxr[i].last_ns;
    }
    res->seconds = (double)(last - t0) / 1e9;
    res->rate = res->seconds > 0 ? (double)res->received / res->seconds : 0;
}

static int nats_throughput_run (const server_t *srv, int pairs, size_t size, size_t count,
                                tp_result_t *res);

static int
throughput_run (void *ctx, const server_t *srv, int pairs, size_t size, size_t count,
                tp_result_t *res)
{
    if (srv->sys == SYS_NATS) return nats_throughput_run (srv, pairs, size, count, res);
    run_t run = {.size = size, .count = count};
    client_t *cs[2 * MAX_PAIRS] = {0}; //  receivers, then senders
    role_t roles[2 * MAX_PAIRS] = {0};
    pthread_t threads[2 * MAX_PAIRS];
    memset (res, 0, sizeof *res);
    res->expected = (size_t)pairs * count;
    run.payload = malloc (size ? size : 1);
    memset (run.payload, 0xA5, size);
    if (open_pairs (ctx, srv, &run, pairs, cs + pairs, cs) < 0) {
        first_error (cs, 2 * pairs, res->error, sizeof res->error);
        if (!res->error[0]) snprintf (res->error, sizeof res->error, "could not connect");
        close_clients (cs, 2 * pairs);
        free (run.payload);
        return -1;
    }
    pthread_barrier_init (&run.start, NULL, (unsigned)(2 * pairs + 1));
    run.deadline_ns = now_ns () + (int64_t)opts.time_limit_ms * 1000000;
    for (int i = 0; i < 2 * pairs; i++) {
        roles[i] = (role_t){.run = &run, .client = cs[i]};
        pthread_create (&threads[i], NULL, i < pairs ? receiver_main : sender_main, &roles[i]);
    }
    double cpu0 = server_cpu_seconds (srv), own0 = process_cpu_seconds (getpid ());
    pthread_barrier_wait (&run.start);
    int64_t t0 = now_ns ();
    for (int i = 0; i < 2 * pairs; i++)
        pthread_join (threads[i], NULL);
    tp_collect (roles, pairs, t0, res);
    double cpu1 = server_cpu_seconds (srv), own1 = process_cpu_seconds (getpid ());
    res->server_cpu_us =
        cpu0 >= 0 && cpu1 >= 0 && res->received ? (cpu1 - cpu0) * 1e6 / (double)res->received : NAN;
    res->client_cpu_us =
        own0 >= 0 && own1 >= 0 && res->received ? (own1 - own0) * 1e6 / (double)res->received : NAN;
    first_error (cs, 2 * pairs, res->error, sizeof res->error);
    close_clients (cs, 2 * pairs);
    pthread_barrier_destroy (&run.start);
    free (run.payload);
    return res->received == res->expected ? 0 : -1;
}

//  ---------------------------------------------------------------------
//  Latency: A sends a 64 B payload to B, B sends it back; A times each
//  round trip. The first `warmup` are not counted.

typedef struct {
    size_t expected;
    size_t done;
    double p50_us;
    double p99_us;
    double mean_us;
    char error[300];
} rtt_result_t;

static void *
echo_main (void *arg)
{
    role_t *r = arg;
    client_t *c = r->client;
    const uint8_t *p = NULL;
    size_t len = 0;
    int64_t progress_ns = now_ns ();
    for (;;) {
        int rc = client_recv_payload (c, &p, &len, 0);
        if (rc < 0) break;
        if (rc == 0) {
            if (client_aborted (c)) break;
            if (now_ns () - progress_ns > c->idle_ns) {
                client_fail (c, "echo: silent for %d ms", opts.timeout_ms);
                break;
            }
            continue;
        }
        if (len == 1 && p[0] == STOP_BYTE) break;
        if (client_send_payload (c, p, len) < 0) break;
        progress_ns = now_ns ();
    }
    return NULL;
}

//  One round trip of payload (carrying seq). Its time in ns, or -1.
static int64_t
round_trip (client_t *a, uint8_t *payload, size_t size, uint64_t seq)
{
    const uint8_t *p = NULL;
    size_t len = 0;
    memcpy (payload, &seq, sizeof seq);
    int64_t t0 = now_ns ();
    if (client_send_payload (a, payload, size) < 0) return -1;
    for (;;) {
        if (client_wait_payload (a, &p, &len, opts.timeout_ms) < 0) return -1;
        if (len == size && memcmp (p, &seq, sizeof seq) == 0) return now_ns () - t0;
    }
}

static int
cmp_i64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void
rtt_stats (int64_t *rtt, size_t n, rtt_result_t *res)
{
    if (n == 0) return;
    qsort (rtt, n, sizeof *rtt, cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)rtt[i];
    res->p50_us = (double)rtt[n / 2] / 1e3;
    res->p99_us = (double)rtt[n * 99 / 100] / 1e3;
    res->mean_us = sum / (double)n / 1e3;
}

static int nats_latency_run (const server_t *srv, size_t size, rtt_result_t *res);

static int
latency_run (void *ctx, const server_t *srv, size_t size, rtt_result_t *res)
{
    if (srv->sys == SYS_NATS) return nats_latency_run (srv, size, res);
    run_t run = {.size = size};
    client_t *cs[2] = {0}; //  B (echo), A
    role_t echo = {.run = &run};
    pthread_t thread;
    uint8_t payload[1024 + sizeof (uint64_t)] = {0}, stop = STOP_BYTE;
    memset (res, 0, sizeof *res);
    res->expected = opts.rtt_count;
    if (size < sizeof (uint64_t) || size > sizeof payload) return -1;
    if (open_pairs (ctx, srv, &run, 1, &cs[1], &cs[0]) < 0 || client_set_peer (cs[0], cs[1]) < 0) {
        first_error (cs, 2, res->error, sizeof res->error);
        close_clients (cs, 2);
        return -1;
    }
    echo.client = cs[0];
    int64_t *rtt = calloc (opts.rtt_count + 1, sizeof *rtt);
    pthread_create (&thread, NULL, echo_main, &echo);
    for (size_t i = 0; i < opts.warmup + opts.rtt_count; i++) {
        int64_t t = round_trip (cs[1], payload, size, i + 1);
        if (t < 0) break;
        if (i >= opts.warmup) rtt[res->done++] = t;
    }
    if (client_send_payload (cs[1], &stop, 1) < 0) atomic_store (&run.abort, 1);
    pthread_join (thread, NULL);
    rtt_stats (rtt, res->done, res);
    free (rtt);
    first_error (cs, 2, res->error, sizeof res->error);
    close_clients (cs, 2);
    return res->done == res->expected ? 0 : -1;
}

//  ---------------------------------------------------------------------
//  nats-server beside them: the server a child process on a free loopback
//  port (-a 127.0.0.1 -p PORT, no auth), its clients libnats connections
//  in this process, used as NATS clients are: natsConnection_Publish in a
//  loop (libnats buffers and its flusher thread writes), a flush at the
//  end; an async subscription per receiver counting in its callback. Each
//  client is a connection of its own, as each zhost client has a context
//  of its own. The rtt run is natsConnection_Request to a subscriber that
//  answers, both connections with SendAsap (a latency-minded client).

//  A free tcp port on 127.0.0.1 (bound, read, closed), or 0.
static int
free_loopback_port (void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;
    if (fd < 0) return 0;
    if (bind (fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname (fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs (sa.sin_port);
    close (fd);
    return port;
}

//  Does 127.0.0.1:port accept a tcp connection?
static bool
port_accepts (int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons ((uint16_t)port),
                             .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    bool ok = connect (fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close (fd);
    return ok;
}

//  Start nats-server and wait (10 s at most) until it accepts
//  connections. Its output (stdout and stderr) is drained and dropped.
static int
nats_server_start (server_t *s)
{
    memset (s, 0, sizeof *s);
    s->sys = SYS_NATS;
    int port = free_loopback_port ();
    char port_arg[16];
    snprintf (port_arg, sizeof port_arg, "%d", port);
    const char *argv[] = {opts.nats_server, "-a", "127.0.0.1", "-p", port_arg, NULL};
    int fds[2];
    if (!port || pipe2 (fds, O_CLOEXEC) < 0) return -1;
    s->pid = fork ();
    if (s->pid == 0) {
        dup2 (fds[1], STDOUT_FILENO);
        dup2 (fds[1], STDERR_FILENO);
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        if (opts.pin) pin_to_cpus (sysconf (_SC_NPROCESSORS_ONLN) - 1, 1);
        execvp (argv[0], (char *const *)argv);
        _exit (127);
    }
    close (fds[1]);
    s->out_fd = fds[0];
    s->running = s->pid > 0 && pthread_create (&s->drainer, NULL, drain_main, s) == 0;
    snprintf (s->endpoint, sizeof s->endpoint, "nats://127.0.0.1:%d", port);
    int64_t deadline = now_ns () + (int64_t)10000 * 1000000;
    while (s->pid > 0 && now_ns () < deadline) {
        if (port_accepts (port)) return 0;
        if (waitpid (s->pid, NULL, WNOHANG) != 0) break;
        msleep (20);
    }
    fprintf (stderr, "zhost-bench: %s did not accept connections on port %d within 10 s\n",
             opts.nats_server, port);
    if (s->pid > 0) kill (s->pid, SIGKILL), waitpid (s->pid, NULL, 0);
    if (s->running) pthread_join (s->drainer, NULL);
    close (s->out_fd);
    return -1;
}

//  One NATS client: its connection, and a receiver's counts.
typedef struct {
    natsConnection *nc;
    natsSubscription *sub;
    char subject[64];
    size_t size;            //  receiver: expected payload size
    atomic_size_t received; //  receiver: messages in the callback
    atomic_size_t bad;      //  receiver: of the wrong size
    atomic_llong last_ns;   //  receiver: when the last one arrived
    atomic_int async_err;   //  the error handler's last status (NATS_OK: none)
    char error[256];
} nats_client_t;

static void
nats_on_error (natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc, (void)sub;
    nats_client_t *c = closure;
    if (c) atomic_store (&c->async_err, (int)err);
}

static int
nats_fail (nats_client_t *c, const char *what, natsStatus st)
{
    if (!c->error[0]) snprintf (c->error, sizeof c->error, "%s: %s", what, natsStatus_GetText (st));
    return -1;
}

//  Connect c to url; sendasap: every publish written at once (rtt).
static int
nats_client_connect (nats_client_t *c, const char *url, bool sendasap)
{
    natsOptions *o = NULL;
    natsStatus st = natsOptions_Create (&o);
    if (st == NATS_OK) st = natsOptions_SetURL (o, url);
    if (st == NATS_OK) st = natsOptions_SetAllowReconnect (o, false);
    if (st == NATS_OK) st = natsOptions_SetTimeout (o, opts.timeout_ms);
    //  A write blocked for --timeout fails the publish (a zhost sender gives up too).
    if (st == NATS_OK) st = natsOptions_SetWriteDeadline (o, opts.timeout_ms);
    if (st == NATS_OK) st = natsOptions_SetErrorHandler (o, nats_on_error, c);
    if (st == NATS_OK && sendasap) st = natsOptions_SetSendAsap (o, true);
    if (st == NATS_OK) st = natsConnection_Connect (&c->nc, o);
    natsOptions_Destroy (o);
    return st == NATS_OK ? 0 : nats_fail (c, "connect", st);
}

static void
nats_client_close (nats_client_t *c)
{
    if (c->sub) natsSubscription_Destroy (c->sub);
    if (c->nc) natsConnection_Destroy (c->nc);
    c->sub = NULL;
    c->nc = NULL;
}

//  The receiver's callback: count, check the size, note the time.
static void
nats_on_msg (natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    nats_client_t *c = closure;
    if ((size_t)natsMsg_GetDataLength (msg) != c->size) atomic_fetch_add (&c->bad, 1);
    atomic_store (&c->last_ns, now_ns ());
    atomic_fetch_add (&c->received, 1);
    natsMsg_Destroy (msg);
}

//  Subscribe c to its subject, with the pending limits at --hwm messages
//  (as every zmq socket of the bench), and make sure the server has the
//  subscription before anyone publishes (a flush is a PING/PONG).
static int
nats_subscribe (nats_client_t *c, natsMsgHandler cb)
{
    natsStatus st = natsConnection_Subscribe (&c->sub, c->nc, c->subject, cb, c);
    int msgs = opts.hwm > 0 ? opts.hwm : -1;
    long long bytes = opts.hwm > 0 ? (long long)opts.hwm * 2048 : -1;
    if (st == NATS_OK)
        st = natsSubscription_SetPendingLimits (c->sub, msgs, bytes > INT_MAX ? -1 : (int)bytes);
    if (st == NATS_OK) st = natsConnection_FlushTimeout (c->nc, opts.timeout_ms);
    return st == NATS_OK ? 0 : nats_fail (c, "subscribe", st);
}

typedef struct {
    nats_client_t *c;
    run_t *run;
    size_t done;
} nats_role_t;

static void *
nats_sender_main (void *arg)
{
    nats_role_t *r = arg;
    run_t *run = r->run;
    pthread_barrier_wait (&run->start);
    size_t i;
    natsStatus st = NATS_OK;
    for (i = 0; i < run->count; i++) {
        if ((i & 1023) == 0 && (atomic_load (&run->abort) || now_ns () > run->deadline_ns)) break;
        st = natsConnection_Publish (r->c->nc, r->c->subject, run->payload, (int)run->size);
        if (st != NATS_OK) break;
    }
    //  What libnats still buffers goes now; a flush waits for the server's PONG.
    if (st == NATS_OK) st = natsConnection_FlushTimeout (r->c->nc, opts.timeout_ms);
    if (st != NATS_OK) nats_fail (r->c, "publish", st), atomic_store (&run->abort, 1);
    r->done = i;
    return NULL;
}

static int
nats_throughput_run (const server_t *srv, int pairs, size_t size, size_t count, tp_result_t *res)
{
    run_t run = {.size = size, .count = count};
    nats_client_t *cs = calloc (2 * (size_t)pairs, sizeof *cs); //  receivers, then senders
    nats_role_t roles[MAX_PAIRS] = {0};
    pthread_t threads[MAX_PAIRS];
    static unsigned run_id;
    memset (res, 0, sizeof *res);
    res->expected = (size_t)pairs * count;
    run.payload = malloc (size ? size : 1);
    memset (run.payload, 0xA5, size);
    int rc = 0;
    run_id++;
    for (int i = 0; i < 2 * pairs && rc == 0; i++) {
        nats_client_t *c = &cs[i];
        snprintf (c->subject, sizeof c->subject, "bench.%u.%d", run_id, i % pairs);
        c->size = size;
        rc = nats_client_connect (c, srv->endpoint, false);
        if (rc == 0 && i < pairs) rc = nats_subscribe (c, nats_on_msg);
    }
    if (rc == 0) {
        pthread_barrier_init (&run.start, NULL, (unsigned)pairs + 1);
        run.deadline_ns = now_ns () + (int64_t)opts.time_limit_ms * 1000000;
        for (int i = 0; i < pairs; i++) {
            roles[i] = (nats_role_t){.c = &cs[pairs + i], .run = &run};
            pthread_create (&threads[i], NULL, nats_sender_main, &roles[i]);
        }
        double cpu0 = server_cpu_seconds (srv), own0 = process_cpu_seconds (getpid ());
        pthread_barrier_wait (&run.start);
        int64_t t0 = now_ns ();
        for (int i = 0; i < pairs; i++)
            pthread_join (threads[i], NULL);
        //  The receivers: until all arrived, --timeout of silence, the
        //  time limit, or an abort.
        size_t seen = 0;
        int64_t progress_ns = now_ns ();
        for (;;) {
            size_t got = 0;
            for (int i = 0; i < pairs; i++)
                got += atomic_load (&cs[i].received);
            int64_t now = now_ns ();
            if (got == res->expected || atomic_load (&run.abort)) break;
            if (got != seen) seen = got, progress_ns = now;
            if (now - progress_ns > (int64_t)opts.timeout_ms * 1000000) {
                snprintf (cs[0].error, sizeof cs[0].error, "silent for %d ms", opts.timeout_ms);
                break;
            }
            if (now > run.deadline_ns) {
                snprintf (cs[0].error, sizeof cs[0].error, "time limit of %d ms",
                          opts.time_limit_ms);
                break;
            }
            msleep (1);
        }
        int64_t last = t0;
        for (int i = 0; i < pairs; i++) {
            res->received += atomic_load (&cs[i].received);
            if (atomic_load (&cs[i].last_ns) > last) last = atomic_load (&cs[i].last_ns);
        }
        res->seconds = (double)(last - t0) / 1e9;
        res->rate = res->seconds > 0 ? (double)res->received / res->seconds : 0;
        double cpu1 = server_cpu_seconds (srv), own1 = process_cpu_seconds (getpid ());
        res->server_cpu_us = cpu0 >= 0 && cpu1 >= 0 && res->received
                                 ? (cpu1 - cpu0) * 1e6 / (double)res->received
                                 : NAN;
        res->client_cpu_us = own0 >= 0 && own1 >= 0 && res->received
                                 ? (own1 - own0) * 1e6 / (double)res->received
                                 : NAN;
        pthread_barrier_destroy (&run.start);
    }
    for (int i = 0; i < 2 * pairs; i++) {
        nats_client_t *c = &cs[i];
        int64_t dropped = 0;
        if (c->sub && natsSubscription_GetDropped (c->sub, &dropped) == NATS_OK && dropped)
            snprintf (c->error, sizeof c->error, "%" PRId64 " dropped by libnats (slow consumer)",
                      dropped);
        if (atomic_load (&c->bad))
            snprintf (c->error, sizeof c->error, "%zu payloads of the wrong size",
                      atomic_load (&c->bad));
        int err = atomic_load (&c->async_err);
        if (err != NATS_OK && !c->error[0])
            snprintf (c->error, sizeof c->error, "%s", natsStatus_GetText ((natsStatus)err));
        if (c->error[0] && !res->error[0])
            snprintf (res->error, sizeof res->error, "%s %d: %s", i < pairs ? "receiver" : "sender",
                      i % pairs, c->error);
        nats_client_close (c);
    }
    free (cs);
    free (run.payload);
    return res->received == res->expected ? 0 : -1;
}

//  The answering subscriber of the rtt run: the payload back to the reply subject.
static void
nats_on_request (natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    nats_client_t *c = closure;
    natsStatus st = natsConnection_Publish (nc, natsMsg_GetReply (msg), natsMsg_GetData (msg),
                                            natsMsg_GetDataLength (msg));
    if (st != NATS_OK) atomic_store (&c->async_err, (int)st);
    natsMsg_Destroy (msg);
}

static int
nats_latency_run (const server_t *srv, size_t size, rtt_result_t *res)
{
    nats_client_t cs[2] = {0}; //  B (answers), A (asks)
    uint8_t payload[1024 + sizeof (uint64_t)] = {0};
    memset (res, 0, sizeof *res);
    res->expected = opts.rtt_count;
    if (size < sizeof (uint64_t) || size > sizeof payload) return -1;
    snprintf (cs[0].subject, sizeof cs[0].subject, "bench.rtt.%d", (int)getpid ());
    int rc = nats_client_connect (&cs[0], srv->endpoint, true);
    if (rc == 0) rc = nats_subscribe (&cs[0], nats_on_request);
    if (rc == 0) rc = nats_client_connect (&cs[1], srv->endpoint, true);
    int64_t *rtt = calloc (opts.rtt_count + 1, sizeof *rtt);
    int64_t deadline = now_ns () + (int64_t)opts.time_limit_ms * 1000000;
    for (size_t i = 0; rc == 0 && i < opts.warmup + opts.rtt_count && now_ns () < deadline; i++) {
        uint64_t seq = i + 1;
        natsMsg *reply = NULL;
        memcpy (payload, &seq, sizeof seq);
        int64_t t0 = now_ns ();
        natsStatus st = natsConnection_Request (&reply, cs[1].nc, cs[0].subject, payload, (int)size,
                                                opts.timeout_ms);
        int64_t t = now_ns () - t0;
        if (st != NATS_OK) {
            rc = nats_fail (&cs[1], "request", st);
            break;
        }
        bool ok = (size_t)natsMsg_GetDataLength (reply) == size &&
                  memcmp (natsMsg_GetData (reply), &seq, sizeof seq) == 0;
        natsMsg_Destroy (reply);
        if (!ok) {
            snprintf (cs[1].error, sizeof cs[1].error, "a reply that is not the request's");
            break;
        }
        if (i >= opts.warmup) rtt[res->done++] = t;
    }
    rtt_stats (rtt, res->done, res);
    free (rtt);
    for (int i = 0; i < 2; i++) {
        if (cs[i].error[0] && !res->error[0])
            snprintf (res->error, sizeof res->error, "%s: %s", i ? "asker" : "answerer",
                      cs[i].error);
        nats_client_close (&cs[i]);
    }
    return res->done == res->expected ? 0 : -1;
}

static bool file_exists (const char *path);

//  ---------------------------------------------------------------------
//  Spawn and stop latency: a raw zhost client on the broker's control
//  socket asks the host agent (host_agent.service:1@<endpoint>) to spawn
//  zh-test-proc, one proc at a time (answered once the proc sent READY),
//  then to stop each (answered once it exited), then, after spawning a
//  second set, to stop_all of them with max_in_flight.

typedef struct {
    bool ok;
    char status[32];   //  stop: the proc's end ("stopped")
    char code[64];     //  ok false: error.code
    char message[256]; //  ok false: error.message
    int64_t attempted; //  stop_all
    int64_t stopped;   //  stop_all
    int64_t failed;    //  stop_all
} answer_t;

typedef struct {
    size_t count;      //  procs asked for
    size_t spawned;    //  spawn answers ok
    size_t stopped;    //  stop answers ok with status "stopped"
    int64_t *spawn_ns; //  each spawn → READY
    int64_t *stop_ns;  //  each stop → exit
    double bulk_ms;    //  stop_all of the second set, NAN if not run
    size_t bulk_count; //  procs in the second set
    answer_t bulk;     //  stop_all's answer
    bool run;
    char error[300];
} spawn_result_t;

static spawn_result_t spawn_res = {.bulk_ms = NAN};

static void
answer_field (answer_t *a, const msgpack_object_kv *kv)
{
    const msgpack_object *v = &kv->val;
    if (key_is (&kv->key, "ok")) a->ok = v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean;
    if (key_is (&kv->key, "status")) copy_str (a->status, sizeof a->status, v);
    if (key_is (&kv->key, "attempted")) a->attempted = obj_int (v);
    if (key_is (&kv->key, "stopped")) a->stopped = obj_int (v);
    if (key_is (&kv->key, "failed")) a->failed = obj_int (v);
    if (key_is (&kv->key, "error") && v->type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < v->via.map.size; i++) {
            const msgpack_object_kv *e = &v->via.map.ptr[i];
            if (key_is (&e->key, "code")) copy_str (a->code, sizeof a->code, &e->val);
            if (key_is (&e->key, "message")) copy_str (a->message, sizeof a->message, &e->val);
        }
}

static int
answer_parse (const uint8_t *data, size_t size, answer_t *a)
{
    memset (a, 0, sizeof *a);
    if (zh_msgpack_check (data, size) != 0) return -1; //  the guard before msgpack-c
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    int rc = -1;
    if (msgpack_unpack_next (&u, (const char *)data, size, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < u.data.via.map.size; i++)
            answer_field (a, &u.data.via.map.ptr[i]);
        rc = 0;
    }
    msgpack_unpacked_destroy (&u);
    return rc;
}

//  Send one request (a packed msgpack map) to the host agent, meta
//  {"reply": our port 1, "seq": n}, RETURN_UNDELIVERABLE set; wait up to
//  timeout_ms for the answer at our port. 0 (ok true) or -1 (c->error).
static int
agent_call (client_t *c, const msgpack_sbuffer *req, int timeout_ms, answer_t *ans)
{
    static uint64_t seq;
    char dest[600], src[600], reply[600];
    snprintf (dest, sizeof dest, "host_agent.service:1@%s", c->host);
    snprintf (src, sizeof src, "a.%s@%s", c->proc, c->host);
    snprintf (reply, sizeof reply, "a.%s:1@%s", c->proc, c->host);
    msgpack_sbuffer meta;
    msgpack_packer pk;
    msgpack_sbuffer_init (&meta);
    msgpack_packer_init (&pk, &meta, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    zh_pack_kv_str (&pk, "reply", reply);
    zh_pack_kv_uint (&pk, "seq", ++seq);
    size_t cap = zh_head_size (strlen (dest), strlen (src), meta.size, req->size);
    uint8_t *head = malloc (cap);
    long n = head ? zh_head_write (head, cap, ZH_SEND, ZH_TTL_DEFAULT,
                                   ZH_FLAG_INLINE | ZH_FLAG_RETURN_UNDELIVERABLE, dest,
                                   strlen (dest), src, strlen (src), (const uint8_t *)meta.data,
                                   meta.size, (const uint8_t *)req->data, req->size)
                  : -1;
    msgpack_sbuffer_destroy (&meta);
    size_t returned = c->returned;
    int rc = n < 0 ? client_fail (c, "agent request does not fit a head")
                   : send_copy (c, head, (size_t)n, NULL, 0, 0);
    free (head);
    if (rc < 0) return -1;
    const uint8_t *p = NULL;
    size_t len = 0;
    int64_t deadline = now_ns () + (int64_t)timeout_ms * 1000000;
    for (;;) {
        rc = client_recv_payload (c, &p, &len, 0);
        if (rc < 0) return -1;
        if (c->returned != returned) return client_fail (c, "the agent request came back");
        if (rc == 1) break;
        if (now_ns () > deadline) return client_fail (c, "no answer within %d ms", timeout_ms);
        client_keepalive (c, now_ns ());
    }
    if (!p || answer_parse (p, len, ans) < 0) return client_fail (c, "unreadable agent answer");
    if (!ans->ok) return client_fail (c, "agent: %s: %s", ans->code, ans->message);
    return 0;
}

static void
pack_op (msgpack_sbuffer *sb, const char *op, const char *name, const char *argv0, int mif)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear (sb);
    msgpack_packer_init (&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 1 + (name != NULL) + (argv0 != NULL) + (mif > 0));
    zh_pack_kv_str (&pk, "op", op);
    if (name) zh_pack_kv_str (&pk, "name", name);
    if (argv0) {
        zh_pack_str (&pk, "argv");
        msgpack_pack_array (&pk, 1);
        zh_pack_str (&pk, argv0);
    }
    if (mif > 0) zh_pack_kv_int (&pk, "max_in_flight", mif);
}

//  Spawn `count` procs named <prefix><i>, one at a time; times into ns
//  (may be NULL). The number spawned.
static size_t
spawn_set (client_t *c, msgpack_sbuffer *sb, const char *prefix, size_t count, int64_t *ns)
{
    char name[32];
    answer_t ans;
    for (size_t i = 0; i < count; i++) {
        snprintf (name, sizeof name, "%s%zu", prefix, i);
        pack_op (sb, "spawn", name, opts.test_proc, 0);
        int64_t t0 = now_ns ();
        if (agent_call (c, sb, opts.timeout_ms, &ans) < 0) return i;
        if (ns) ns[i] = now_ns () - t0;
    }
    return count;
}

static void
spawn_measure (client_t *c, spawn_result_t *res)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    answer_t ans;
    char name[32];
    res->spawned = spawn_set (c, &sb, "s", res->count, res->spawn_ns);
    for (size_t i = 0; i < res->spawned; i++) {
        snprintf (name, sizeof name, "s%zu", i);
        pack_op (&sb, "stop", name, NULL, 0);
        int64_t t0 = now_ns ();
        if (agent_call (c, &sb, 10000 + opts.timeout_ms, &ans) < 0) break;
        res->stop_ns[res->stopped++] = now_ns () - t0;
        if (strcmp (ans.status, "stopped") != 0)
            client_fail (c, "s%zu ended %s, not stopped", i, ans.status);
    }
    if (res->stopped == res->count) {
        res->bulk_count = spawn_set (c, &sb, "b", res->count, NULL);
        pack_op (&sb, "stop_all", NULL, NULL, opts.max_in_flight);
        int64_t t0 = now_ns ();
        if (res->bulk_count == res->count && agent_call (c, &sb, 60000, &res->bulk) == 0)
            res->bulk_ms = (double)(now_ns () - t0) / 1e6;
    }
    msgpack_sbuffer_destroy (&sb);
}

static int
measure_spawn (void *ctx)
{
    spawn_result_t *res = &spawn_res;
    res->run = true;
    res->count = opts.spawn_count;
    if (!opts.test_proc || !file_exists (opts.test_proc)) {
        snprintf (res->error, sizeof res->error, "no zh-test-proc (--test-proc PATH)");
        return -1;
    }
    server_t srv;
    char control[128];
    if (server_start_as (&srv, SYS_ZHOST, NULL, true) < 0) {
        snprintf (res->error, sizeof res->error, "the broker did not start");
        return -1;
    }
    snprintf (control, sizeof control, "ipc://%s/control", srv.runtime_dir);
    res->spawn_ns = calloc (res->count, sizeof (int64_t));
    res->stop_ns = calloc (res->count, sizeof (int64_t));
    client_t *c = client_open (ctx, SYS_ZHOST, control);
    if (c && client_register (c) == 0) spawn_measure (c, res);
    if (c && c->error[0]) snprintf (res->error, sizeof res->error, "%s", c->error);
    if (!c) snprintf (res->error, sizeof res->error, "cannot connect to %s", control);
    client_close (&c);
    server_stop (&srv, 30000); //  stops whatever proc is left
    fprintf (stderr, "spawn: %zu/%zu spawned, %zu stopped, stop_all %.1f ms%s%s\n", res->spawned,
             res->count, res->stopped, res->bulk_ms, res->error[0] ? "  " : "", res->error);
    return 0;
}

//  ---------------------------------------------------------------------
//  libzhost clients: the same 64 B throughput 1→1 and ping-pong, each
//  client a libzhost proc attached to the broker's frontend, posting from
//  an actor to a port whose handler counts (or answers).

typedef struct {
    double tp[MAX_REPEAT], p50[MAX_REPEAT], p99[MAX_REPEAT];
    int n_tp, n_rtt;
    size_t lost_tp, lost_rtt;
    double tp_med, p50_med, p99_med;
    bool run;
    //  client-side instructions per message (callgrind), raw and lib
    bool cg_run;
    double cg_raw, cg_lib;
    char cg_note[300];
} lib_result_t;

static lib_result_t lib_res = {
    .tp_med = NAN, .p50_med = NAN, .p99_med = NAN, .cg_raw = NAN, .cg_lib = NAN};

#ifdef HAVE_LIBZHOST
typedef struct {
    zhost_proc_t *proc;
    zhost_actor_t *actor;
    char dest[600];  //  the peer's port 1
    size_t size;     //  expected payload size
    size_t received; //  payloads at our port
    size_t bad;      //  of the wrong size
    bool echo;       //  send each payload back to dest
    bool stop;       //  echo: the STOP_BYTE arrived
    uint64_t last;   //  the first 8 bytes of the last payload
    char error[256];
} lib_client_t;

static int
lib_fail (lib_client_t *c, const char *fmt, ...)
{
    if (c->error[0] == 0) {
        va_list ap;
        va_start (ap, fmt);
        vsnprintf (c->error, sizeof c->error, fmt, ap);
        va_end (ap);
    }
    return -1;
}

static int
lib_on_msg (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    lib_client_t *c = arg;
    const zhost_part_t *p = msg->part_count ? &msg->parts[0] : NULL;
    size_t len = p ? p->size : 0;
    if (c->echo) {
        c->received++;
        if (len == 1 && ((const uint8_t *)p->data)[0] == STOP_BYTE) {
            c->stop = true;
            return 0;
        }
        zhost_post_opts_t o = {.no_return = true};
        zhost_error_t err;
        if (zhost_proc_post (c->proc, actor, c->dest, p, p ? 1 : 0, &o, &err) < 0)
            return lib_fail (c, "echo: %s", err.message), 1;
        return 0;
    }
    c->received++;
    if (len >= sizeof c->last) memcpy (&c->last, p->data, sizeof c->last);
    c->bad += len != c->size;
    return 0;
}

//  Attach a libzhost proc with one actor (name) listening on port 1.
static lib_client_t *
lib_open (const char *endpoint, const char *name, size_t size)
{
    lib_client_t *c = calloc (1, sizeof *c);
    zhost_error_t err;
    c->size = size;
    c->proc = zhost_proc_attach (endpoint, "bench", &err);
    if (!c->proc) {
        fprintf (stderr, "zhost-bench: libzhost attach to %s: %s\n", endpoint, err.message);
        free (c);
        return NULL;
    }
    c->actor = zhost_proc_spawn_actor (c->proc, name, NULL, NULL);
    if (!c->actor || zhost_actor_open_port (c->actor, 1, lib_on_msg, c) < 0) {
        fprintf (stderr, "zhost-bench: libzhost: cannot install actor %s\n", name);
        zhost_proc_destroy (&c->proc);
        free (c);
        return NULL;
    }
    return c;
}

static void
lib_set_peer (lib_client_t *c, lib_client_t *peer)
{
    zhost_actor_port_addr (peer->actor, 1, c->dest, sizeof c->dest);
}

static void
lib_close (lib_client_t **c_p)
{
    if (!*c_p) return;
    zhost_proc_destroy (&(*c_p)->proc); //  a clean stop: BYE, the broker's BYE
    free (*c_p);
    *c_p = NULL;
}

typedef struct {
    lib_client_t *c;
    size_t count;
    const uint8_t *payload;
    pthread_barrier_t *start;
    atomic_int *abort;
    atomic_int *rx_done;
    int64_t deadline_ns;
    int64_t last_ns; //  receiver: when the last payload arrived
    size_t sent;
} lib_role_t;

//  Post, stepping the proc while its own queue is full. 0 or -1.
static int
lib_post (lib_role_t *r, const zhost_part_t *part, int64_t idle_ns)
{
    zhost_post_opts_t o = {.no_return = true};
    zhost_error_t err;
    int64_t blocked_since = 0;
    while (zhost_proc_post (r->c->proc, r->c->actor, r->c->dest, part, 1, &o, &err) < 0) {
        if (err.code != ZHOST_E_SOCKET) return lib_fail (r->c, "post: %s", err.message);
        int64_t now = now_ns ();
        if (!blocked_since) blocked_since = now;
        if (atomic_load (r->abort) || now - blocked_since > idle_ns || now > r->deadline_ns)
            return lib_fail (r->c, "post blocked: %s", err.message);
        if (zhost_proc_step (r->c->proc, SLICE_MS) < 0) return lib_fail (r->c, "proc closed");
    }
    return 0;
}

static void *
lib_sender_main (void *arg)
{
    lib_role_t *r = arg;
    zhost_part_t part = {r->payload, r->c->size};
    int64_t idle_ns = (int64_t)opts.timeout_ms * 1000000;
    pthread_barrier_wait (r->start);
    size_t i;
    for (i = 0; i < r->count; i++) {
        if ((i & 1023) == 0) {
            if (atomic_load (r->abort) || now_ns () > r->deadline_ns) break;
            if (zhost_proc_step (r->c->proc, 0) < 0) break;
        }
        if (lib_post (r, &part, idle_ns) < 0) break;
    }
    r->sent = i;
    if (i < r->count) atomic_store (r->abort, 1);
    //  What waits in the proc's own queue goes out as the loop runs.
    while (!atomic_load (r->rx_done) && !atomic_load (r->abort) && now_ns () < r->deadline_ns)
        if (zhost_proc_step (r->c->proc, SLICE_MS) < 0) break;
    return NULL;
}

static void *
lib_receiver_main (void *arg)
{
    lib_role_t *r = arg;
    lib_client_t *c = r->c;
    int64_t idle_ns = (int64_t)opts.timeout_ms * 1000000;
    pthread_barrier_wait (r->start);
    int64_t progress_ns = now_ns ();
    size_t seen = 0;
    while (c->received < r->count) {
        if (zhost_proc_step (c->proc, SLICE_MS) < 0) {
            lib_fail (c, "proc closed: %s", zhost_proc_reason (c->proc));
            break;
        }
        int64_t now = now_ns ();
        if (c->received != seen) seen = c->received, progress_ns = now;
        if (atomic_load (r->abort)) break;
        if (now - progress_ns > idle_ns || now > r->deadline_ns) {
            lib_fail (c, "silent for %d ms or over the time limit", opts.timeout_ms);
            break;
        }
    }
    r->last_ns = now_ns ();
    atomic_store (r->rx_done, 1);
    if (c->bad) lib_fail (c, "%zu payloads of the wrong size", c->bad);
    return NULL;
}

static void
lib_error (lib_client_t **cs, int n, char *out, size_t cap)
{
    for (int i = 0; i < n && !out[0]; i++)
        if (cs[i] && cs[i]->error[0]) snprintf (out, cap, "%s", cs[i]->error);
}

//  64 B (size) 1→1 with libzhost clients: count posts, timed from the
//  start to the last arrival at the receiver's handler.
static int
lib_throughput_run (const char *endpoint, size_t size, size_t count, tp_result_t *res)
{
    memset (res, 0, sizeof *res);
    res->expected = count;
    lib_client_t *cs[2] = {lib_open (endpoint, "b", size), lib_open (endpoint, "a", size)};
    if (!cs[0] || !cs[1]) {
        snprintf (res->error, sizeof res->error, "libzhost attach failed");
        lib_close (&cs[0]), lib_close (&cs[1]);
        return -1;
    }
    lib_set_peer (cs[1], cs[0]);
    uint8_t *payload = malloc (size ? size : 1);
    memset (payload, 0xA5, size);
    pthread_barrier_t start;
    atomic_int abort_flag = 0, rx_done = 0;
    pthread_barrier_init (&start, NULL, 3);
    lib_role_t roles[2];
    for (int i = 0; i < 2; i++)
        roles[i] = (lib_role_t){.c = cs[i],
                                .count = count,
                                .payload = payload,
                                .start = &start,
                                .abort = &abort_flag,
                                .rx_done = &rx_done,
                                .deadline_ns = now_ns () + (int64_t)opts.time_limit_ms * 1000000};
    pthread_t threads[2];
    pthread_create (&threads[0], NULL, lib_receiver_main, &roles[0]);
    pthread_create (&threads[1], NULL, lib_sender_main, &roles[1]);
    pthread_barrier_wait (&start);
    int64_t t0 = now_ns ();
    pthread_join (threads[0], NULL);
    pthread_join (threads[1], NULL);
    res->received = cs[0]->received;
    res->seconds = (double)(roles[0].last_ns - t0) / 1e9;
    res->rate = res->seconds > 0 ? (double)res->received / res->seconds : 0;
    lib_error (cs, 2, res->error, sizeof res->error);
    lib_close (&cs[0]), lib_close (&cs[1]);
    pthread_barrier_destroy (&start);
    free (payload);
    return res->received == res->expected ? 0 : -1;
}

static void *
lib_echo_main (void *arg)
{
    lib_role_t *r = arg;
    lib_client_t *c = r->c;
    int64_t idle_ns = (int64_t)opts.timeout_ms * 1000000, progress_ns = now_ns ();
    size_t seen = 0;
    while (!c->stop && !atomic_load (r->abort)) {
        if (zhost_proc_step (c->proc, SLICE_MS) < 0) {
            lib_fail (c, "echo: proc closed");
            break;
        }
        int64_t now = now_ns ();
        if (c->received != seen) seen = c->received, progress_ns = now;
        if (now - progress_ns > idle_ns) {
            lib_fail (c, "echo: silent for %d ms", opts.timeout_ms);
            break;
        }
    }
    return NULL;
}

//  One libzhost round trip of payload carrying seq: ns, or -1.
static int64_t
lib_round_trip (lib_role_t *r, uint8_t *payload, size_t size, uint64_t seq)
{
    lib_client_t *a = r->c;
    zhost_part_t part = {payload, size};
    memcpy (payload, &seq, sizeof seq);
    int64_t t0 = now_ns ();
    if (lib_post (r, &part, (int64_t)opts.timeout_ms * 1000000) < 0) return -1;
    int64_t deadline = t0 + (int64_t)opts.timeout_ms * 1000000;
    while (a->last != seq) {
        if (zhost_proc_step (a->proc, SLICE_MS) < 0) return lib_fail (a, "proc closed");
        if (now_ns () > deadline) return lib_fail (a, "no echo for %d ms", opts.timeout_ms);
    }
    return now_ns () - t0;
}

static int
lib_latency_run (const char *endpoint, size_t size, rtt_result_t *res)
{
    uint8_t payload[1024 + sizeof (uint64_t)] = {0}, stop = STOP_BYTE;
    memset (res, 0, sizeof *res);
    res->expected = opts.rtt_count;
    if (size < sizeof (uint64_t) || size > sizeof payload) return -1;
    lib_client_t *cs[2] = {lib_open (endpoint, "b", size), lib_open (endpoint, "a", size)};
    if (!cs[0] || !cs[1]) {
        snprintf (res->error, sizeof res->error, "libzhost attach failed");
        lib_close (&cs[0]), lib_close (&cs[1]);
        return -1;
    }
    cs[0]->echo = true;
    lib_set_peer (cs[0], cs[1]);
    lib_set_peer (cs[1], cs[0]);
    atomic_int abort_flag = 0, rx_done = 0;
    int64_t deadline = now_ns () + (int64_t)opts.time_limit_ms * 1000000;
    lib_role_t echo = {.c = cs[0], .abort = &abort_flag, .rx_done = &rx_done};
    lib_role_t ping = {
        .c = cs[1], .abort = &abort_flag, .rx_done = &rx_done, .deadline_ns = deadline};
    int64_t *rtt = calloc (opts.rtt_count + 1, sizeof *rtt);
    pthread_t thread;
    pthread_create (&thread, NULL, lib_echo_main, &echo);
    for (size_t i = 0; i < opts.warmup + opts.rtt_count && now_ns () < deadline; i++) {
        int64_t t = lib_round_trip (&ping, payload, size, i + 1);
        if (t < 0) break;
        if (i >= opts.warmup) rtt[res->done++] = t;
    }
    zhost_part_t part = {&stop, 1};
    if (lib_post (&ping, &part, (int64_t)opts.timeout_ms * 1000000) < 0)
        atomic_store (&abort_flag, 1);
    zhost_proc_step (cs[1]->proc, 0);
    pthread_join (thread, NULL);
    rtt_stats (rtt, res->done, res);
    free (rtt);
    lib_error (cs, 2, res->error, sizeof res->error);
    lib_close (&cs[0]), lib_close (&cs[1]);
    return res->done == res->expected ? 0 : -1;
}
#endif

//  Child mode for callgrind: one 64 B 1→1 run of opts.count messages
//  with raw (lib false) or libzhost clients against a running broker.
static int
client_child_main (bool lib, const char *endpoint)
{
    tp_result_t res;
    int rc = -1;
    if (lib) {
#ifdef HAVE_LIBZHOST
        rc = lib_throughput_run (endpoint, 64, opts.count, &res);
#else
        fprintf (stderr, "zhost-bench: built without libzhost\n");
        return 1;
#endif
    } else {
        void *ctx = zmq_ctx_new ();
        server_t srv = {.sys = SYS_ZHOST};
        snprintf (srv.endpoint, sizeof srv.endpoint, "%s", endpoint);
        rc = throughput_run (ctx, &srv, 1, 64, opts.count, &res);
        zmq_ctx_term (ctx);
    }
    fprintf (stderr, "client %s: %zu/%zu in %.2f s%s%s\n", lib ? "lib" : "raw", res.received,
             res.expected, res.seconds, res.error[0] ? "  " : "", res.error);
    return rc < 0 ? 1 : 0;
}

//  ---------------------------------------------------------------------
//  The forwarders (child mode). SIGTERM ends them cleanly, so that
//  callgrind writes its output.

static volatile sig_atomic_t forwarder_stop;

static void
on_term (int sig)
{
    (void)sig;
    forwarder_stop = 1;
}

static void
drain_rest (void *router, zmq_msg_t *m)
{
    while (zmq_msg_more (m))
        zmq_msg_recv (m, router, 0);
}

//  [sender][dest][payload] in, [dest][sender][payload] out. Nothing else.
static void
classic_loop (void *router)
{
    zmq_msg_t sender, dest, payload;
    zmq_msg_init (&sender);
    zmq_msg_init (&dest);
    zmq_msg_init (&payload);
    while (!forwarder_stop) {
        if (zmq_msg_recv (&sender, router, 0) < 0) continue;
        if (!zmq_msg_more (&sender) || zmq_msg_recv (&dest, router, 0) < 0) continue;
        if (!zmq_msg_more (&dest) || zmq_msg_recv (&payload, router, 0) < 0) continue;
        if (zmq_msg_more (&payload)) {
            drain_rest (router, &payload);
            continue;
        }
        zmq_msg_send (&dest, router, ZMQ_SNDMORE);
        zmq_msg_send (&sender, router, ZMQ_SNDMORE);
        zmq_msg_send (&payload, router, 0);
    }
    zmq_msg_close (&sender);
    zmq_msg_close (&dest);
    zmq_msg_close (&payload);
}

//  [sender][frame = len dest payload] in, [dest][frame] out.
static void
bare_loop (void *router)
{
    zmq_msg_t sender, frame;
    zmq_msg_init (&sender);
    zmq_msg_init (&frame);
    while (!forwarder_stop) {
        if (zmq_msg_recv (&sender, router, 0) < 0) continue;
        if (!zmq_msg_more (&sender) || zmq_msg_recv (&frame, router, 0) < 0) continue;
        if (zmq_msg_more (&frame)) {
            drain_rest (router, &frame);
            continue;
        }
        const uint8_t *d = zmq_msg_data (&frame);
        size_t n = zmq_msg_size (&frame);
        if (n < 1 || n < 1u + d[0]) continue;
        zmq_send (router, d + 1, d[0], ZMQ_SNDMORE);
        zmq_msg_send (&frame, router, 0);
    }
    zmq_msg_close (&sender);
    zmq_msg_close (&frame);
}

static int
forwarder_main (sys_t sys, const char *endpoint)
{
    struct sigaction sa = {.sa_handler = on_term}; //  no SA_RESTART: recv returns EINTR
    sigaction (SIGTERM, &sa, NULL);
    sigaction (SIGINT, &sa, NULL);
    void *ctx = zmq_ctx_new ();
    void *router = zmq_socket (ctx, ZMQ_ROUTER);
    set_int_opt (router, ZMQ_SNDHWM, opts.hwm);
    set_int_opt (router, ZMQ_RCVHWM, opts.hwm);
    set_int_opt (router, ZMQ_LINGER, 0);
    set_int_opt (router, ZMQ_RCVTIMEO, SLICE_MS); //  a SIGTERM between checks is seen
    char bound[512];
    size_t bound_len = sizeof bound;
    if (zmq_bind (router, endpoint) < 0) {
        fprintf (stderr, "zhost-bench: bind %s: %s\n", endpoint, zmq_strerror (errno));
        return 1;
    }
    zmq_getsockopt (router, ZMQ_LAST_ENDPOINT, bound, &bound_len);
    printf ("frontend %s\nready\n", bound);
    fflush (stdout);
    if (sys == SYS_BARE)
        bare_loop (router);
    else
        classic_loop (router);
    zmq_close (router);
    zmq_ctx_term (ctx);
    return 0;
}

//  ---------------------------------------------------------------------
//  The report: one row per figure, the median of the runs of each system.

typedef struct {
    const char *key;
    const char *label;
    const char *unit;
    bool higher_better;
    double target; //  ratio zhost/classic to meet; 0 none
    double samples[SYS_COUNT][MAX_REPEAT];
    int n[SYS_COUNT];
    size_t lost[SYS_COUNT];  //  messages or round trips missing, all runs
    double value[SYS_COUNT]; //  the median, NAN when none
} row_t;

enum {
    ROW_TP64_1,
    ROW_TP64_4,
    ROW_TP1K_1,
    ROW_TP1K_4,
    ROW_P50,
    ROW_P99,
    ROW_CPU64_1,
    ROW_CPU64_4,
    ROW_CCPU64_1,
    ROW_CCPU64_4,
    ROW_COUNT
};

static row_t rows[ROW_COUNT] = {
    {.key = "throughput_64B_1to1",
     .label = "throughput 64 B 1->1",
     .unit = "msg/s",
     .higher_better = true,
     .target = 1.3},
    {.key = "throughput_64B_4to4",
     .label = "throughput 64 B 4->4",
     .unit = "msg/s",
     .higher_better = true,
     .target = 1.3},
    {.key = "throughput_1KiB_1to1",
     .label = "throughput 1 KiB 1->1",
     .unit = "msg/s",
     .higher_better = true,
     .target = 0},
    {.key = "throughput_1KiB_4to4",
     .label = "throughput 1 KiB 4->4",
     .unit = "msg/s",
     .higher_better = true,
     .target = 0},
    {.key = "rtt_64B_p50",
     .label = "rtt 64 B p50",
     .unit = "us",
     .higher_better = false,
     .target = 1.1},
    {.key = "rtt_64B_p99",
     .label = "rtt 64 B p99",
     .unit = "us",
     .higher_better = false,
     .target = 0},
    //  The server's CPU time per message: steadier than msg/s on a shared
    //  machine, since it does not depend on who else got the CPUs.
    {.key = "server_cpu_64B_1to1",
     .label = "server cpu 64 B 1->1",
     .unit = "us/msg",
     .higher_better = false,
     .target = 0},
    {.key = "server_cpu_64B_4to4",
     .label = "server cpu 64 B 4->4",
     .unit = "us/msg",
     .higher_better = false,
     .target = 0},
    //  The bench process's CPU time per message (its senders, receivers
    //  and I/O thread): what the clients and their kernel work cost.
    {.key = "client_cpu_64B_1to1",
     .label = "client cpu 64 B 1->1",
     .unit = "us/msg",
     .higher_better = false,
     .target = 0},
    {.key = "client_cpu_64B_4to4",
     .label = "client cpu 64 B 4->4",
     .unit = "us/msg",
     .higher_better = false,
     .target = 0},
};

typedef struct {
    bool run;
    double total_ir;
    size_t messages;
    double per_msg;
    double ir_b;     //  zhost2: broker B's share of total_ir (A's is the rest)
    double marginal; //  zhost-batch: Ir per message without start-up (callgrind_marginal)
    char error[300];
} cg_result_t;

#define CG_INIT                                                                                    \
    {                                                                                              \
        .per_msg = NAN, .marginal = NAN                                                            \
    }
static cg_result_t cg[SYS_COUNT] = {CG_INIT, CG_INIT, CG_INIT, CG_INIT, CG_INIT, CG_INIT};

//  Messages and round trips of every run, delivered or not, per system:
//  the two-broker path's delivery is checked by these (--json "two_broker").
static size_t tp_expected[SYS_COUNT], tp_received[SYS_COUNT];
static size_t rtt_expected[SYS_COUNT], rtt_done[SYS_COUNT];

#define TWO_TP_GOAL 0.5 //  two-broker 64 B 1->1 msg/s at least this x one broker's

static int
cmp_double (const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void
row_finish (row_t *row)
{
    for (int s = 0; s < SYS_COUNT; s++) {
        row->value[s] = NAN;
        if (row->n[s] == 0) continue;
        qsort (row->samples[s], (size_t)row->n[s], sizeof (double), cmp_double);
        row->value[s] = row->samples[s][row->n[s] / 2];
    }
}

static double
row_ratio (const row_t *row)
{
    return row->value[SYS_ZHOST] / row->value[SYS_CLASSIC];
}

static const char *
row_verdict (const row_t *row)
{
    double r = row_ratio (row);
    if (row->target == 0) return "";
    if (isnan (r)) return "n/a";
    return (row->higher_better ? r >= row->target : r <= row->target) ? "met" : "MISSED";
}

//  1234567.8 → "1,234,568"; small values keep one decimal.
static const char *
fmt_value (char *buf, size_t cap, double v)
{
    if (isnan (v)) return snprintf (buf, cap, "-"), buf;
    if (v < 10) return snprintf (buf, cap, "%.3f", v), buf;
    if (v < 10000) return snprintf (buf, cap, "%.1f", v), buf;
    char digits[32];
    snprintf (digits, sizeof digits, "%.0f", v);
    size_t n = strlen (digits), o = 0;
    for (size_t i = 0; i < n && o + 2 < cap; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = 0;
    return buf;
}

//  "1.23", or "-" when either figure is missing.
static const char *
fmt_ratio (char *buf, size_t cap, double num, double den)
{
    if (isnan (num) || isnan (den) || den == 0)
        snprintf (buf, cap, "-");
    else
        snprintf (buf, cap, "%.2f", num / den);
    return buf;
}

static void
cpu_model (char *buf, size_t cap)
{
    snprintf (buf, cap, "unknown");
    FILE *f = fopen ("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets (line, sizeof line, f)) {
        char *colon = strchr (line, ':');
        if (strncmp (line, "model name", 10) == 0 && colon) {
            snprintf (buf, cap, "%s", colon + 2);
            buf[strcspn (buf, "\n")] = 0;
            break;
        }
    }
    if (f) fclose (f);
}

//  The most any server could move with zhost's clients as measured: the
//  clients' CPUs (all, or all but the server's with --pin) divided by
//  their CPU time per message, as if the server cost nothing.
static void
print_ceiling (void)
{
    static const int pairs[][3] = {{ROW_TP64_1, ROW_CCPU64_1, 1}, {ROW_TP64_4, ROW_CCPU64_4, 4}};
    long ncpu = sysconf (_SC_NPROCESSORS_ONLN) - (opts.pin ? 1 : 0); //  the clients' CPUs
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        double client = rows[pairs[i][1]].value[SYS_ZHOST];
        double classic = rows[pairs[i][0]].value[SYS_CLASSIC];
        if (isnan (client) || client <= 0) continue;
        double ceiling = (double)ncpu * 1e6 / client;
        char a[32], b[32];
        printf ("%sceiling 64 B %d->%d: a server costing nothing, with zhost's clients at %.3f "
                "us/msg on %ld cpus: %s msg/s = %s x classic\n",
                i ? "" : "\n", pairs[i][2], pairs[i][2], client, ncpu,
                fmt_value (a, sizeof a, ceiling), fmt_ratio (b, sizeof b, ceiling, classic));
    }
}

//  The rtt a second broker adds (two brokers minus one), p50 or p99.
static double
two_added_rtt (int row)
{
    return rows[row].value[SYS_ZHOST2] - rows[row].value[SYS_ZHOST];
}

static const char *
two_verdict (double v, double goal, bool higher_better)
{
    if (isnan (v) || isnan (goal)) return "n/a";
    return (higher_better ? v >= goal : v <= goal) ? "met" : "MISSED";
}

//  Two brokers beside one: throughput ratios, rtt per hop, the goals.
static void
print_two (void)
{
    if (!opts.enabled[SYS_ZHOST2]) return;
    static const int tp[] = {ROW_TP64_1, ROW_TP64_4, ROW_TP1K_1, ROW_TP1K_4};
    char a[32], b[32];
    printf ("\ntwo brokers (zhost2: sender -> broker A -> peer link -> broker B -> receiver) "
            "beside one (zhost):\n  throughput zhost2 / zhost:");
    for (size_t i = 0; i < sizeof tp / sizeof tp[0]; i++)
        printf (
            "%s %s %s", i ? "," : "", rows[tp[i]].label + 11,
            fmt_ratio (a, sizeof a, rows[tp[i]].value[SYS_ZHOST2], rows[tp[i]].value[SYS_ZHOST]));
    double r64 = rows[ROW_TP64_1].value[SYS_ZHOST2] / rows[ROW_TP64_1].value[SYS_ZHOST];
    printf ("\n  goal 64 B 1->1 >= %.2f x one broker: %s\n", TWO_TP_GOAL,
            two_verdict (r64, TWO_TP_GOAL, true));
    for (int row = ROW_P50; row <= ROW_P99; row++) {
        double one = rows[row].value[SYS_ZHOST], added = two_added_rtt (row);
        printf ("  %s: one broker %s us, two brokers %s us, added by the second broker %.1f us",
                rows[row].label, fmt_value (a, sizeof a, one),
                fmt_value (b, sizeof b, rows[row].value[SYS_ZHOST2]), added);
        if (row == ROW_P50)
            printf (" (goal <= the one-broker rtt: %s)", two_verdict (added, one, false));
        printf ("\n");
    }
    printf ("  delivered: %zu / %zu messages, %zu / %zu round trips over all runs\n",
            tp_received[SYS_ZHOST2], tp_expected[SYS_ZHOST2], rtt_done[SYS_ZHOST2],
            rtt_expected[SYS_ZHOST2]);
}

//  The goals of batching (docs/performance.md, "Batching and nats-server"):
//  batched 64 B 1->1 at least nats-server's throughput in the same run; a
//  lone round trip through a batch-negotiated connection no slower than
//  through an unbatched one (p50, within RTT_NOISE); the broker at most
//  CG_BATCH_TARGET instructions per batched 64 B message (--callgrind).
#define RTT_NOISE       1.05
#define CG_BATCH_TARGET 1000

static double
row_ratio_of (int row, sys_t a, sys_t b)
{
    return rows[row].value[a] / rows[row].value[b];
}

static const char *
batch_tp_verdict (void)
{
    return two_verdict (rows[ROW_TP64_1].value[SYS_ZHOSTB], rows[ROW_TP64_1].value[SYS_NATS], true);
}

static const char *
batch_rtt_verdict (void)
{
    return two_verdict (rows[ROW_P50].value[SYS_ZHOSTB], rows[ROW_P50].value[SYS_ZHOST] * RTT_NOISE,
                        false);
}

//  zhost batched and unbatched beside nats-server and the classic forwarder.
static void
print_batch (void)
{
    if (!opts.enabled[SYS_ZHOSTB] && !opts.enabled[SYS_NATS]) return;
    char v[4][32], q[4][32];
    printf ("\nbatching (zhost-batch: BATCH frames of up to %d SENDs, docs/protocol.md §14) and "
            "nats-server (nats) beside zhost and classic:\n%-24s %-6s %12s %12s %12s %12s %9s "
            "%9s %9s %9s\n",
            opts.batch_elements, "measurement", "unit", "zhost-batch", "zhost", "nats", "classic",
            "b/zhost", "b/classic", "b/nats", "zhost/nats");
    for (int i = 0; i < ROW_COUNT; i++) {
        const row_t *r = &rows[i];
        const double *x = r->value;
        printf ("%-24s %-6s %12s %12s %12s %12s %9s %9s %9s %9s\n", r->label, r->unit,
                fmt_value (v[0], sizeof v[0], x[SYS_ZHOSTB]),
                fmt_value (v[1], sizeof v[1], x[SYS_ZHOST]),
                fmt_value (v[2], sizeof v[2], x[SYS_NATS]),
                fmt_value (v[3], sizeof v[3], x[SYS_CLASSIC]),
                fmt_ratio (q[0], sizeof q[0], x[SYS_ZHOSTB], x[SYS_ZHOST]),
                fmt_ratio (q[1], sizeof q[1], x[SYS_ZHOSTB], x[SYS_CLASSIC]),
                fmt_ratio (q[2], sizeof q[2], x[SYS_ZHOSTB], x[SYS_NATS]),
                fmt_ratio (q[3], sizeof q[3], x[SYS_ZHOST], x[SYS_NATS]));
    }
    printf ("  goal: zhost-batch 64 B 1->1 throughput >= nats's: %s\n"
            "  goal: zhost-batch rtt p50 (a lone request/reply) <= zhost's (x %.2f for noise): "
            "%s\n",
            batch_tp_verdict (), RTT_NOISE, batch_rtt_verdict ());
}

static void
print_table (void)
{
    char cpu[256], a[32], b[32], c[32], ratio[32], vs_bare[32];
    cpu_model (cpu, sizeof cpu);
    printf ("zhost-bench: tcp on 127.0.0.1, %zu msgs (64 B) and %zu (1 KiB) per sender, %zu "
            "round trips, hwm %d, median of %d runs\nclients: %s, %d I/O thread%s each\n"
            "machine: %ld cpus, %s\n\n",
            opts.count, opts.count_1k, opts.rtt_count, opts.hwm, opts.repeat,
            opts.client_ctx_own ? "a zmq context each (--client-ctx own)"
                                : "one shared zmq context (--client-ctx shared)",
            opts.io_threads, opts.io_threads == 1 ? "" : "s", sysconf (_SC_NPROCESSORS_ONLN), cpu);
    if (opts.pin)
        printf ("--pin: every server on CPU %ld, the clients on CPUs 0-%ld\n\n",
                sysconf (_SC_NPROCESSORS_ONLN) - 1, sysconf (_SC_NPROCESSORS_ONLN) - 2);
    if (seen_prefix[SYS_ZHOST] || seen_prefix[SYS_BARE])
        printf ("bytes before the payload in each frame: zhost %zu (SEND head), classic 0 (dest "
                "id in a frame of its own), bare %zu%s\n\n",
                seen_prefix[SYS_ZHOST], seen_prefix[SYS_BARE],
                opts.bare_as_zhp ? " (--bare-as-zhp: padded to zhost's length)" : "");
    printf ("%-24s %-6s %12s %12s %14s %-9s %-7s %12s %10s %12s %8s\n", "measurement", "unit",
            "zhost", "classic", "zhost/classic", "target", "",
            opts.bare_as_zhp ? "bare=zhp" : "bare", "zhost/bare", "zhost2", "2 / 1");
    for (int i = 0; i < ROW_COUNT; i++) {
        row_t *r = &rows[i];
        char target[16] = "", two[32], vs_one[32];
        if (r->target)
            snprintf (target, sizeof target, "%s %.2f", r->higher_better ? ">=" : "<=", r->target);
        fmt_ratio (ratio, sizeof ratio, r->value[SYS_ZHOST], r->value[SYS_CLASSIC]);
        printf ("%-24s %-6s %12s %12s %14s %-9s %-7s %12s %10s %12s %8s\n", r->label, r->unit,
                fmt_value (a, sizeof a, r->value[SYS_ZHOST]),
                fmt_value (b, sizeof b, r->value[SYS_CLASSIC]), ratio, target, row_verdict (r),
                fmt_value (c, sizeof c, r->value[SYS_BARE]),
                fmt_ratio (vs_bare, sizeof vs_bare, r->value[SYS_ZHOST], r->value[SYS_BARE]),
                fmt_value (two, sizeof two, r->value[SYS_ZHOST2]),
                fmt_ratio (vs_one, sizeof vs_one, r->value[SYS_ZHOST2], r->value[SYS_ZHOST]));
    }
    print_two ();
    print_batch ();
    print_ceiling ();
    for (int i = 0; i < ROW_COUNT; i++)
        for (int s = 0; s < SYS_COUNT; s++)
            if (rows[i].lost[s])
                printf ("LOSS: %s %s: %zu missing over all runs\n", sys_names[s], rows[i].label,
                        rows[i].lost[s]);
}

#define CG_TARGET 3600 //  instructions per forwarded 64 B message 1->1, zhost

static const char *
cg_verdict (sys_t s)
{
    //  The targets are for the 64 B 1->1 run only.
    if (opts.cg_size != 64 || opts.cg_pairs != 1) return "";
    if (s == SYS_ZHOSTB) { //  on the figure without start-up (print_callgrind says so)
        if (isnan (cg[s].marginal)) return "<= 1,000 n/a";
        return cg[s].marginal <= CG_BATCH_TARGET ? "<= 1,000 met" : "<= 1,000 MISSED";
    }
    if (s != SYS_ZHOST) return "";
    if (isnan (cg[s].per_msg)) return "<= 3,600 n/a";
    return cg[s].per_msg <= CG_TARGET ? "<= 3,600 met" : "<= 3,600 MISSED";
}

static void
print_callgrind (void)
{
    char a[32], b[32], vc[32], vb[32];
    printf ("instructions per forwarded %d B message (callgrind, %zu msgs per sender, %d->%d, "
            "start-up included)\n\n%-11s %16s %10s %11s %8s  %s\n",
            opts.cg_size, opts.cg_count, opts.cg_pairs, opts.cg_pairs, "server", "total Ir",
            "Ir/msg", "vs classic", "vs bare", "target");
    for (int s = 0; s < SYS_COUNT; s++) {
        if (!cg[s].run) continue;
        printf ("%-11s %16s %10s %11s %8s  %s%s%s\n", sys_names[s],
                fmt_value (a, sizeof a, cg[s].total_ir), fmt_value (b, sizeof b, cg[s].per_msg),
                fmt_ratio (vc, sizeof vc, cg[s].per_msg, cg[SYS_CLASSIC].per_msg),
                fmt_ratio (vb, sizeof vb, cg[s].per_msg, cg[SYS_BARE].per_msg),
                cg_verdict ((sys_t)s), cg[s].error[0] ? "  ERROR: " : "", cg[s].error);
    }
    if (cg[SYS_ZHOSTB].run)
        printf ("zhost-batch: per message = per BATCH element; its senders pack up to %d "
                "SENDs per BATCH frame, the broker forwards them as BATCH frames.\n  Without "
                "start-up and shutdown ((Ir of %zu msgs - Ir of %zu) / %zu): %s Ir per element, "
                "the figure the target is for\n",
                opts.batch_elements, opts.cg_count, opts.cg_count / 10,
                opts.cg_count - opts.cg_count / 10,
                fmt_value (a, sizeof a, cg[SYS_ZHOSTB].marginal));
    cg_result_t *two = &cg[SYS_ZHOST2];
    if (two->run && two->messages)
        printf (
            "zhost2: both brokers; A (client -> link) %s Ir/msg, B (link -> client) %s Ir/msg\n",
            fmt_value (a, sizeof a, (two->total_ir - two->ir_b) / (double)two->messages),
            fmt_value (b, sizeof b, two->ir_b / (double)two->messages));
}

//  p50, p99 and max in ms of n samples (sorted here).
static void
ns_stats (int64_t *ns, size_t n, double *p50, double *p99, double *max)
{
    *p50 = *p99 = *max = NAN;
    if (n == 0) return;
    qsort (ns, n, sizeof *ns, cmp_i64);
    *p50 = (double)ns[n / 2] / 1e6;
    *p99 = (double)ns[n * 99 / 100] / 1e6;
    *max = (double)ns[n - 1] / 1e6;
}

static void
print_spawn (void)
{
    spawn_result_t *r = &spawn_res;
    if (!r->run) return;
    double sp[3], st[3];
    ns_stats (r->spawn_ns, r->spawned, &sp[0], &sp[1], &sp[2]);
    ns_stats (r->stop_ns, r->stopped, &st[0], &st[1], &st[2]);
    printf ("\nspawn and stop latency: %zu procs (%s), one at a time, through the host agent "
            "on the control socket\n\n%-32s %6s %10s %10s %10s\n",
            r->count, opts.test_proc ? opts.test_proc : "zh-test-proc", "measurement", "n",
            "p50 ms", "p99 ms", "max ms");
    printf ("%-32s %6zu %10.2f %10.2f %10.2f\n", "spawn -> READY (answer)", r->spawned, sp[0],
            sp[1], sp[2]);
    printf ("%-32s %6zu %10.2f %10.2f %10.2f\n", "stop -> exited (answer)", r->stopped, st[0],
            st[1], st[2]);
    if (!isnan (r->bulk_ms))
        printf ("stop_all of %zu procs, max_in_flight %d: %.1f ms in all (%.2f ms per proc); "
                "attempted %" PRId64 ", stopped %" PRId64 ", failed %" PRId64 "\n",
                r->bulk_count, opts.max_in_flight, r->bulk_ms, r->bulk_ms / (double)r->bulk_count,
                r->bulk.attempted, r->bulk.stopped, r->bulk.failed);
    if (r->error[0]) printf ("ERROR: %s\n", r->error);
}

static void
print_lib (void)
{
    lib_result_t *l = &lib_res;
    if (!l->run) return;
    double raw[3] = {rows[ROW_TP64_1].value[SYS_ZHOST], rows[ROW_P50].value[SYS_ZHOST],
                     rows[ROW_P99].value[SYS_ZHOST]};
    double lib[3] = {l->tp_med, l->p50_med, l->p99_med};
    const char *names[3] = {"throughput 64 B 1->1", "rtt 64 B p50", "rtt 64 B p99"};
    const char *units[3] = {"msg/s", "us", "us"};
    char a[32], b[32], ratio[32];
    printf ("\nlibzhost clients beside raw zhost clients, the same broker, median of %d runs\n\n"
            "%-24s %-6s %12s %12s %9s %14s\n",
            opts.repeat, "measurement", "unit", "raw zhost", "libzhost", "lib/raw", "lib - raw");
    for (int i = 0; i < 3; i++) {
        fmt_ratio (ratio, sizeof ratio, lib[i], raw[i]);
        printf ("%-24s %-6s %12s %12s %9s %+14.*f\n", names[i], units[i],
                fmt_value (a, sizeof a, raw[i]), fmt_value (b, sizeof b, lib[i]), ratio, i ? 1 : 0,
                lib[i] - raw[i]);
    }
    printf ("library overhead per message: %.2f us per hop at rtt p50 (a round trip is 2 "
            "posts, 2 handler calls); %.3f us per message at 64 B 1->1 throughput\n",
            (lib[1] - raw[1]) / 2, 1e6 / lib[0] - 1e6 / raw[0]);
    if (l->cg_run)
        printf ("client-side instructions per 64 B message (callgrind): raw %s, libzhost %s, "
                "ratio %s, +%.0f\n  %s\n",
                fmt_value (a, sizeof a, l->cg_raw), fmt_value (b, sizeof b, l->cg_lib),
                fmt_ratio (ratio, sizeof ratio, l->cg_lib, l->cg_raw), l->cg_lib - l->cg_raw,
                l->cg_note);
    else if (l->cg_note[0])
        printf ("client-side instructions: %s\n", l->cg_note);
    if (l->lost_tp || l->lost_rtt)
        printf ("LOSS: libzhost: %zu messages, %zu round trips missing over all runs\n", l->lost_tp,
                l->lost_rtt);
}

static void
json_number (const char *key, double v, bool comma)
{
    //  JSON has no NaN or infinity (a ratio over a 0 figure): null.
    if (!isfinite (v))
        printf ("\"%s\": null%s", key, comma ? ", " : "");
    else
        printf ("\"%s\": %.3f%s", key, v, comma ? ", " : "");
}

//  "samples": every complete run of each system, sorted (the spread).
static void
json_samples (const row_t *r)
{
    printf ("\"samples\": {");
    for (int s = 0; s < SYS_COUNT; s++) {
        printf ("%s\"%s\": [", s ? ", " : "", sys_names[s]);
        for (int i = 0; i < r->n[s]; i++)
            if (isfinite (r->samples[s][i]))
                printf ("%s%.3f", i ? ", " : "", r->samples[s][i]);
            else
                printf ("%snull", i ? ", " : "");
        printf ("]");
    }
    printf ("}, ");
}

static void
json_spawn (void)
{
    spawn_result_t *r = &spawn_res;
    if (!r->run) return;
    double sp[3], st[3];
    ns_stats (r->spawn_ns, r->spawned, &sp[0], &sp[1], &sp[2]);
    ns_stats (r->stop_ns, r->stopped, &st[0], &st[1], &st[2]);
    printf (",\n \"spawn\": {\"procs\": %zu, \"spawned\": %zu, \"stopped\": %zu, ", r->count,
            r->spawned, r->stopped);
    json_number ("spawn_ready_p50_ms", sp[0], true);
    json_number ("spawn_ready_p99_ms", sp[1], true);
    json_number ("spawn_ready_max_ms", sp[2], true);
    json_number ("stop_p50_ms", st[0], true);
    json_number ("stop_p99_ms", st[1], true);
    json_number ("stop_max_ms", st[2], true);
    printf ("\"stop_all\": {\"procs\": %zu, \"max_in_flight\": %d, \"stopped\": %" PRId64
            ", \"failed\": %" PRId64 ", ",
            r->bulk_count, opts.max_in_flight, r->bulk.stopped, r->bulk.failed);
    json_number ("total_ms", r->bulk_ms, false);
    printf ("}, \"error\": \"%s\"}", r->error);
}

static void
json_lib (void)
{
    lib_result_t *l = &lib_res;
    if (!l->run) return;
    printf (",\n \"lib\": {");
    json_number ("raw_throughput_64B_1to1", rows[ROW_TP64_1].value[SYS_ZHOST], true);
    json_number ("lib_throughput_64B_1to1", l->tp_med, true);
    json_number ("raw_rtt_64B_p50", rows[ROW_P50].value[SYS_ZHOST], true);
    json_number ("lib_rtt_64B_p50", l->p50_med, true);
    json_number ("raw_rtt_64B_p99", rows[ROW_P99].value[SYS_ZHOST], true);
    json_number ("lib_rtt_64B_p99", l->p99_med, true);
    json_number ("client_ir_per_msg_raw", l->cg_raw, true);
    json_number ("client_ir_per_msg_lib", l->cg_lib, true);
    printf ("\"lost\": {\"messages\": %zu, \"round_trips\": %zu}}", l->lost_tp, l->lost_rtt);
}

//  "batch": zhost batched beside unbatched and nats-server, and the goals.
static void
json_batch (void)
{
    if ((!opts.enabled[SYS_ZHOSTB] && !opts.enabled[SYS_NATS]) || opts.callgrind || opts.lib_mode ||
        opts.spawn_mode)
        return;
    printf (",\n \"batch\": {\"batch_elements\": %d, \"expected\": %zu, \"delivered\": %zu, "
            "\"rtt_expected\": %zu, \"rtt_done\": %zu, \"nats\": {\"expected\": %zu, "
            "\"delivered\": %zu, \"rtt_expected\": %zu, \"rtt_done\": %zu}, ",
            opts.batch_elements, tp_expected[SYS_ZHOSTB], tp_received[SYS_ZHOSTB],
            rtt_expected[SYS_ZHOSTB], rtt_done[SYS_ZHOSTB], tp_expected[SYS_NATS],
            tp_received[SYS_NATS], rtt_expected[SYS_NATS], rtt_done[SYS_NATS]);
    printf ("\"goals\": {\"throughput_64B_1to1_vs_nats\": \"%s\", ", batch_tp_verdict ());
    json_number ("throughput_64B_1to1_ratio_nats", row_ratio_of (ROW_TP64_1, SYS_ZHOSTB, SYS_NATS),
                 true);
    printf ("\"rtt_p50_vs_unbatched\": \"%s\", ", batch_rtt_verdict ());
    json_number ("rtt_p50_noise", RTT_NOISE, true);
    json_number ("rtt_p50_ratio_unbatched", row_ratio_of (ROW_P50, SYS_ZHOSTB, SYS_ZHOST), false);
    printf ("}}");
}

//  "two_broker": the two-broker path beside the one-broker path.
static void
json_two (void)
{
    if (!opts.enabled[SYS_ZHOST2] || opts.callgrind || opts.lib_mode || opts.spawn_mode) return;
    static const int tp[] = {ROW_TP64_1, ROW_TP64_4, ROW_TP1K_1, ROW_TP1K_4};
    printf (",\n \"two_broker\": {\"expected\": %zu, \"delivered\": %zu, \"rtt_expected\": %zu, "
            "\"rtt_done\": %zu, \"prefix_bytes\": %zu, \"throughput_ratio\": {",
            tp_expected[SYS_ZHOST2], tp_received[SYS_ZHOST2], rtt_expected[SYS_ZHOST2],
            rtt_done[SYS_ZHOST2], seen_prefix[SYS_ZHOST2]);
    for (size_t i = 0; i < sizeof tp / sizeof tp[0]; i++)
        json_number (rows[tp[i]].key + 11,
                     rows[tp[i]].value[SYS_ZHOST2] / rows[tp[i]].value[SYS_ZHOST],
                     i + 1 < sizeof tp / sizeof tp[0]);
    printf ("}, \"throughput_ratio_to_classic\": {");
    for (size_t i = 0; i < sizeof tp / sizeof tp[0]; i++)
        json_number (rows[tp[i]].key + 11,
                     rows[tp[i]].value[SYS_ZHOST2] / rows[tp[i]].value[SYS_CLASSIC],
                     i + 1 < sizeof tp / sizeof tp[0]);
    printf ("}, ");
    json_number ("rtt_one_p50_us", rows[ROW_P50].value[SYS_ZHOST], true);
    json_number ("rtt_two_p50_us", rows[ROW_P50].value[SYS_ZHOST2], true);
    json_number ("rtt_added_p50_us", two_added_rtt (ROW_P50), true);
    json_number ("rtt_one_p99_us", rows[ROW_P99].value[SYS_ZHOST], true);
    json_number ("rtt_two_p99_us", rows[ROW_P99].value[SYS_ZHOST2], true);
    json_number ("rtt_added_p99_us", two_added_rtt (ROW_P99), true);
    double r64 = rows[ROW_TP64_1].value[SYS_ZHOST2] / rows[ROW_TP64_1].value[SYS_ZHOST];
    const char *tp_met = two_verdict (r64, TWO_TP_GOAL, true);
    const char *rtt_met =
        two_verdict (two_added_rtt (ROW_P50), rows[ROW_P50].value[SYS_ZHOST], false);
    printf ("\"goals\": {\"throughput_64B_1to1_ratio_min\": %.2f, \"throughput\": \"%s\", "
            "\"rtt_added_p50_max\": \"one-broker rtt p50\", \"rtt\": \"%s\"}}",
            TWO_TP_GOAL, tp_met, rtt_met);
}

static void
print_json (void)
{
    char systems[256] = ""; //  the enabled systems, a JSON list's insides
    for (int s = 0; s < SYS_COUNT; s++)
        if (opts.enabled[s])
            snprintf (systems + strlen (systems), sizeof systems - strlen (systems), "%s\"%s\"",
                      systems[0] ? ", " : "", sys_names[s]);
    char cpu[256];
    cpu_model (cpu, sizeof cpu);
    printf ("{\"config\": {\"count\": %zu, \"count_1k\": %zu, \"rtt_count\": %zu, \"hwm\": %d, "
            "\"repeat\": %d, \"two_broker\": %s, "
            "\"nproc\": %ld, \"cpu\": \"%s\", \"pin\": %s, \"bare_as_zhp\": %s, \"prefix_bytes\": "
            "{\"zhost\": %zu, \"bare\": %zu}, \"client_ctx\": \"%s\", \"io_threads\": %d, "
            "\"callgrind_pairs\": %d, \"callgrind_size\": %d, \"batch_elements\": %d, "
            "\"systems\": [%s]},\n \"results\": [",
            opts.count, opts.count_1k, opts.rtt_count, opts.hwm, opts.repeat,
            opts.enabled[SYS_ZHOST2] ? "true" : "false", sysconf (_SC_NPROCESSORS_ONLN), cpu,
            opts.pin ? "true" : "false", opts.bare_as_zhp ? "true" : "false",
            seen_prefix[SYS_ZHOST], seen_prefix[SYS_BARE], opts.client_ctx_own ? "own" : "shared",
            opts.io_threads, opts.cg_pairs, opts.cg_size, opts.batch_elements, systems);
    bool first_row = true;
    for (int i = 0; i < ROW_COUNT && !opts.callgrind; i++) {
        row_t *r = &rows[i];
        bool measured = false;
        for (int s = 0; s < SYS_COUNT; s++)
            measured |= r->n[s] || r->lost[s];
        if (!measured) continue; //  not measured in this mode
        printf ("%s\n  {\"name\": \"%s\", \"unit\": \"%s\", ", first_row ? "" : ",", r->key,
                r->unit);
        first_row = false;
        for (int s = 0; s < SYS_COUNT; s++)
            json_number (sys_names[s], r->value[s], true);
        json_number ("ratio", row_ratio (r), true);
        json_number ("ratio_zhost2_zhost", r->value[SYS_ZHOST2] / r->value[SYS_ZHOST], true);
        json_number ("ratio_batch_zhost", row_ratio_of (i, SYS_ZHOSTB, SYS_ZHOST), true);
        json_number ("ratio_batch_classic", row_ratio_of (i, SYS_ZHOSTB, SYS_CLASSIC), true);
        json_number ("ratio_batch_nats", row_ratio_of (i, SYS_ZHOSTB, SYS_NATS), true);
        json_number ("ratio_zhost_nats", row_ratio_of (i, SYS_ZHOST, SYS_NATS), true);
        json_number ("ratio_nats_classic", row_ratio_of (i, SYS_NATS, SYS_CLASSIC), true);
        json_number ("target", r->target ? r->target : NAN, true);
        json_samples (r);
        printf ("\"lost\": {");
        for (int s = 0; s < SYS_COUNT; s++)
            printf ("%s\"%s\": %zu", s ? ", " : "", sys_names[s], r->lost[s]);
        printf ("}}");
    }
    printf ("],\n \"callgrind\": {");
    bool first = true;
    for (int s = 0; s < SYS_COUNT; s++) {
        if (!cg[s].run) continue;
        printf ("%s\"%s\": {\"messages\": %zu, ", first ? "" : ", ", sys_names[s], cg[s].messages);
        json_number ("total_ir", cg[s].total_ir, true);
        if (s == SYS_ZHOST2) {
            json_number ("total_ir_a", cg[s].total_ir - cg[s].ir_b, true);
            json_number ("total_ir_b", cg[s].ir_b, true);
        }
        if (s == SYS_ZHOSTB) {
            printf ("\"batch_elements\": %d, ", opts.batch_elements);
            //  per element without start-up and shutdown; the goal is on it
            json_number ("ir_per_element", cg[s].marginal, true);
            const char *v = cg_verdict ((sys_t)s);
            printf ("\"target\": %d, \"goal\": \"%s\", ", CG_BATCH_TARGET,
                    strstr (v, "MISSED") ? "MISSED"
                    : strstr (v, "met")  ? "met"
                                         : "n/a");
        }
        json_number ("ir_per_msg", cg[s].per_msg, false);
        printf ("}");
        first = false;
    }
    printf ("}");
    json_batch ();
    json_two ();
    json_spawn ();
    json_lib ();
    printf ("}\n");
}

//  ---------------------------------------------------------------------
//  The measurements.

static void
record_tp (row_t *row, sys_t s, const tp_result_t *res, int run)
{
    char v[32];
    row->lost[s] += res->expected - res->received;
    tp_expected[s] += res->expected;
    tp_received[s] += res->received;
    if (res->received == res->expected && row->n[s] < MAX_REPEAT)
        row->samples[s][row->n[s]++] = res->rate;
    fprintf (stderr, "%-22s %-8s run %d: %s msg/s (%zu/%zu in %.3f s)%s%s\n", row->label,
             sys_names[s], run + 1, fmt_value (v, sizeof v, res->rate), res->received,
             res->expected, res->seconds, res->error[0] ? "  " : "", res->error);
}

static void
record_rtt (sys_t s, const rtt_result_t *res, int run)
{
    rows[ROW_P50].lost[s] += res->expected - res->done;
    rtt_expected[s] += res->expected;
    rtt_done[s] += res->done;
    if (res->done == res->expected && rows[ROW_P50].n[s] < MAX_REPEAT) {
        rows[ROW_P50].samples[s][rows[ROW_P50].n[s]++] = res->p50_us;
        rows[ROW_P99].samples[s][rows[ROW_P99].n[s]++] = res->p99_us;
    }
    fprintf (stderr, "%-22s %-8s run %d: p50 %.1f us, p99 %.1f us, mean %.1f us (%zu/%zu)%s%s\n",
             "rtt 64 B", sys_names[s], run + 1, res->p50_us, res->p99_us, res->mean_us, res->done,
             res->expected, res->error[0] ? "  " : "", res->error);
}

static double callgrind_total (const char *path);

//  libzhost figures beside the raw zhost client's: only through the
//  broker, and only for 64 B 1→1 and the round trip.
static bool
lib_wanted (void)
{
#ifdef HAVE_LIBZHOST
    return opts.enabled[SYS_ZHOST] && (opts.lib_mode || !opts.spawn_mode);
#else
    return false;
#endif
}

static void
lib_tp_once (const server_t *srv, int run)
{
#ifdef HAVE_LIBZHOST
    tp_result_t res;
    char v[32];
    lib_res.run = true;
    lib_throughput_run (srv->endpoint, 64, opts.count, &res);
    lib_res.lost_tp += res.expected - res.received;
    if (res.received == res.expected && lib_res.n_tp < MAX_REPEAT)
        lib_res.tp[lib_res.n_tp++] = res.rate;
    fprintf (stderr, "%-22s %-8s run %d: %s msg/s (%zu/%zu in %.3f s)%s%s\n",
             "throughput 64 B 1->1", "libzhost", run + 1, fmt_value (v, sizeof v, res.rate),
             res.received, res.expected, res.seconds, res.error[0] ? "  " : "", res.error);
#else
    (void)srv, (void)run;
#endif
}

static void
lib_rtt_once (const server_t *srv, int run)
{
#ifdef HAVE_LIBZHOST
    rtt_result_t res;
    lib_res.run = true;
    lib_latency_run (srv->endpoint, 64, &res);
    lib_res.lost_rtt += res.expected - res.done;
    if (res.done == res.expected && lib_res.n_rtt < MAX_REPEAT) {
        lib_res.p50[lib_res.n_rtt] = res.p50_us;
        lib_res.p99[lib_res.n_rtt++] = res.p99_us;
    }
    fprintf (stderr, "%-22s %-8s run %d: p50 %.1f us, p99 %.1f us, mean %.1f us (%zu/%zu)%s%s\n",
             "rtt 64 B", "libzhost", run + 1, res.p50_us, res.p99_us, res.mean_us, res.done,
             res.expected, res.error[0] ? "  " : "", res.error);
#else
    (void)srv, (void)run;
#endif
}

static void
record_cpu (row_t *row, sys_t s, double us)
{
    if (!isnan (us) && row->n[s] < MAX_REPEAT) row->samples[s][row->n[s]++] = us;
}

static void
measure_throughput (void *ctx, server_t *srv, int row, size_t size, int pairs)
{
    tp_result_t res;
    for (int r = 0; r < opts.repeat; r++) {
        for (int s = 0; s < SYS_COUNT; s++) {
            if (!opts.enabled[s]) continue;
            throughput_run (ctx, &srv[s], pairs, size, size > 64 ? opts.count_1k : opts.count,
                            &res);
            record_tp (&rows[row], (sys_t)s, &res, r);
            int cpu_row = row == ROW_TP64_1 ? ROW_CPU64_1 : row == ROW_TP64_4 ? ROW_CPU64_4 : -1;
            if (cpu_row >= 0 && res.received == res.expected) {
                record_cpu (&rows[cpu_row], (sys_t)s, res.server_cpu_us);
                record_cpu (&rows[cpu_row + (ROW_CCPU64_1 - ROW_CPU64_1)], (sys_t)s,
                            res.client_cpu_us);
            }
        }
        if (row == ROW_TP64_1 && lib_wanted ()) lib_tp_once (&srv[SYS_ZHOST], r);
    }
}

static void
measure_latency (void *ctx, server_t *srv)
{
    rtt_result_t res;
    for (int r = 0; r < opts.repeat; r++) {
        for (int s = 0; s < SYS_COUNT; s++) {
            if (!opts.enabled[s]) continue;
            latency_run (ctx, &srv[s], 64, &res);
            record_rtt ((sys_t)s, &res, r);
        }
        if (lib_wanted ()) lib_rtt_once (&srv[SYS_ZHOST], r);
    }
}

static double
median_of (double *v, int n)
{
    if (n == 0) return NAN;
    qsort (v, (size_t)n, sizeof (double), cmp_double);
    return v[n / 2];
}

//  Run `self --client-raw|--client-lib ENDPOINT --count n` under
//  callgrind; its total instructions, or NAN.
static double
client_callgrind (const char *endpoint, bool lib, size_t n, const char *dir)
{
    char out[PATH_MAX + 40], path[PATH_MAX], count[32], hwm[32];
    snprintf (path, sizeof path, "%s/callgrind.client-%s-%zu.out", dir, lib ? "lib" : "raw", n);
    snprintf (out, sizeof out, "--callgrind-out-file=%s", path);
    snprintf (count, sizeof count, "%zu", n);
    snprintf (hwm, sizeof hwm, "%d", opts.hwm);
    const char *argv[] = {"valgrind",
                          "--tool=callgrind",
                          "-q",
                          "--dump-instr=no",
                          out,
                          opts.self,
                          lib ? "--client-lib" : "--client-raw",
                          endpoint,
                          "--count",
                          count,
                          "--hwm",
                          hwm,
                          "--timeout",
                          "120000",
                          NULL};
    pid_t pid = fork ();
    if (pid == 0) {
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        execvp (argv[0], (char *const *)argv);
        _exit (127);
    }
    if (pid < 0) return NAN;
    int status = -1;
    int64_t deadline = now_ns () + (int64_t)600 * 1000000000;
    while (waitpid (pid, &status, WNOHANG) == 0) {
        if (now_ns () > deadline) {
            kill (pid, SIGKILL);
            waitpid (pid, &status, 0);
            break;
        }
        msleep (50);
    }
    double total = WIFEXITED (status) && WEXITSTATUS (status) == 0 ? callgrind_total (path) : NAN;
    fprintf (stderr, "callgrind client %s, %zu msgs: %.0f Ir (status 0x%x)\n", lib ? "lib" : "raw",
             n, total, status);
    if (!opts.cg_dir) remove (path);
    return total;
}

//  Client-side instructions per message: (Ir(N) - Ir(N/10)) / (N - N/10),
//  so that attach, start-up and BYE cancel out.
static void
measure_lib_callgrind (const server_t *srv)
{
    lib_result_t *l = &lib_res;
    size_t big = opts.lib_cg_count, small = big / 10;
    if (big == 0) {
        snprintf (l->cg_note, sizeof l->cg_note, "not run (--lib-callgrind-count 0)");
        return;
    }
    if (system ("valgrind --version >/dev/null 2>&1") != 0) {
        snprintf (l->cg_note, sizeof l->cg_note, "not run: valgrind not found");
        return;
    }
    char tmp[] = "/tmp/zhost-bench-cg-XXXXXX";
    const char *dir = opts.cg_dir;
    if (!dir && !(dir = mkdtemp (tmp))) return;
    if (opts.cg_dir) mkdir (dir, 0755);
    l->cg_run = true;
    double raw[2], lib[2];
    raw[0] = client_callgrind (srv->endpoint, false, small, dir);
    raw[1] = client_callgrind (srv->endpoint, false, big, dir);
    lib[0] = client_callgrind (srv->endpoint, true, small, dir);
    lib[1] = client_callgrind (srv->endpoint, true, big, dir);
    l->cg_raw = (raw[1] - raw[0]) / (double)(big - small);
    l->cg_lib = (lib[1] - lib[0]) / (double)(big - small);
    snprintf (l->cg_note, sizeof l->cg_note,
              "(Ir of %zu msgs - Ir of %zu msgs) / %zu, all threads of the client process", big,
              small, big - small);
    if (!opts.cg_dir) rmdir (dir);
}

static void
lib_finish (void)
{
    lib_res.tp_med = median_of (lib_res.tp, lib_res.n_tp);
    lib_res.p50_med = median_of (lib_res.p50, lib_res.n_rtt);
    lib_res.p99_med = median_of (lib_res.p99, lib_res.n_rtt);
}

//  --lib alone: raw zhost clients and libzhost clients, alternating,
//  through one broker; then the client-side instruction counts.
static int
measure_lib (void *ctx)
{
    server_t srv[SYS_COUNT];
    if (server_start (&srv[SYS_ZHOST], SYS_ZHOST, NULL) < 0) return -1;
    for (int s = 0; s < SYS_COUNT; s++)
        opts.enabled[s] = s == SYS_ZHOST;
    measure_throughput (ctx, srv, ROW_TP64_1, 64, 1);
    measure_latency (ctx, srv);
    measure_lib_callgrind (&srv[SYS_ZHOST]);
    server_stop (&srv[SYS_ZHOST], 10000);
    for (int i = 0; i < ROW_COUNT; i++)
        row_finish (&rows[i]);
    lib_finish ();
    return 0;
}

static int
measure_all (void *ctx)
{
    server_t srv[SYS_COUNT];
    for (int s = 0; s < SYS_COUNT; s++)
        if (opts.enabled[s] && server_start (&srv[s], (sys_t)s, NULL) < 0) {
            for (int k = 0; k < s; k++)
                if (opts.enabled[k]) server_stop (&srv[k], 10000);
            return -1;
        }
    measure_throughput (ctx, srv, ROW_TP64_1, 64, 1);
    measure_throughput (ctx, srv, ROW_TP64_4, 64, 4);
    measure_throughput (ctx, srv, ROW_TP1K_1, 1024, 1);
    measure_throughput (ctx, srv, ROW_TP1K_4, 1024, 4);
    measure_latency (ctx, srv);
    for (int s = 0; s < SYS_COUNT; s++)
        if (opts.enabled[s]) server_stop (&srv[s], 10000);
    for (int i = 0; i < ROW_COUNT; i++)
        row_finish (&rows[i]);
    lib_finish ();
    return 0;
}

//  The "totals:" (or else "summary:") line of a callgrind output file.
static double
callgrind_total (const char *path)
{
    FILE *f = fopen (path, "r");
    char line[512];
    double totals = NAN, summary = NAN;
    while (f && fgets (line, sizeof line, f)) {
        if (strncmp (line, "totals:", 7) == 0) totals = strtod (line + 7, NULL);
        if (strncmp (line, "summary:", 8) == 0) summary = strtod (line + 8, NULL);
    }
    if (f) fclose (f);
    return isnan (totals) ? summary : totals;
}

//  zhost-batch: the broker's instructions per element without its start-up
//  and shutdown, which are a large share of a short batched run: a second
//  run of a tenth of the messages, (Ir(N) - Ir(N/10)) / (N - N/10).
static void
callgrind_marginal (void *ctx, sys_t s, const char *dir, cg_result_t *out)
{
    char path[PATH_MAX];
    server_t srv;
    tp_result_t res;
    size_t small = opts.cg_count / 10;
    snprintf (path, sizeof path, "%s/callgrind.%s.small.out", dir, sys_names[s]);
    if (small == 0 || server_start (&srv, s, path) < 0) return;
    throughput_run (ctx, &srv, opts.cg_pairs, (size_t)opts.cg_size, small, &res);
    server_stop (&srv, 120000);
    double ir = callgrind_total (path);
    if (res.received == res.expected && out->messages > res.received)
        out->marginal = (out->total_ir - ir) / (double)(out->messages - res.received);
    fprintf (stderr, "callgrind %s, %zu msgs per sender: %.0f Ir; marginal %.1f Ir/msg\n",
             sys_names[s], small, ir, out->marginal);
    if (!opts.cg_dir) remove (path);
}

//  One server under callgrind: a 1→1 64 B run, SIGTERM, read the totals.
static void
callgrind_one (void *ctx, sys_t s, const char *dir)
{
    char path[PATH_MAX];
    server_t srv;
    tp_result_t res;
    cg_result_t *out = &cg[s];
    snprintf (path, sizeof path, "%s/callgrind.%s.out", dir, sys_names[s]);
    out->run = true;
    if (server_start (&srv, s, path) < 0) {
        snprintf (out->error, sizeof out->error, "did not start under valgrind");
        return;
    }
    throughput_run (ctx, &srv, opts.cg_pairs, (size_t)opts.cg_size, opts.cg_count, &res);
    fprintf (stderr, "callgrind %-8s: %zu/%zu messages in %.1f s%s%s\n", sys_names[s], res.received,
             res.expected, res.seconds, res.error[0] ? "  " : "", res.error);
    server_stop (&srv, 120000);
    out->messages = res.received;
    out->total_ir = callgrind_total (path);
    if (s == SYS_ZHOST2) {
        char path_b[PATH_MAX + 2];
        snprintf (path_b, sizeof path_b, "%s.b", path);
        out->ir_b = callgrind_total (path_b);
        out->total_ir += out->ir_b;
        if (!opts.cg_dir) remove (path_b);
    }
    out->per_msg = res.received ? out->total_ir / (double)res.received : NAN;
    if (res.received != res.expected)
        snprintf (out->error, sizeof out->error, "%zu of %zu arrived", res.received, res.expected);
    if (isnan (out->total_ir))
        snprintf (out->error, sizeof out->error, "no totals in %.200s", path);
    if (!opts.cg_dir) remove (path);
    if (s == SYS_ZHOSTB && res.received == res.expected) callgrind_marginal (ctx, s, dir, out);
}

static int
measure_callgrind (void *ctx)
{
    char tmp[] = "/tmp/zhost-bench-cg-XXXXXX";
    const char *dir = opts.cg_dir;
    if (!dir && !(dir = mkdtemp (tmp))) return -1;
    if (opts.cg_dir) mkdir (dir, 0755);
    int saved = opts.timeout_ms;
    opts.timeout_ms = saved > 120000 ? saved : 120000; //  valgrind is ~50x slower
    opts.time_limit_ms = opts.time_limit_ms > 1800000 ? opts.time_limit_ms : 1800000;
    for (int s = 0; s < SYS_COUNT; s++)
        if (opts.enabled[s]) callgrind_one (ctx, (sys_t)s, dir);
    opts.timeout_ms = saved;
    if (!opts.cg_dir) rmdir (dir);
    return 0;
}

//  ---------------------------------------------------------------------
//  Command line

static void
usage (FILE *f)
{
    fprintf (f, "usage: zhost-bench [options]             throughput and latency, all systems\n"
                "       zhost-bench --callgrind [options] instructions per forwarded message\n"
                "       zhost-bench --forwarder ENDPOINT  run the classic forwarder (child mode)\n"
                "       zhost-bench --bare ENDPOINT       run the bare forwarder (child mode)\n"
                "options:\n"
                "  --broker PATH        zhost-broker (default: $ZHOST_BROKER, next to this\n"
                "                       program, or ../build-broker/zhost-broker)\n"
                "  --systems LIST       comma list of zhost,classic,bare,zhost2,zhost-batch,nats\n"
                "                       (default all; zhost2: two brokers, client -> A -> B ->\n"
                "                       client; zhost-batch: clients that negotiate BATCH,\n"
                "                       senders packing their SENDs into BATCH frames; nats:\n"
                "                       nats-server with libnats clients)\n"
                "  --batch-elements N   zhost-batch: most SENDs per BATCH frame (256; never\n"
                "                       over the broker's batch_max_bytes)\n"
                "  --nats-server PATH   nats-server (default: on PATH, or /usr/sbin)\n"
                "  --count N            messages per sender per 64 B throughput run (1000000)\n"
                "  --count-1k N         messages per sender per 1 KiB throughput run (250000)\n"
                "  --rtt-count N        round trips per latency run (20000)\n"
                "  --warmup N           uncounted round trips first (1000)\n"
                "  --repeat N           runs per figure, median reported (3, max 15)\n"
                "  --hwm N              high-water mark on every socket and the broker (1000000)\n"
                "  --timeout MS         silence after which a run gives up (5000)\n"
                "  --time-limit MS      bound on one run (120000)\n"
                "  --client-ctx own|shared  each client its own zmq context, as separate\n"
                "                       programs have (own, the default), or one context\n"
                "                       for all clients of the bench (shared)\n"
                "  --io-threads N       io threads of each client context (1)\n"
                "  --callgrind-count N  messages per sender in a --callgrind run (100000)\n"
                "  --callgrind-pairs N  senders (each to its own receiver) of that run (1)\n"
                "  --callgrind-size N   payload bytes of that run (64)\n"
                "  --callgrind-dir DIR  keep callgrind.<system>.out files there\n"
                "  --json               print JSON instead of the table\n"
                "  --bare-as-zhp        pad the bare forwarder's frames to the length of\n"
                "                       zhost's SEND frames (same bytes, no head)\n"
                "  --pin                every server on the last CPU, the clients (this\n"
                "                       process) on the others (needs 2 CPUs or more)\n"
                "  --scrape-hz N        brokers run with --metrics and a thread GETs\n"
                "                       /metrics N times a second while they serve (0)\n"
                "spawn/stop latency and libzhost (also part of the default run):\n"
                "  --spawn-latency      only: spawn -> READY and stop -> exit latency of\n"
                "                       zh-test-proc through the host agent, and a stop_all\n"
                "  --test-proc PATH     zh-test-proc (default: next to this program)\n"
                "  --spawn-count N      procs spawned and stopped one at a time (50)\n"
                "  --max-in-flight N    of the stop_all of as many procs (16)\n"
                "  --lib                only: libzhost clients beside raw zhost clients (64 B\n"
                "                       1->1 throughput, rtt), and client-side instructions\n"
                "  --lib-callgrind-count N  messages of that callgrind run, 0: none (20000)\n"
                "       zhost-bench --client-raw|--client-lib ENDPOINT  one 64 B 1->1 run\n"
                "                       against a broker (child mode, run under callgrind)\n");
}

static bool
file_exists (const char *path)
{
    return access (path, X_OK) == 0;
}

static const char *
find_broker (const char *self)
{
    static char path[PATH_MAX];
    const char *env = getenv ("ZHOST_BROKER");
    if (env && *env) return env;
    char dir[PATH_MAX];
    snprintf (dir, sizeof dir, "%s", self);
    char *slash = strrchr (dir, '/');
    if (slash) *slash = 0;
    if (snprintf (path, sizeof path, "%s/zhost-broker", dir) < (int)sizeof path &&
        file_exists (path))
        return path;
    if (snprintf (path, sizeof path, "%s/../build-broker/zhost-broker", dir) < (int)sizeof path &&
        file_exists (path))
        return path;
    return NULL;
}

static const char *
find_test_proc (const char *self)
{
    static char path[PATH_MAX];
    char dir[PATH_MAX];
    snprintf (dir, sizeof dir, "%s", self);
    char *slash = strrchr (dir, '/');
    if (slash) *slash = 0;
    if (snprintf (path, sizeof path, "%s/zh-test-proc", dir) < (int)sizeof path &&
        file_exists (path))
        return path;
    return NULL;
}

//  nats-server: on PATH, else Debian's /usr/sbin/nats-server. NULL if none.
static const char *
find_nats_server (void)
{
    static char path[PATH_MAX];
    const char *env = getenv ("PATH");
    char dirs[4096];
    snprintf (dirs, sizeof dirs, "%s:/usr/sbin:/usr/local/sbin", env ? env : "/usr/bin:/bin");
    char *save = NULL;
    for (char *d = strtok_r (dirs, ":", &save); d; d = strtok_r (NULL, ":", &save))
        if (snprintf (path, sizeof path, "%s/nats-server", *d ? d : ".") < (int)sizeof path &&
            file_exists (path))
            return path;
    return NULL;
}

//  A comma list of system names; each must be one. 0 or -1.
static int
parse_systems (const char *list)
{
    char copy[256], *save = NULL;
    snprintf (copy, sizeof copy, "%s", list);
    memset (opts.enabled, 0, sizeof opts.enabled);
    for (char *name = strtok_r (copy, ",", &save); name; name = strtok_r (NULL, ",", &save)) {
        int s = 0;
        while (s < SYS_COUNT && strcmp (name, sys_names[s]))
            s++;
        if (s == SYS_COUNT) return -1;
        opts.enabled[s] = true;
    }
    for (int s = 0; s < SYS_COUNT; s++)
        if (opts.enabled[s]) return 0;
    return -1;
}

static long
parse_num (const char *flag, const char *text, long min, long max)
{
    char *end;
    long v = strtol (text, &end, 10);
    if (*end || end == text || v < min || v > max) {
        fprintf (stderr, "zhost-bench: %s: bad value '%s' (%ld..%ld)\n", flag, text, min, max);
        exit (2);
    }
    return v;
}

//  The numeric options: flag, where, bounds.
typedef struct {
    const char *flag;
    size_t *size;
    int *num;
    long min, max;
} num_opt_t;

static const num_opt_t num_opts[] = {
    {"--count", &opts.count, NULL, 1, 100000000},
    {"--count-1k", &opts.count_1k, NULL, 1, 100000000},
    {"--rtt-count", &opts.rtt_count, NULL, 1, 10000000},
    {"--warmup", &opts.warmup, NULL, 0, 10000000},
    {"--callgrind-count", &opts.cg_count, NULL, 1, 100000000},
    {"--callgrind-pairs", NULL, &opts.cg_pairs, 1, 16},
    {"--callgrind-size", NULL, &opts.cg_size, 1, 1048576},
    {"--repeat", NULL, &opts.repeat, 1, MAX_REPEAT},
    {"--hwm", NULL, &opts.hwm, 0, INT_MAX},
    {"--timeout", NULL, &opts.timeout_ms, 100, 3600000},
    {"--time-limit", NULL, &opts.time_limit_ms, 100, 86400000},
    {"--io-threads", NULL, &opts.io_threads, 1, 16},
    {"--spawn-count", &opts.spawn_count, NULL, 1, 10000},
    {"--max-in-flight", NULL, &opts.max_in_flight, 1, 10000},
    {"--lib-callgrind-count", &opts.lib_cg_count, NULL, 0, 10000000},
    {"--scrape-hz", NULL, &opts.scrape_hz, 0, 1000},
    {"--batch-elements", NULL, &opts.batch_elements, 1, 1000000},
};

//  A numeric option: set it and return true; false if a is not one.
static bool
parse_num_opt (const char *a, const char *v)
{
    for (size_t k = 0; k < sizeof num_opts / sizeof num_opts[0]; k++) {
        const num_opt_t *o = &num_opts[k];
        if (strcmp (a, o->flag) != 0) continue;
        long n = parse_num (a, v, o->min, o->max);
        if (o->size)
            *o->size = (size_t)n;
        else
            *o->num = (int)n;
        return true;
    }
    return false;
}

//  An option with a string value: set it and return true.
static bool
parse_str_opt (const char *a, const char *v, const char **broker, const char **endpoint,
               sys_t *child)
{
    if (!strcmp (a, "--forwarder") || !strcmp (a, "--bare")) {
        *child = a[2] == 'b' ? SYS_BARE : SYS_CLASSIC;
        *endpoint = v;
    } else if (!strcmp (a, "--client-raw") || !strcmp (a, "--client-lib")) {
        *child = !strcmp (a, "--client-lib") ? CHILD_LIB : CHILD_RAW;
        *endpoint = v;
    } else if (!strcmp (a, "--test-proc"))
        opts.test_proc = v;
    else if (!strcmp (a, "--broker"))
        *broker = v;
    else if (!strcmp (a, "--nats-server"))
        opts.nats_server = v;
    else if (!strcmp (a, "--callgrind-dir"))
        opts.cg_dir = v;
    else if (!strcmp (a, "--client-ctx")) {
        if (strcmp (v, "own") && strcmp (v, "shared"))
            fprintf (stderr, "zhost-bench: --client-ctx %s: own or shared\n", v), exit (2);
        opts.client_ctx_own = !strcmp (v, "own");
    } else if (!strcmp (a, "--systems")) {
        if (parse_systems (v) < 0) fprintf (stderr, "zhost-bench: --systems %s\n", v), exit (2);
    } else
        return false;
    return true;
}

//  A flag without a value: set it and return true.
static bool
parse_flag (const char *a)
{
    if (!strcmp (a, "--callgrind"))
        opts.callgrind = true;
    else if (!strcmp (a, "--spawn-latency"))
        opts.spawn_mode = true;
    else if (!strcmp (a, "--lib"))
        opts.lib_mode = true;
    else if (!strcmp (a, "--json"))
        opts.json = true;
    else if (!strcmp (a, "--bare-as-zhp"))
        opts.bare_as_zhp = true;
    else if (!strcmp (a, "--pin"))
        opts.pin = true;
    else if (!strcmp (a, "--help") || !strcmp (a, "-h"))
        usage (stdout), exit (0);
    else
        return false;
    return true;
}

//  Parse argv into opts. Returns the forwarder to run (SYS_COUNT: none).
static sys_t
parse_args (int argc, char **argv, const char **endpoint)
{
    const char *broker = NULL;
    sys_t child = SYS_COUNT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (parse_flag (a)) continue;
        if (i + 1 == argc) {
            fprintf (stderr, "zhost-bench: unknown option or missing value: %s\n", a);
            usage (stderr);
            exit (2);
        }
        const char *v = argv[++i];
        if (!parse_num_opt (a, v) && !parse_str_opt (a, v, &broker, endpoint, &child)) {
            fprintf (stderr, "zhost-bench: unknown option %s\n", a);
            usage (stderr);
            exit (2);
        }
    }
    opts.broker = broker ? broker : find_broker (opts.self);
    if (!opts.test_proc) opts.test_proc = find_test_proc (opts.self);
    if (!opts.nats_server) opts.nats_server = find_nats_server ();
    return child;
}

int
main (int argc, char **argv)
{
    static char self[PATH_MAX];
    ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = 0;
    opts.self = self;
    const char *endpoint = NULL;
    sys_t child = parse_args (argc, argv, &endpoint);
    if (child == CHILD_RAW || child == CHILD_LIB)
        return client_child_main (child == CHILD_LIB, endpoint);
    if (child != SYS_COUNT) return forwarder_main (child, endpoint);
    if ((opts.enabled[SYS_ZHOST] || opts.enabled[SYS_ZHOST2] || opts.enabled[SYS_ZHOSTB]) &&
        (!opts.broker || !file_exists (opts.broker))) {
        fprintf (stderr, "zhost-bench: no zhost-broker found (--broker PATH); measuring the "
                         "baselines only\n");
        opts.enabled[SYS_ZHOST] = opts.enabled[SYS_ZHOST2] = opts.enabled[SYS_ZHOSTB] = false;
    }
    if (opts.enabled[SYS_NATS] && (!opts.nats_server || !file_exists (opts.nats_server))) {
        fprintf (stderr, "zhost-bench: no nats-server found (--nats-server PATH; Debian's "
                         "nats-server package); not measuring nats\n");
        opts.enabled[SYS_NATS] = false;
    }
    if (opts.callgrind && opts.enabled[SYS_NATS]) {
        //  nats-server is a Go program: valgrind does not count it usefully.
        if (opts.json == false)
            fprintf (stderr, "zhost-bench: --callgrind: nats-server is not counted (a Go "
                             "program under valgrind)\n");
        opts.enabled[SYS_NATS] = false;
    }
    bool any = false;
    for (int s = 0; s < SYS_COUNT; s++)
        any |= opts.enabled[s];
    if (!any) return 1;
    long ncpu = sysconf (_SC_NPROCESSORS_ONLN);
    if (opts.pin && (ncpu < 2 || pin_to_cpus (0, ncpu - 1) < 0)) {
        fprintf (stderr, "zhost-bench: --pin: %s\n",
                 ncpu < 2 ? "needs 2 CPUs or more" : strerror (errno));
        return 2;
    }
    void *ctx = zmq_ctx_new ();
    zmq_ctx_set (ctx, ZMQ_IO_THREADS, opts.io_threads);
    int rc = 0;
    bool spawn = opts.spawn_mode || (!opts.lib_mode && !opts.callgrind);
    if (opts.callgrind)
        rc = measure_callgrind (ctx);
    else if (opts.lib_mode)
        rc = opts.enabled[SYS_ZHOST] ? measure_lib (ctx) : -1;
    else if (!opts.spawn_mode)
        rc = measure_all (ctx);
    if (rc == 0 && spawn && opts.enabled[SYS_ZHOST]) {
        if (measure_spawn (ctx) < 0 && opts.spawn_mode) rc = -1;
        if (!opts.spawn_mode && spawn_res.error[0])
            fprintf (stderr, "zhost-bench: spawn latency: %s\n", spawn_res.error);
    }
    zmq_ctx_term (ctx);
    if (opts.json)
        print_json ();
    else if (opts.callgrind)
        print_callgrind ();
    else {
        if (!opts.spawn_mode && !opts.lib_mode) print_table ();
        print_lib ();
        print_spawn ();
    }
    free (spawn_res.spawn_ns);
    free (spawn_res.stop_ns);
    return rc < 0 ? 1 : 0;
}
