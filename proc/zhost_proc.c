/*  zhost_proc.c — a proc's connection to its broker, and its loop.

    Where it sits: at the bottom of libzhost. It owns the DEALER socket:
    boot (spawned: ZHOST_* → connect the backend with ROUTING_ID = proc id
    → READY) or attach (client: random routing id → ATTACH → BOOTSTRAP),
    then the loop that reads whole messages and hands SEND and RETURN to
    zhost_actor.c, answers PING, honours STOP and BYE, sends heartbeats,
    expires requests (zhost_request.c) and finally stops cleanly.

    Every message leaves through zhost_send_frames, which never blocks:
    when the socket's queue is full, the message waits in the proc's own
    queue (outq), and later messages wait behind it so order is kept.

    PL-3 (batching adds no latency; BATCH is docs/protocol.md §14): when
    the broker takes BATCH, a one-frame SEND or RETURN made while a step
    runs (in a handler, a bounce, a request's callback) or while the
    program corked waits in the proc's batch; the step sends it before it ends (and
    before it waits, for a handler's blocking request), as BATCH frames of
    at most batch_max bytes. Anything else (payload frames, a control
    command) sends the batch first. A post outside a step, uncorked,
    leaves at once as before. A received BATCH is walked in place and each
    element dispatched as the same message alone.

    PL-1 (bounded waits): nothing here waits without a deadline. The loop
    sleeps at most until the next timer (heartbeat, liveness, request
    timeout); attach waits 5 s for BOOTSTRAP; stop waits 3 × heartbeat
    for the broker's BYE; the socket lingers at most 1 s.

    PL-2 (stop at the outermost level): a STOP, a signal or a stop asked
    from inside a handler is only recorded while a handler runs (depth >
    0, e.g. a handler blocked in zhost_proc_request); the outermost step
    performs it, so the socket is never closed under a running dispatch.
*/
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "zh_curve_keys.h"
#include "zh_handshake.h"
#include "zh_wire.h"
#include "zhost_int.h"

#define S_ATTACH_TIMEOUT_MS 5000

//  The public zhost_curve_t is the internal zh_curve_keys_t, field for field.
_Static_assert(sizeof (zhost_curve_t) == sizeof (zh_curve_keys_t), "curve layout");
_Static_assert(offsetof (zhost_curve_t, public_key) == offsetof (zh_curve_keys_t, public_key),
               "curve layout");
_Static_assert(offsetof (zhost_curve_t, secret_key) == offsetof (zh_curve_keys_t, secret_key),
               "curve layout");
#define S_LINGER_MS     1000
#define S_LIVENESS      3
#define S_BATCH         1000   //  messages handled per step
#define S_OUTQ_MAX      100000 //  messages waiting in the proc's queue
#define S_SOCKET_HWM    10000  //  the DEALER's SNDHWM and RCVHWM
#define S_SMALL_FRAMES  8
#define S_BATCH_DEFAULT 262144  //  batch_max_bytes when BOOTSTRAP says batch but no bound
#define S_BATCH_CAP     1048576 //  our BATCH frames are at most this, whatever the bound

static volatile sig_atomic_t s_signalled = 0;

//  ---------------------------------------------------------------------
//  Small helpers

int64_t
zhost_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
zhost_error_put (zhost_error_t *err, zhost_errno_t code, const char *format, ...)
{
    if (!err) return;
    err->code = code;
    err->broker_code = 0;
    va_list ap;
    va_start (ap, format);
    vsnprintf (err->message, sizeof err->message, format, ap);
    va_end (ap);
}

bool
zhost_proc_open (zhost_proc_t *self)
{
    return self->sock != NULL && self->status != ZHOST_STOPPED && self->status != ZHOST_CLOSED;
}

//  A received multipart message: a few frames on the stack, more on the heap.
typedef struct {
    zmq_msg_t small[S_SMALL_FRAMES];
    zmq_msg_t *frames;
    size_t count;
    size_t cap;
} s_inmsg_t;

static void
s_inmsg_close (s_inmsg_t *in)
{
    for (size_t i = 0; i < in->count; i++)
        zmq_msg_close (&in->frames[i]);
    if (in->frames != in->small) free (in->frames);
    in->frames = NULL;
    in->count = 0;
}

//  Read one whole message without waiting. 1 = got one, 0 = none, -1 =
//  socket error. Parts beyond ZH_MAX_FRAMES + 1 are read and dropped
//  (then the message is refused by its caller: count > the cap).
static int
s_recv (zhost_proc_t *self, s_inmsg_t *in, bool *oversize)
{
    in->frames = in->small;
    in->cap = S_SMALL_FRAMES;
    in->count = 0;
    *oversize = false;
    int flags = ZMQ_DONTWAIT;
    while (true) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, self->sock, flags) < 0) {
            int e = errno;
            zmq_msg_close (&part);
            s_inmsg_close (in);
            if (e == EAGAIN || e == EINTR) return 0;
            return -1;
        }
        flags = 0; //  the rest of a multipart message is already here
        bool more = zmq_msg_more (&part);
        if (in->count == ZH_MAX_FRAMES + 1) {
            *oversize = true;
            zmq_msg_close (&part);
        } else {
            if (in->count == in->cap) {
                size_t cap = in->cap * 4;
                zmq_msg_t *grown = (zmq_msg_t *)malloc (cap * sizeof (zmq_msg_t));
                if (!grown) abort ();
                memcpy (grown, in->frames, in->count * sizeof (zmq_msg_t));
                if (in->frames != in->small) free (in->frames);
                in->frames = grown;
                in->cap = cap;
            }
            memcpy (&in->frames[in->count++], &part, sizeof part);
        }
        if (!more) return 1;
    }
}

//  ---------------------------------------------------------------------
//  Sending

//  Try to hand a whole message to the socket. 0 sent (frames now empty),
//  1 the socket's queue is full (frames untouched), -1 error.
static int
s_try_send (zhost_proc_t *self, zmq_msg_t *frames, size_t count)
{
    int flags = ZMQ_DONTWAIT | (count > 1 ? ZMQ_SNDMORE : 0);
    if (zmq_msg_send (&frames[0], self->sock, flags) < 0) return errno == EAGAIN ? 1 : -1;
    //  libzmq takes a multipart message whole once its first part is in.
    for (size_t i = 1; i < count; i++)
        zmq_msg_send (&frames[i], self->sock, i + 1 < count ? ZMQ_SNDMORE : 0);
    self->last_send = zhost_now_ms ();
    return 0;
}

//  force: past S_OUTQ_MAX (a batch whose posts were accepted already).
static int
s_enqueue (zhost_proc_t *self, zmq_msg_t *frames, size_t count, bool force)
{
    if (self->outq_count >= S_OUTQ_MAX && !force) {
        errno = EAGAIN;
        return -1;
    }
    zhost_outmsg_t *out =
        (zhost_outmsg_t *)malloc (sizeof (zhost_outmsg_t) + count * sizeof (zmq_msg_t));
    if (!out) return -1;
    out->next = NULL;
    out->count = count;
    for (size_t i = 0; i < count; i++) {
        zmq_msg_init (&out->frames[i]);
        zmq_msg_move (&out->frames[i], &frames[i]);
    }
    if (self->outq_tail)
        self->outq_tail->next = out;
    else
        self->outq_head = out;
    self->outq_tail = out;
    self->outq_count++;
    return 0;
}

//  Send what waits in outq, in order, until the socket is full again.
static void
s_flush_outq (zhost_proc_t *self)
{
    while (self->outq_head && self->sock) {
        zhost_outmsg_t *out = self->outq_head;
        int rc = s_try_send (self, out->frames, out->count);
        if (rc == 1) return;
        if (rc < 0)
            zh_warn ("send-failed", "proc=%s error=\"%s\"", self->addr, zmq_strerror (errno));
        self->outq_head = out->next;
        if (!self->outq_head) self->outq_tail = NULL;
        self->outq_count--;
        for (size_t i = 0; i < out->count; i++)
            zmq_msg_close (&out->frames[i]);
        free (out);
    }
}

static void
s_outq_discard (zhost_proc_t *self)
{
    while (self->outq_head) {
        zhost_outmsg_t *out = self->outq_head;
        self->outq_head = out->next;
        for (size_t i = 0; i < out->count; i++)
            zmq_msg_close (&out->frames[i]);
        free (out);
    }
    self->outq_tail = NULL;
    self->outq_count = 0;
}

//  One message the lone way: at once, or behind what waits in outq.
static int
s_send_lone (zhost_proc_t *self, zmq_msg_t *frames, size_t count, bool force)
{
    if (!self->sock) {
        errno = ENOTCONN;
        return -1;
    }
    if (!self->outq_head) {
        int rc = s_try_send (self, frames, count);
        if (rc <= 0) return rc;
    }
    return s_enqueue (self, frames, count, force);
}

//  PL-3: posts wait in the batch while a step runs or the program corked.
static bool
s_batching (zhost_proc_t *self)
{
    return self->batch_max && (self->depth > 0 || self->corked);
}

static void
s_batch_discard (zhost_proc_t *self)
{
    if (self->batch_count == 1) zmq_msg_close (&self->batch_first);
    self->batch_count = 0;
    self->batch_used = 0;
}

//  Send what waits in the batch: one element as a lone message, more as
//  one BATCH frame. Its posts were accepted, so it may go past the
//  queue's bound (by one frame: a post finding the queue full is refused,
//  as a lone one is). 0, or -1 (logged: the socket is gone).
static int
s_batch_flush (zhost_proc_t *self)
{
    if (self->batch_count == 0) return 0;
    size_t count = self->batch_count;
    int rc = -1;
    if (count == 1)
        rc = s_send_lone (self, &self->batch_first, 1, true);
    else {
        zmq_msg_t frame;
        if (zmq_msg_init_size (&frame, self->batch_used) == 0) {
            memcpy (zmq_msg_data (&frame), self->batch_buf, self->batch_used);
            rc = s_send_lone (self, &frame, 1, true);
            zmq_msg_close (&frame);
        }
    }
    s_batch_discard (self);
    if (rc != 0)
        zh_warn ("send-failed", "proc=%s messages=%zu error=\"%s\"", self->addr, count,
                 zmq_strerror (errno));
    return rc;
}

//  Add a one-frame SEND or RETURN to the batch (taken over: moved, or
//  copied and left to the caller to close). A batch that cannot hold it
//  is sent first. 0, or -1 with EAGAIN when the proc's queue is full.
static int
s_batch_add (zhost_proc_t *self, zmq_msg_t *frame)
{
    if (self->outq_head && self->outq_count >= S_OUTQ_MAX) {
        errno = EAGAIN;
        return -1;
    }
    const uint8_t *data = (const uint8_t *)zmq_msg_data (frame);
    size_t size = zmq_msg_size (frame);
    if (self->batch_count == 1) {
        size_t first = zmq_msg_size (&self->batch_first);
        size_t overhead = ZH_HEADER_SIZE + 2 * ZH_BATCH_LEN_SIZE;
        bool fits = self->batch_max > overhead && first + size <= self->batch_max - overhead;
        if (fits && !self->batch_buf) self->batch_buf = (uint8_t *)malloc (self->batch_max);
        if (fits && self->batch_buf) {
            zh_header_write (self->batch_buf, ZH_BATCH, 0, 0);
            self->batch_used = ZH_HEADER_SIZE;
            zh_batch_put (self->batch_buf, self->batch_max, &self->batch_used,
                          (const uint8_t *)zmq_msg_data (&self->batch_first), first);
            zh_batch_put (self->batch_buf, self->batch_max, &self->batch_used, data, size);
            zmq_msg_close (&self->batch_first);
            self->batch_count = 2;
            return 0;
        }
    } else if (self->batch_count > 1 && zh_batch_put (self->batch_buf, self->batch_max,
                                                      &self->batch_used, data, size) == 0) {
        self->batch_count++;
        return 0;
    }
    s_batch_flush (self);
    zmq_msg_init (&self->batch_first);
    zmq_msg_move (&self->batch_first, frame);
    self->batch_count = 1;
    return 0;
}

int
zhost_send_frames (zhost_proc_t *self, zmq_msg_t *frames, size_t count)
{
    if (!self->sock) {
        errno = ENOTCONN;
        return -1;
    }
    if (count == 1 && s_batching (self) && zmq_msg_size (&frames[0]) >= ZH_HEADER_SIZE &&
        zh_command_has_head (((const uint8_t *)zmq_msg_data (&frames[0]))[3]))
        return s_batch_add (self, &frames[0]);
    s_batch_flush (self); //  PL-3: order
    return s_send_lone (self, frames, count, false);
}

int
zhost_proc_cork (zhost_proc_t *self)
{
    if (!zhost_proc_open (self)) return -1;
    self->corked = true;
    return 0;
}

int
zhost_proc_flush (zhost_proc_t *self)
{
    self->corked = false;
    if (!zhost_proc_open (self)) return -1;
    return s_batch_flush (self);
}

size_t
zhost_proc_batch_max_bytes (zhost_proc_t *self)
{
    return self->batch_max;
}

//  A control command: [header] or [header][body] (zh_wire), through the
//  proc's queue like every other message.
static int
s_send_command (zhost_proc_t *self, uint8_t command, const zh_body_t *body)
{
    zmq_msg_t frames[2];
    size_t count = 0;
    if (zh_wire_command_frames (frames, &count, command, body) != 0) return -1;
    int rc = zhost_send_frames (self, frames, count);
    for (size_t i = 0; i < count; i++)
        zmq_msg_close (&frames[i]);
    return rc;
}

static void
s_send_bye (zhost_proc_t *self, const char *reason)
{
    zh_body_t body = {.command = ZH_BYE, .present = ZH_F_REASON, .reason = zh_span_of (reason)};
    s_send_command (self, ZH_BYE, &body);
}

//  ---------------------------------------------------------------------
//  Construction

static zhost_proc_t *
s_proc_new (void)
{
    zhost_proc_t *self = (zhost_proc_t *)calloc (1, sizeof (zhost_proc_t));
    if (!self) return NULL;
    self->next_once = ZHOST_ONCE_PORT_BASE;
    self->heartbeat_ms = 1000;
    return self;
}

//  Socket and connect. routing id and endpoint are the caller's.
static int
s_connect (zhost_proc_t *self, const void *rid, size_t rid_len, const zh_curve_keys_t *keys,
           zh_handshake_t **watch, zhost_error_t *err)
{
    self->ctx = zmq_ctx_new ();
    self->sock = self->ctx ? zmq_socket (self->ctx, ZMQ_DEALER) : NULL;
    if (!self->sock) {
        zhost_error_put (err, ZHOST_E_SOCKET, "cannot create a DEALER socket: %s",
                         zmq_strerror (errno));
        return -1;
    }
    int linger = S_LINGER_MS;
    zmq_setsockopt (self->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (self->sock, ZMQ_ROUTING_ID, rid, rid_len);
    //  As deep as the broker's own queue toward us (its default --hwm), so
    //  a burst goes to libzmq rather than through the proc's queue.
    int hwm = S_SOCKET_HWM;
    zmq_setsockopt (self->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (self->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (keys && zh_curve_keys_apply (keys, self->sock) != 0) {
        zhost_error_put (err, ZHOST_E_SOCKET, "cannot set the CURVE keys: %s",
                         zmq_strerror (errno));
        return -1;
    }
    //  Watched until BOOTSTRAP, so that a refused handshake is an error
    //  now rather than a silent timeout (without it: only the timeout).
    if (watch) *watch = zh_handshake_new (self->ctx, self->sock, keys != NULL);
    if (zmq_connect (self->sock, self->endpoint) != 0) {
        zhost_error_put (err, ZHOST_E_SOCKET, "cannot connect to %s: %s", self->endpoint,
                         zmq_strerror (errno));
        return -1;
    }
    self->last_send = self->last_recv = zhost_now_ms ();
    return 0;
}

static void
s_proc_free (zhost_proc_t **self_p)
{
    zhost_proc_t *self = *self_p;
    if (!self) return;
    for (size_t i = 0; i < self->actor_count; i++)
        zhost_actor_destroy (&self->actors[i]);
    free (self->actors);
    s_batch_discard (self);
    free (self->batch_buf);
    s_outq_discard (self);
    if (self->sock) zmq_close (self->sock);
    if (self->ctx) zmq_ctx_term (self->ctx);
    free (self);
    *self_p = NULL;
}

static const char *
s_env (const char *key, zhost_error_t *err)
{
    const char *value = getenv (key);
    if (!value || !*value)
        zhost_error_put (err, ZHOST_E_ENV_MISSING,
                         "%s is not set (a spawned proc gets it from zhost-broker)", key);
    return value && *value ? value : NULL;
}

//  ZHOST_BATCH → batch_want: unset, empty, 1, true, on, yes offer BATCH;
//  0, false, off, no do not (attached and spawned procs alike).
static int
s_read_batch_want (zhost_proc_t *self, zhost_error_t *err)
{
    static const char *const yes[] = {"", "1", "true", "on", "yes"};
    static const char *const no[] = {"0", "false", "off", "no"};
    const char *value = getenv ("ZHOST_BATCH");
    self->batch_want = true;
    if (!value) return 0;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (strcmp (value, yes[i]) == 0) return 0;
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (strcmp (value, no[i]) == 0) {
            self->batch_want = false;
            return 0;
        }
    zhost_error_put (err, ZHOST_E_ENV_INVALID,
                     "ZHOST_BATCH=%s is not 1 or 0 (true/false, on/off, yes/no)", value);
    return -1;
}

//  The bound we batch to: the broker's, never over max_msg_bytes (when
//  known) nor S_BATCH_CAP; 0 when either side does not batch.
static void
s_set_batch_max (zhost_proc_t *self, uint64_t bound)
{
    if (self->max_msg_bytes && bound > self->max_msg_bytes) bound = self->max_msg_bytes;
    if (bound > S_BATCH_CAP) bound = S_BATCH_CAP;
    self->batch_max = self->batch_want ? (size_t)bound : 0;
}

//  ZHOST_PROC → addr, proc_id; ZHOST_HOST → host; ZHOST_BACKEND →
//  endpoint; ZHOST_HEARTBEAT_MS → heartbeat_ms; ZHOST_BATCH and
//  ZHOST_BATCH_MAX_BYTES (absent or 0: the broker takes no BATCH) →
//  batch_want, batch_max.
static int
s_read_env (zhost_proc_t *self, zhost_error_t *err)
{
    const char *proc = s_env ("ZHOST_PROC", err);
    if (!proc) return -1;
    zh_addr_t addr;
    zh_error_t perr;
    if (zh_addr_parse_kind (&addr, ZH_ADDR_PROC, proc, strlen (proc), &perr) != 0) {
        zhost_error_put (err, ZHOST_E_ENV_INVALID, "ZHOST_PROC=%s is not a proc address: %s", proc,
                         perr.reason);
        return -1;
    }
    snprintf (self->addr, sizeof self->addr, "%s", proc);
    snprintf (self->proc_id, sizeof self->proc_id, "%.*s", (int)addr.proc.text.len,
              addr.proc.text.ptr);
    const char *backend = s_env ("ZHOST_BACKEND", err);
    if (!backend) return -1;
    if (zh_endpoint_check (backend, strlen (backend), &perr) != 0) {
        zhost_error_put (err, ZHOST_E_ENV_INVALID, "ZHOST_BACKEND=%s is not an endpoint: %s",
                         backend, perr.reason);
        return -1;
    }
    snprintf (self->endpoint, sizeof self->endpoint, "%s", backend);
    const char *host = s_env ("ZHOST_HOST", err);
    if (!host) return -1;
    if (zh_endpoint_check (host, strlen (host), &perr) != 0) {
        zhost_error_put (err, ZHOST_E_ENV_INVALID, "ZHOST_HOST=%s is not an endpoint: %s", host,
                         perr.reason);
        return -1;
    }
    if (strlen (host) != addr.endpoint.len || memcmp (host, addr.endpoint.ptr, addr.endpoint.len)) {
        zhost_error_put (err, ZHOST_E_ENV_INVALID,
                         "ZHOST_HOST=%s is not the endpoint of ZHOST_PROC=%s", host, proc);
        return -1;
    }
    snprintf (self->host, sizeof self->host, "%s", host);
    const char *hb = s_env ("ZHOST_HEARTBEAT_MS", err);
    if (!hb) return -1;
    char *end = NULL;
    errno = 0;
    long ms = strtol (hb, &end, 10);
    if (errno || *end || end == hb || ms < 1 || ms > 3600000) {
        zhost_error_put (err, ZHOST_E_ENV_INVALID,
                         "ZHOST_HEARTBEAT_MS=%s is not a number of milliseconds (1..3600000)", hb);
        return -1;
    }
    self->heartbeat_ms = (int)ms;
    if (s_read_batch_want (self, err) != 0) return -1;
    const char *bmax = getenv ("ZHOST_BATCH_MAX_BYTES");
    uint64_t bound = 0;
    if (bmax && *bmax) {
        errno = 0;
        end = NULL;
        unsigned long long v = strtoull (bmax, &end, 10);
        if (errno || *end || end == bmax || bmax[0] == '-') {
            zhost_error_put (err, ZHOST_E_ENV_INVALID,
                             "ZHOST_BATCH_MAX_BYTES=%s is not a number of bytes", bmax);
            return -1;
        }
        bound = v;
    }
    s_set_batch_max (self, bound);
    return 0;
}

zhost_proc_t *
zhost_proc_boot (zhost_error_t *err)
{
    zhost_error_put (err, ZHOST_OK, "%s", "");
    zhost_proc_t *self = s_proc_new ();
    if (!self) {
        zhost_error_put (err, ZHOST_E_SOCKET, "out of memory");
        return NULL;
    }
    self->spawned = true;
    if (s_read_env (self, err) != 0 ||
        s_connect (self, self->proc_id, strlen (self->proc_id), NULL, NULL, err)) {
        s_proc_free (&self);
        return NULL;
    }
    zh_debug ("boot", "proc=%s backend=%s heartbeat_ms=%d batch_max_bytes=%zu", self->addr,
              self->endpoint, self->heartbeat_ms, self->batch_max);
    return self;
}

//  BOOTSTRAP → addr, proc_id, host, heartbeat, max_msg_bytes.
static int
s_take_bootstrap (zhost_proc_t *self, const zh_body_t *body, zhost_error_t *err)
{
    zh_addr_t addr;
    zh_error_t perr;
    if (zh_addr_parse_kind (&addr, ZH_ADDR_PROC, body->proc.ptr, body->proc.len, &perr) != 0 ||
        body->host.len > ZH_ENDPOINT_MAX) {
        zhost_error_put (err, ZHOST_E_REFUSED, "BOOTSTRAP proc %.*s is not a proc address",
                         (int)body->proc.len, body->proc.ptr);
        return -1;
    }
    snprintf (self->addr, sizeof self->addr, "%.*s", (int)body->proc.len, body->proc.ptr);
    snprintf (self->proc_id, sizeof self->proc_id, "%.*s", (int)addr.proc.text.len,
              addr.proc.text.ptr);
    snprintf (self->host, sizeof self->host, "%.*s", (int)addr.endpoint.len, addr.endpoint.ptr);
    if (body->heartbeat_ms > 0 && body->heartbeat_ms <= 3600000)
        self->heartbeat_ms = (int)body->heartbeat_ms;
    self->max_msg_bytes = body->max_msg_bytes;
    //  §14: batch: true (with its bound, or the default) lets us send BATCH.
    uint64_t bound = 0;
    if ((body->present & ZH_F_BATCH) && body->batch)
        bound = (body->present & ZH_F_BATCH_MAX_BYTES) ? body->batch_max_bytes : S_BATCH_DEFAULT;
    s_set_batch_max (self, bound);
    self->status = ZHOST_RUNNING;
    return 0;
}

//  Wait (bounded) for the answer to ATTACH: BOOTSTRAP or ERROR.
static int
s_await_bootstrap (zhost_proc_t *self, zh_handshake_t *watch, zhost_error_t *err)
{
    int64_t deadline = zhost_now_ms () + S_ATTACH_TIMEOUT_MS;
    while (true) {
        int64_t left = deadline - zhost_now_ms ();
        if (left <= 0) break;
        zmq_pollitem_t items[2] = {{self->sock, 0, ZMQ_POLLIN, 0},
                                   {watch ? zh_handshake_socket (watch) : NULL, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll (items, watch ? 2 : 1, (long)left) <= 0) continue;
        char why[256];
        if (watch && (items[1].revents & ZMQ_POLLIN) &&
            zh_handshake_read (watch, why, sizeof why) < 0) {
            zhost_error_put (err, ZHOST_E_REFUSED, "ATTACH: %s", why);
            return -1;
        }
        if (!(items[0].revents & ZMQ_POLLIN)) continue;
        s_inmsg_t in;
        bool oversize;
        if (s_recv (self, &in, &oversize) <= 0) continue;
        zh_msg_t msg;
        zh_error_t perr;
        zh_frame_view_t views[2];
        size_t n = in.count < 2 ? in.count : 2;
        for (size_t i = 0; i < n; i++)
            views[i] =
                (zh_frame_view_t){zmq_msg_data (&in.frames[i]), zmq_msg_size (&in.frames[i])};
        int rc = -1;
        bool done = false;
        if (in.count <= 2 && zh_msg_decode (&msg, views, n, &perr) == 0) {
            if (msg.hdr.command == ZH_BOOTSTRAP) {
                rc = s_take_bootstrap (self, &msg.body, err);
                done = true;
            } else if (msg.hdr.command == ZH_ERROR) {
                zhost_error_put (err, ZHOST_E_REFUSED, "ATTACH to %s refused: ERROR %lld %.*s",
                                 self->endpoint, (long long)msg.body.code, (int)msg.body.reason.len,
                                 msg.body.reason.ptr);
                if (err) err->broker_code = (int)msg.body.code;
                done = true;
            } else if (msg.hdr.command == ZH_PING)
                s_send_command (self, ZH_PONG, NULL);
        }
        s_inmsg_close (&in);
        if (done) return rc;
    }
    char why[256];
    if (watch && zh_handshake_read (watch, why, sizeof why) < 0) {
        zhost_error_put (err, ZHOST_E_REFUSED, "ATTACH: %s", why);
        return -1;
    }
    const char *why_not = "";
    if (watch && !zh_handshake_succeeded (watch))
        why_not = zh_handshake_connected (watch)
                      ? " (a connection was made but its ZMTP handshake never completed: is a "
                        "zhost broker listening there?)"
                      : " (no connection: is a broker listening there?)";
    zhost_error_put (err, ZHOST_E_TIMEOUT, "no BOOTSTRAP from %s within %d ms%s", self->endpoint,
                     S_ATTACH_TIMEOUT_MS, why_not);
    return -1;
}

int
zhost_curve_load (zhost_curve_t *curve, const char *server_cert, const char *client_cert,
                  zhost_error_t *err)
{
    zhost_error_put (err, ZHOST_OK, "%s", "");
    zh_curve_keys_t keys;
    zh_error_t perr;
    if (!curve) {
        zhost_error_put (err, ZHOST_E_INVALID, "%s", "curve: NULL");
        return -1;
    }
    if (zh_curve_keys_load (&keys, server_cert, client_cert, &perr) != 0) {
        zhost_error_put (err, ZHOST_E_INVALID, "%s", perr.reason);
        return -1;
    }
    memcpy (curve, &keys, sizeof *curve);
    return 0;
}

zhost_proc_t *
zhost_proc_attach (const char *endpoint, const char *label, zhost_error_t *err)
{
    return zhost_proc_attach_curve (endpoint, label, NULL, err);
}

zhost_proc_t *
zhost_proc_attach_curve (const char *endpoint, const char *label, const zhost_curve_t *curve,
                         zhost_error_t *err)
{
    zhost_error_put (err, ZHOST_OK, "%s", "");
    zh_error_t perr;
    if (!endpoint || zh_endpoint_check (endpoint, strlen (endpoint), &perr) != 0) {
        zhost_error_put (err, ZHOST_E_INVALID, "attach: endpoint %s: %s",
                         endpoint ? endpoint : "(null)", endpoint ? perr.reason : "missing");
        return NULL;
    }
    if (label && zh_label_check (label, strlen (label), &perr) != 0) {
        zhost_error_put (err, ZHOST_E_INVALID, "attach: label %s: %s", label, perr.reason);
        return NULL;
    }
    zh_curve_keys_t keys;
    if (curve) {
        memcpy (&keys, curve, sizeof keys);
        if (zh_curve_keys_check (&keys, &perr) != 0) {
            zhost_error_put (err, ZHOST_E_INVALID, "attach: %s", perr.reason);
            return NULL;
        }
    }
    zhost_proc_t *self = s_proc_new ();
    if (!self) return NULL;
    if (s_read_batch_want (self, err) != 0) {
        s_proc_free (&self);
        return NULL;
    }
    snprintf (self->endpoint, sizeof self->endpoint, "%s", endpoint);
    //  16 random bytes, first non-zero, kept for the proc's life (§1).
    uint8_t rid[16];
    if (getrandom (rid, sizeof rid, 0) != (ssize_t)sizeof rid) {
        for (size_t i = 0; i < sizeof rid; i++)
            rid[i] = (uint8_t)rand ();
    }
    if (rid[0] == 0) rid[0] = 1;
    zh_handshake_t *watch = NULL;
    if (s_connect (self, rid, sizeof rid, curve ? &keys : NULL, &watch, err) != 0) {
        zh_handshake_destroy (&watch);
        s_proc_free (&self);
        return NULL;
    }
    zh_body_t body = {.command = ZH_ATTACH, .present = ZH_F_PID | ZH_F_LANG | ZH_F_BATCH};
    body.pid = getpid ();
    body.batch = self->batch_want;
    body.lang = zh_span_of ("c");
    if (label) {
        body.present |= ZH_F_LABEL;
        body.label = zh_span_of (label);
    }
    int rc = s_send_command (self, ZH_ATTACH, &body);
    if (rc == 0) rc = s_await_bootstrap (self, watch, err);
    zh_handshake_destroy (&watch);
    if (rc != 0) {
        int linger = 0;
        zmq_setsockopt (self->sock, ZMQ_LINGER, &linger, sizeof linger);
        s_proc_free (&self);
        return NULL;
    }
    zh_debug ("attach", "proc=%s endpoint=%s heartbeat_ms=%d curve=%s batch_max_bytes=%zu",
              self->addr, self->endpoint, self->heartbeat_ms, curve ? "on" : "off",
              self->batch_max);
    return self;
}

void
zhost_proc_destroy (zhost_proc_t **self_p)
{
    if (!self_p || !*self_p) return;
    zhost_proc_t *self = *self_p;
    if (zhost_proc_open (self)) {
        self->depth = 0;
        zhost_proc_stop (self, "destroy");
    }
    zhost_requests_fail_all (self, ZHOST_E_STOPPED, "the proc was destroyed");
    s_proc_free (self_p);
}

//  ---------------------------------------------------------------------
//  Accessors

const char *
zhost_proc_addr (zhost_proc_t *self)
{
    return self->addr;
}

const char *
zhost_proc_host (zhost_proc_t *self)
{
    return self->host;
}

int
zhost_proc_heartbeat_ms (zhost_proc_t *self)
{
    return self->heartbeat_ms;
}

zhost_status_t
zhost_proc_status (zhost_proc_t *self)
{
    return self->status;
}

const char *
zhost_proc_reason (zhost_proc_t *self)
{
    return self->reason;
}

int
zhost_proc_exit_code (zhost_proc_t *self)
{
    if (self->failed) return ZHOST_EXIT_FAILED;
    return self->status == ZHOST_CLOSED ? ZHOST_EXIT_CLOSED : ZHOST_EXIT_OK;
}

int
zhost_proc_fd (zhost_proc_t *self)
{
    int fd = -1;
    size_t size = sizeof fd;
    if (!self->sock || zmq_getsockopt (self->sock, ZMQ_FD, &fd, &size) != 0) return -1;
    return fd;
}

int
zhost_proc_ready (zhost_proc_t *self)
{
    if (!self->spawned || self->ready_sent) return 0;
    if (!zhost_proc_open (self)) return -1;
    zh_body_t body = {.command = ZH_READY, .present = ZH_F_PROC | ZH_F_PID | ZH_F_BATCH};
    body.proc = zh_span_of (self->addr);
    body.pid = getpid ();
    body.batch = self->batch_max > 0; //  §14: the broker's bound is in our environment
    if (s_send_command (self, ZH_READY, &body) != 0) return -1;
    self->ready_sent = true;
    self->status = ZHOST_RUNNING;
    zh_debug ("ready", "proc=%s actors=%zu", self->addr, self->actor_count);
    return 0;
}

//  ---------------------------------------------------------------------
//  Closing

//  The connection is over (BYE from the broker, 401, silence): no BYE
//  exchange, nothing more to send.
static void s_close (zhost_proc_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));
static void
s_close (zhost_proc_t *self, const char *format, ...)
{
    va_list ap;
    va_start (ap, format);
    vsnprintf (self->reason, sizeof self->reason, format, ap);
    va_end (ap);
    self->status = ZHOST_CLOSED;
    char q[300];
    zh_warn ("closed", "proc=%s reason=%s", self->addr,
             zh_log_quote (q, sizeof q, self->reason, strlen (self->reason)));
    zhost_requests_fail_all (self, ZHOST_E_CLOSED, self->reason);
    s_batch_discard (self);
    s_outq_discard (self);
    if (self->depth == 0 && self->sock) {
        int linger = 0;
        zmq_setsockopt (self->sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close (self->sock);
        self->sock = NULL;
    }
}

//  Send everything in outq, waiting for room until deadline.
static void
s_drain_outq (zhost_proc_t *self, int64_t deadline)
{
    while (self->outq_head) {
        s_flush_outq (self);
        int64_t left = deadline - zhost_now_ms ();
        if (!self->outq_head || left <= 0) break;
        zmq_pollitem_t item = {self->sock, 0, ZMQ_POLLOUT, 0};
        zmq_poll (&item, 1, (long)left);
    }
    if (self->outq_head)
        zh_warn ("stop-flush", "proc=%s unsent=%zu reason=\"socket full until the deadline\"",
                 self->addr, self->outq_count);
}

//  The elements of a BATCH frame up to its end or its first fault.
static size_t
s_batch_elements (zmq_msg_t *frame)
{
    zh_batch_iter_t it;
    zh_error_t perr;
    const uint8_t *elem;
    size_t len;
    if (zh_batch_begin (&it, (const uint8_t *)zmq_msg_data (frame), zmq_msg_size (frame), &perr))
        return 0;
    while (zh_batch_next (&it, &elem, &len, &perr) == 1)
        ;
    return it.index;
}

//  After our BYE: read until the broker's BYE (bounded). SENDs arriving
//  now were routed before the broker read our BYE: dropped and counted.
static bool
s_await_bye (zhost_proc_t *self, int64_t deadline)
{
    while (true) {
        int64_t left = deadline - zhost_now_ms ();
        if (left <= 0) return false;
        zmq_pollitem_t item = {self->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, (long)left) <= 0) continue;
        s_inmsg_t in;
        bool oversize;
        while (s_recv (self, &in, &oversize) > 0) {
            uint8_t cmd = 0;
            if (zmq_msg_size (&in.frames[0]) >= ZH_HEADER_SIZE)
                cmd = ((const uint8_t *)zmq_msg_data (&in.frames[0]))[3];
            if (cmd == ZH_BATCH) //  counters count messages
                self->dropped += s_batch_elements (&in.frames[0]);
            s_inmsg_close (&in);
            if (cmd == ZH_BYE) return true;
            if (cmd == ZH_PING) s_send_command (self, ZH_PONG, NULL);
            if (cmd == ZH_SEND || cmd == ZH_RETURN) self->dropped++;
        }
    }
}

int
zhost_proc_stop (zhost_proc_t *self, const char *reason)
{
    if (!zhost_proc_open (self)) return zhost_proc_exit_code (self);
    if (!reason) reason = "stop";
    if (self->depth > 0) { //  PL-2
        self->stop_requested = true;
        if (!self->reason[0]) snprintf (self->reason, sizeof self->reason, "%s", reason);
        return zhost_proc_exit_code (self);
    }
    if (!self->reason[0]) snprintf (self->reason, sizeof self->reason, "%s", reason);
    self->status = ZHOST_STOPPING;
    zhost_actors_stop (self);
    zhost_requests_fail_all (self, ZHOST_E_STOPPED, "the proc is stopping");
    int64_t deadline = zhost_now_ms () + (int64_t)S_LIVENESS * self->heartbeat_ms;
    if (self->spawned && !self->ready_sent) {
        self->ready_sent = true; //  never READY: the broker would refuse BYE-less exit anyway
    }
    self->corked = false;
    s_batch_flush (self); //  on_stop's posts, and what the program corked
    s_drain_outq (self, deadline);
    s_send_bye (self, self->reason);
    s_flush_outq (self);
    bool answered = s_await_bye (self, deadline);
    if (!answered)
        zh_warn ("stop", "proc=%s reason=\"no BYE from the broker within %d ms\"", self->addr,
                 S_LIVENESS * self->heartbeat_ms);
    int linger = answered ? 0 : S_LINGER_MS;
    zmq_setsockopt (self->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close (self->sock);
    self->sock = NULL;
    s_outq_discard (self);
    self->status = ZHOST_STOPPED;
    char q[300];
    zh_debug ("stopped", "proc=%s reason=%s dropped=%llu failed=%d", self->addr,
              zh_log_quote (q, sizeof q, self->reason, strlen (self->reason)),
              (unsigned long long)self->dropped, self->failed);
    return zhost_proc_exit_code (self);
}

//  ---------------------------------------------------------------------
//  The loop

static void
s_handle_control (zhost_proc_t *self, s_inmsg_t *in, const zh_header_t *hdr)
{
    zh_body_t body;
    zh_error_t perr;
    const uint8_t *data = in->count > 1 ? (const uint8_t *)zmq_msg_data (&in->frames[1]) : NULL;
    size_t size = in->count > 1 ? zmq_msg_size (&in->frames[1]) : 0;
    if (in->count > 2 || zh_body_decode (&body, hdr->command, data, size, &perr) != 0) {
        zh_warn ("bad-command", "proc=%s command=%s", self->addr, zh_command_name (hdr->command));
        return;
    }
    char q[300];
    switch (hdr->command) {
    case ZH_PING:
        s_send_command (self, ZH_PONG, NULL);
        break;
    case ZH_PONG:
    case ZH_BOOTSTRAP: //  a repeated ATTACH's answer: nothing changes
        break;
    case ZH_STOP:
        if (!self->stop_requested) {
            self->stop_requested = true;
            snprintf (self->reason, sizeof self->reason, "STOP: %.*s", (int)body.reason.len,
                      body.reason.ptr);
        }
        break;
    case ZH_BYE:
        s_close (self, "BYE from the broker: %.*s", (int)body.reason.len, body.reason.ptr);
        break;
    case ZH_ERROR:
        zh_warn ("broker-error", "proc=%s code=%lld reason=%s dest=%.*s", self->addr,
                 (long long)body.code, zh_log_quote (q, sizeof q, body.reason.ptr, body.reason.len),
                 (int)body.dest.len, body.dest.ptr ? body.dest.ptr : "");
        if (body.code == ZH_ERR_HANDSHAKE)
            s_close (self, "the broker does not know this proc (ERROR 401): it restarted");
        break;
    default:
        zh_warn ("unexpected-command", "proc=%s command=%s", self->addr,
                 zh_command_name (hdr->command));
    }
}

//  A decoded SEND or RETURN, alone or a BATCH element, to its actor.
static void
s_dispatch (zhost_proc_t *self, zmq_msg_t *frames, size_t count, const zh_head_t *head)
{
    if (!zhost_proc_open (self) || self->status == ZHOST_STOPPING || self->stop_requested) {
        self->dropped++;
        return;
    }
    if (head->hdr.command == ZH_SEND)
        zhost_dispatch_send (self, frames, count, head);
    else
        zhost_dispatch_return (self, frames, count, head);
}

//  A BATCH (§14): walked in place (nothing allocated), each element
//  dispatched in order exactly as the same one-frame message alone: its
//  head points into the BATCH frame, and an empty frame stands for its
//  own (a bounce moves its RETURN there). A bad element is logged and
//  skipped; a malformed container stops the walk, the elements before
//  the fault stand. Returns the messages it held (at least 1).
static size_t
s_handle_batch (zhost_proc_t *self, s_inmsg_t *in, bool oversize)
{
    zh_batch_iter_t it;
    zh_error_t perr;
    if (in->count != 1 || oversize) {
        zh_warn ("bad-batch", "proc=%s handled=0 reason=\"%s\"", self->addr,
                 "a BATCH is one frame");
        return 1;
    }
    if (zh_batch_begin (&it, (const uint8_t *)zmq_msg_data (&in->frames[0]),
                        zmq_msg_size (&in->frames[0]), &perr) != 0) {
        zh_warn ("bad-batch", "proc=%s handled=0 reason=\"%s\"", self->addr, perr.reason);
        return 1;
    }
    const uint8_t *elem;
    size_t len;
    int rc;
    while ((rc = zh_batch_next (&it, &elem, &len, &perr)) == 1) {
        zh_head_t head;
        zh_error_t eerr;
        if (zh_head_decode (&head, elem, len, &eerr) != 0) {
            zh_warn ("bad-message", "proc=%s element=%zu reason=\"%s\"", self->addr, it.index,
                     eerr.reason);
            continue;
        }
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        s_dispatch (self, &frame, 1, &head);
        zmq_msg_close (&frame);
    }
    if (rc < 0)
        zh_warn ("bad-batch", "proc=%s handled=%zu reason=\"%s\"", self->addr, it.index,
                 perr.reason);
    return it.index ? it.index : 1;
}

//  Handle one message read; returns the messages it held (a BATCH's
//  elements count one each).
static size_t
s_handle (zhost_proc_t *self, s_inmsg_t *in, bool oversize)
{
    self->last_recv = zhost_now_ms ();
    self->silent_logged = false;
    zh_header_t hdr;
    zh_error_t perr;
    if (zh_header_check (&hdr, (const uint8_t *)zmq_msg_data (&in->frames[0]),
                         zmq_msg_size (&in->frames[0]), &perr) != 0) {
        zh_warn ("bad-message", "proc=%s reason=\"%s\"", self->addr, perr.reason);
        return 1;
    }
    if (hdr.command == ZH_BATCH) return s_handle_batch (self, in, oversize);
    if (!zh_command_has_head (hdr.command)) {
        s_handle_control (self, in, &hdr);
        return 1;
    }
    zh_head_t head;
    if (oversize || zh_head_decode (&head, (const uint8_t *)zmq_msg_data (&in->frames[0]),
                                    zmq_msg_size (&in->frames[0]), &perr) != 0) {
        zh_warn ("bad-message", "proc=%s reason=\"%s\"", self->addr,
                 oversize ? "too many frames" : perr.reason);
        return 1;
    }
    s_dispatch (self, in->frames, in->count, &head);
    return 1;
}

//  Read and handle up to S_BATCH messages (a BATCH's elements count one
//  each). True if more may be waiting.
static bool
s_drain (zhost_proc_t *self)
{
    for (size_t n = 0; n < S_BATCH;) {
        if (!zhost_proc_open (self)) return false;
        s_inmsg_t in;
        bool oversize;
        int rc = s_recv (self, &in, &oversize);
        if (rc <= 0) return false;
        n += s_handle (self, &in, oversize);
        s_inmsg_close (&in);
    }
    return true;
}

static void
s_timers (zhost_proc_t *self)
{
    int64_t now = zhost_now_ms ();
    zhost_requests_expire (self, now);
    if (!zhost_proc_open (self)) return;
    //  A full queue is already a sign we are writing: no PINGs piled behind it.
    if (now - self->last_send >= self->heartbeat_ms && !self->outq_head)
        s_send_command (self, ZH_PING, NULL);
    int64_t silence = now - self->last_recv;
    if (silence >= (int64_t)S_LIVENESS * self->heartbeat_ms) {
        if (!self->spawned)
            s_close (self, "the broker was silent for %lld ms", (long long)silence);
        else if (!self->silent_logged) {
            //  A spawned proc lives as long as its process: only log it.
            zh_warn ("broker-silent", "proc=%s silence_ms=%lld", self->addr, (long long)silence);
            self->silent_logged = true;
        }
    }
}

int
zhost_proc_timeout (zhost_proc_t *self)
{
    int64_t now = zhost_now_ms ();
    int64_t next = self->last_send + self->heartbeat_ms;
    int64_t live = self->last_recv + (int64_t)S_LIVENESS * self->heartbeat_ms;
    if (!self->spawned && live < next) next = live;
    int64_t req = zhost_requests_next_deadline (self);
    if (req && req < next) next = req;
    int64_t left = next - now;
    return left < 0 ? 0 : left > 3600000 ? 3600000 : (int)left;
}

int
zhost_proc_step (zhost_proc_t *self, int timeout_ms)
{
    if (!zhost_proc_open (self)) return -1;
    zhost_proc_ready (self);
    //  PL-3: nothing corked waits while the proc sleeps (a handler's
    //  blocking request, the program's own cork).
    s_batch_flush (self);
    self->depth++;
    int wait = zhost_proc_timeout (self);
    if (timeout_ms >= 0 && timeout_ms < wait) wait = timeout_ms;
    if (self->stop_requested) wait = 0;
    zmq_pollitem_t item = {self->sock, 0, ZMQ_POLLIN | (self->outq_head ? ZMQ_POLLOUT : 0), 0};
    if (zmq_poll (&item, 1, wait) < 0 && errno == EINTR && s_signalled) {
        self->stop_requested = true;
        if (!self->reason[0])
            snprintf (self->reason, sizeof self->reason, "signal %d", (int)s_signalled);
    }
    bool more = s_drain (self);
    if (zhost_proc_open (self)) {
        s_batch_flush (self); //  PL-3: the step ends
        s_flush_outq (self);
    }
    s_timers (self);
    if (zhost_proc_open (self)) s_batch_flush (self); //  what request timeouts posted
    self->depth--;
    if (self->depth == 0 && self->status == ZHOST_CLOSED && self->sock) {
        zmq_close (self->sock);
        self->sock = NULL;
    }
    if (self->depth == 0 && self->stop_requested && zhost_proc_open (self))
        zhost_proc_stop (self, self->reason);
    if (!zhost_proc_open (self)) return -1;
    return more ? 1 : 0;
}

static void
s_on_signal (int sig)
{
    s_signalled = sig;
}

int
zhost_proc_run (zhost_proc_t *self)
{
    //  SIGINT/SIGTERM stop the proc cleanly, unless the program handles them.
    struct sigaction ours, old_int, old_term;
    memset (&ours, 0, sizeof ours);
    ours.sa_handler = s_on_signal;
    sigemptyset (&ours.sa_mask);
    sigaction (SIGINT, NULL, &old_int);
    sigaction (SIGTERM, NULL, &old_term);
    bool take_int = old_int.sa_handler == SIG_DFL;
    bool take_term = old_term.sa_handler == SIG_DFL;
    if (take_int) sigaction (SIGINT, &ours, NULL);
    if (take_term) sigaction (SIGTERM, &ours, NULL);
    while (zhost_proc_step (self, -1) >= 0)
        if (s_signalled && !self->stop_requested) {
            self->stop_requested = true;
            snprintf (self->reason, sizeof self->reason, "signal %d", (int)s_signalled);
        }
    if (take_int) sigaction (SIGINT, &old_int, NULL);
    if (take_term) sigaction (SIGTERM, &old_term, NULL);
    return zhost_proc_exit_code (self);
}
