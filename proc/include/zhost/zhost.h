/*  zhost.h — libzhost, the proc runtime: the library's contract.

    Where it sits: a program that hosts actors links libzhost. The library
    owns one DEALER socket to a zhost broker, speaks ZHP/1 on it
    (docs/protocol.md) and turns what arrives into calls of the program's
    handlers:

        broker ──DEALER──▶ zhost_proc_step ──▶ SEND   → actor → port → handler
                                           ──▶ RETURN → actor's undeliverable handler
                                           ──▶ PING / STOP / BYE (the runtime's own)
        handler ──zhost_proc_post──▶ head (+ payload frames) ──DEALER──▶ broker
                                  └──▶ the proc's batch ──(step ends)──▶ BATCH frame

    Batching (BATCH, docs/protocol.md §14), on unless ZHOST_BATCH=0: when
    the broker takes BATCH, the one-frame posts a step makes (its handlers, bounces,
    request callbacks) leave together as BATCH frames when the step ends;
    a post outside any step leaves at once, as ever. zhost_proc_cork /
    zhost_proc_flush do the same for a program posting in a loop. A BATCH
    received is dispatched element by element, each as if it came alone.

    A proc is either spawned by the broker (zhost_proc_boot: everything
    comes from the ZHOST_* environment) or attached to a broker from
    anywhere (zhost_proc_attach: ATTACH → BOOTSTRAP). Both then spawn
    actors, open ports and run the loop.

    Threads: a proc belongs to one thread. Handlers run on that thread,
    inside zhost_proc_run or zhost_proc_step, one at a time; they may post
    and request (see zhost_proc_request for re-entrancy).

    Lifetimes: every pointer a handler receives (zhost_msg_t fields,
    payload views, failures) is valid only during that call. Copy what you
    keep.

    Errors: functions that can fail return NULL or -1 and, where an
    zhost_error_t is taken, fill it with a code and a sentence naming the
    variable, command or address at fault.
*/
#ifndef ZHOST_H
#define ZHOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zhost_proc_t zhost_proc_t;
typedef struct _zhost_actor_t zhost_actor_t;

//  ---------------------------------------------------------------------
//  Errors and statuses

typedef enum {
    ZHOST_OK = 0,
    ZHOST_E_ENV_MISSING, //  a ZHOST_* variable is not set
    ZHOST_E_ENV_INVALID, //  a ZHOST_* variable does not parse
    ZHOST_E_INVALID,     //  a bad argument (name, address, size)
    ZHOST_E_SOCKET,      //  libzmq refused (connect, send): errno text in message
    ZHOST_E_TIMEOUT,     //  a bounded wait ran out
    ZHOST_E_REFUSED,     //  the broker answered ERROR (code in broker_code)
    ZHOST_E_CLOSED,      //  the broker said BYE, or went silent
    ZHOST_E_RETURNED,    //  a request came back as a RETURN (code in `code`)
    ZHOST_E_STOPPED      //  the proc is stopping or stopped
} zhost_errno_t;

typedef struct {
    zhost_errno_t code;
    int broker_code; //  ZHOST_E_REFUSED: the ERROR code (400, 403, 503…)
    char message[256];
} zhost_error_t;

//  Where a proc is in its life.
typedef enum {
    ZHOST_STARTING = 0, //  booted or attached; actors being installed, no READY yet
    ZHOST_RUNNING,      //  READY sent (spawned) or BOOTSTRAP received (attached)
    ZHOST_STOPPING,     //  STOP (or a local stop) received: on_stop run, BYE exchange
    ZHOST_STOPPED,      //  closed cleanly by STOP, a signal or zhost_proc_stop
    ZHOST_CLOSED        //  the broker said BYE, refused us (401) or went silent
} zhost_status_t;

//  Exit codes zhost_proc_run returns: FAILED wins over CLOSED.
#define ZHOST_EXIT_OK     0 //  clean stop, every handler succeeded
#define ZHOST_EXIT_FAILED 1 //  clean stop, but an actor handler returned nonzero
#define ZHOST_EXIT_CLOSED 2 //  the broker closed the connection (status CLOSED)

//  User ports are small numbers chosen by the program (below this);
//  once-ports are numbered from here upwards by the library.
#define ZHOST_ONCE_PORT_BASE (UINT64_C (1) << 32)

//  A first payload part up to this size travels inline in the head (one
//  frame); bigger parts, and every later part, are frames of their own.
#define ZHOST_INLINE_MAX 4096

//  ---------------------------------------------------------------------
//  Messages

//  One payload part: a view of bytes (not owned).
typedef struct {
    const void *data;
    size_t size;
} zhost_part_t;

//  A message as a handler sees it. Strings are NUL-terminated copies of
//  the head fields; everything is valid only during the handler call.
//  meta has been checked to be exactly one well-formed msgpack map whose
//  every count fits in its bytes (safe to give msgpack-c); meta that is
//  not is read as the empty map: meta, reply and headers NULL, no seq,
//  and the message is delivered all the same (and logged, `bad-meta`).
typedef struct {
    const char *dest;       //  the port address it was sent to
    const char *src;        //  the sender's actor (or proc) address
    uint64_t port;          //  dest's port number
    const char *reply;      //  meta `reply` (a port address), or NULL
    bool has_seq;           //  meta `seq` present
    int64_t seq;            //  meta `seq`
    const uint8_t *meta;    //  the raw meta map (msgpack), NULL when empty or
    size_t meta_size;       //  unreadable (see above)
    const uint8_t *headers; //  meta `headers`, raw msgpack map, or NULL
    size_t headers_size;    //
    uint8_t ttl;            //  hops left on arrival
    uint8_t flags;          //  ZHP flags byte (bit 0 RETURN_UNDELIVERABLE, bit 1 INLINE)
    size_t part_count;      //  payload parts, inline part first
    const zhost_part_t *parts;
} zhost_msg_t;

//  One failure of a RETURN (root cause first in the list).
typedef struct {
    const char *code;   //  "NO_SUCH_ACTOR", "PROC_GONE", …
    const char *reason; //  a sentence from the bouncer
    const char *at;     //  who bounced it: a broker endpoint or a proc address
} zhost_failure_t;

//  A message that came back. msg->dest is our actor (the original src),
//  msg->src the bouncer; orig_dest and the meta fields of msg (reply,
//  seq, headers, meta) are the original SEND's; msg's parts are the
//  original payload, unchanged.
typedef struct {
    const char *orig_dest;
    size_t failure_count;
    const zhost_failure_t *failures;
    const zhost_msg_t *msg;
} zhost_undeliverable_t;

//  ---------------------------------------------------------------------
//  Handlers. Each returns 0, or nonzero when it failed: the failure is
//  logged and the proc exits ZHOST_EXIT_FAILED when it stops (it keeps
//  running meanwhile).

typedef int (zhost_handler_fn) (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg);
typedef int (zhost_undeliverable_fn) (zhost_actor_t *actor, const zhost_undeliverable_t *u,
                                      void *arg);
typedef int (zhost_stop_fn) (zhost_actor_t *actor, void *arg);

//  An actor's own callbacks; each may be NULL. `arg` of spawn_actor is
//  passed to both.
typedef struct {
    zhost_undeliverable_fn *on_undeliverable; //  NULL: the default, which logs it
    zhost_stop_fn *on_stop;                   //  runs once, when the proc stops
} zhost_actor_handlers_t;

//  ---------------------------------------------------------------------
//  Procs

//  Boot a proc spawned by a broker. Reads ZHOST_PROC (this proc's
//  address), ZHOST_BACKEND (endpoint to connect to), ZHOST_HOST (the
//  frontend endpoint of every local address) and ZHOST_HEARTBEAT_MS; a
//  missing or invalid one is ZHOST_E_ENV_MISSING / _INVALID with a message
//  naming it. Optional: ZHOST_BATCH_MAX_BYTES (the broker's BATCH bound;
//  absent or 0: no batching) and ZHOST_BATCH (see Batching below); READY
//  says batch: true when both allow it. Connects a DEALER whose ROUTING_ID is the proc id. READY is
//  NOT sent yet: it goes out on the first zhost_proc_ready, run, step or
//  post, so install your actors first. Returns NULL on failure.
zhost_proc_t *zhost_proc_boot (zhost_error_t *err);

//  Attach to a broker's frontend (or control socket) at endpoint as a
//  client: ATTACH {label, pid, lang "c", batch} → BOOTSTRAP, waiting at
//  most 5 s. batch is true unless ZHOST_BATCH says 0 (see Batching; a
//  ZHOST_BATCH that does not parse is ZHOST_E_ENV_INVALID).
//  label may be NULL (the proc is then remote<uid58>). The routing id is
//  16 random bytes, kept for the life of the proc, so a reconnect keeps
//  the proc id while the broker lives. An ERROR answer is ZHOST_E_REFUSED.
//  A refused handshake (a CURVE broker and no keys, a key the broker does
//  not allow, keys for a broker without CURVE) is ZHOST_E_REFUSED at once,
//  with broker_code 0 and a message that says which.
zhost_proc_t *zhost_proc_attach (const char *endpoint, const char *label, zhost_error_t *err);

//  CURVE keys for attaching to a frontend that runs CURVE (the broker's
//  --curve-secret), as Z85 text: the broker's public key and this
//  client's key pair. Fill it with zhost_curve_load, or copy keys in.
typedef struct {
    char server_public[41];
    char public_key[41];
    char secret_key[41];
} zhost_curve_t;

//  Fill *curve from zcert files, as `zhost-ctl keygen` writes them: the
//  broker's certificate (NAME.key; its public part is enough) and this
//  client's (NAME.key with NAME.key_secret beside it; either name may be
//  given). 0, or -1 with ZHOST_E_INVALID naming the file.
int zhost_curve_load (zhost_curve_t *curve, const char *server_cert, const char *client_cert,
                      zhost_error_t *err);

//  zhost_proc_attach over CURVE (curve NULL: plain, as zhost_proc_attach).
//  Keys that are not 40 characters of Z85 are ZHOST_E_INVALID.
zhost_proc_t *zhost_proc_attach_curve (const char *endpoint, const char *label,
                                       const zhost_curve_t *curve, zhost_error_t *err);

//  Close a proc and free it; sets *self_p NULL. A proc still connected is
//  first stopped cleanly (zhost_proc_stop). Safe on NULL. Not from inside
//  a handler (use zhost_proc_stop there).
void zhost_proc_destroy (zhost_proc_t **self_p);

//  This proc's address, e.g. "worker@tcp://127.0.0.1:7100".
const char *zhost_proc_addr (zhost_proc_t *self);
//  The broker's frontend endpoint (ZHOST_HOST or BOOTSTRAP host).
const char *zhost_proc_host (zhost_proc_t *self);
//  The heartbeat interval in ms (ZHOST_HEARTBEAT_MS or BOOTSTRAP).
int zhost_proc_heartbeat_ms (zhost_proc_t *self);
zhost_status_t zhost_proc_status (zhost_proc_t *self);
//  Why the proc stopped or closed ("STOP: …", "BYE: shutdown", …), or "".
const char *zhost_proc_reason (zhost_proc_t *self);
//  The exit code the proc would have now (see ZHOST_EXIT_*).
int zhost_proc_exit_code (zhost_proc_t *self);

//  Send READY (spawned procs; a no-op for attached ones and when already
//  sent). Call it once the program has installed its actors; run, step
//  and post call it for you. 0 or -1.
int zhost_proc_ready (zhost_proc_t *self);

//  ---------------------------------------------------------------------
//  Actors and ports

//  Spawn an actor named `name` (an id: a label such as "echo"). Returns
//  NULL when the name is invalid or already taken (logged). handlers may
//  be NULL. The actor lives as long as the proc.
zhost_actor_t *zhost_proc_spawn_actor (zhost_proc_t *self, const char *name,
                                       const zhost_actor_handlers_t *handlers, void *arg);

//  Find an actor by name, or NULL.
zhost_actor_t *zhost_proc_actor (zhost_proc_t *self, const char *name);

const char *zhost_actor_name (zhost_actor_t *self);
//  The actor's address, "name.proc@endpoint".
const char *zhost_actor_addr (zhost_actor_t *self);
zhost_proc_t *zhost_actor_proc (zhost_actor_t *self);

//  Write the address of one of this actor's ports into buf. Returns the
//  length, or -1 if buf is too small.
int zhost_actor_port_addr (zhost_actor_t *self, uint64_t port, char *buf, size_t size);

//  Open port number `port` (< ZHOST_ONCE_PORT_BASE) with its handler.
//  SENDs to it call handler(actor, msg, arg). -1 if taken or out of range.
int zhost_actor_open_port (zhost_actor_t *self, uint64_t port, zhost_handler_fn *handler,
                           void *arg);

//  Open a once-port: numbered by the library from ZHOST_ONCE_PORT_BASE
//  up, closed as soon as its first message is delivered. Returns the
//  port number (0 on failure).
uint64_t zhost_actor_open_once (zhost_actor_t *self, zhost_handler_fn *handler, void *arg);

//  Close a port (user or once). 0, or -1 if it was not open.
int zhost_actor_close_port (zhost_actor_t *self, uint64_t port);

//  ---------------------------------------------------------------------
//  Posting

//  Options of one post; NULL means all defaults.
typedef struct {
    const char *reply;      //  meta `reply`: a port address, or NULL
    bool has_seq;           //  write meta `seq`
    int64_t seq;            //
    const uint8_t *headers; //  meta `headers`: a raw msgpack map, or NULL (left
    size_t headers_size;    //  out unless exactly one well-formed map)
    bool no_return;         //  clear RETURN_UNDELIVERABLE (set by default)
} zhost_post_opts_t;

//  Post one message from actor `from` to a port address `dest`, with
//  `count` payload parts (copied: the caller keeps its buffers). The
//  first part goes inline in the head when it is at most
//  ZHOST_INLINE_MAX bytes, the others as frames. Never blocks: if the
//  socket's queue is full the message waits in the proc's own queue, in
//  order, and is sent by the loop. Inside a step (or corked) a one-frame
//  post may wait until the step ends, to leave in a BATCH (see Batching).
//  0, or -1 (bad dest, proc closed, the proc's queue full, or message
//  over the broker's max_msg_bytes) with err if given.
int zhost_proc_post (zhost_proc_t *self, zhost_actor_t *from, const char *dest,
                     const zhost_part_t *parts, size_t count, const zhost_post_opts_t *opts,
                     zhost_error_t *err);

//  Answer msg at its meta `reply` port, echoing its `seq`. -1 if msg has
//  no reply port.
int zhost_actor_reply (zhost_actor_t *self, const zhost_msg_t *msg, const zhost_part_t *parts,
                       size_t count);

//  ---------------------------------------------------------------------
//  Batching (BATCH, docs/protocol.md §14)
//
//  Negotiated per connection: ATTACH (or READY) says batch: true unless
//  the environment has ZHOST_BATCH=0 (also false/off/no; 1/true/on/yes or
//  unset: on); the broker's BOOTSTRAP batch and batch_max_bytes (a
//  spawned proc: ZHOST_BATCH_MAX_BYTES) say whether, and how big, this
//  proc may send BATCH frames. A BATCH received is always handled.
//
//  When batching is on, a post of one frame (no payload part but the
//  inline one, at most ZHOST_INLINE_MAX bytes) made while a step runs
//  (inside a handler, a bounce, a request callback) or while corked
//  waits in the proc's batch and leaves when the step ends (and before
//  any step waits): as BATCH frames of at most batch_max_bytes (1 MiB at
//  most), a lone one as a plain SEND. Any other message (payload frames,
//  too big, a control command) sends the batch first: order is kept. A
//  post outside a step, uncorked, leaves at once as a lone SEND. A post
//  that finds the proc's queue full is refused (-1) as ever; an accepted
//  one is never dropped by batching.

//  Batch the posts made outside a step too, until zhost_proc_flush (a
//  step, a stop or destroy also sends what waits; the cork holds).
//  Without batching (not negotiated) posts still leave at once. 0, or -1
//  when the proc is stopped or closed.
int zhost_proc_cork (zhost_proc_t *self);

//  Send what waits in the batch now and end the cork. 0, or -1 (the
//  proc is stopped or closed, or the socket failed: logged).
int zhost_proc_flush (zhost_proc_t *self);

//  The BATCH frame bound this proc sends with; 0 when it sends none
//  (the broker said no, ZHOST_BATCH=0, or not attached yet).
size_t zhost_proc_batch_max_bytes (zhost_proc_t *self);

//  ---------------------------------------------------------------------
//  Request / reply

//  The outcome of a request: the reply's parts (owned copies), or why
//  there is none.
typedef struct {
    zhost_errno_t status; //  ZHOST_OK, _TIMEOUT, _RETURNED, _CLOSED, _STOPPED
    char code[32];        //  _RETURNED: the root failure code ("NO_SUCH_ACTOR")
    char reason[256];     //  _RETURNED: its reason; else a sentence
    char src[1025];       //  ZHOST_OK: who answered
    size_t part_count;
    zhost_part_t *parts; //  owned; free with zhost_reply_reset
} zhost_reply_t;

//  Free the parts of a reply (the struct itself is the caller's).
void zhost_reply_reset (zhost_reply_t *reply);

//  Callback form: called exactly once, on the loop thread, with the
//  reply message (status ZHOST_OK, msg set) or a failure (msg NULL;
//  the returned message's failures in u when status is _RETURNED).
typedef void (zhost_reply_fn) (zhost_actor_t *actor, zhost_errno_t status, const zhost_msg_t *msg,
                               const zhost_undeliverable_t *u, void *arg);

//  Asynchronous request: open a once-port on `from`, post to dest with
//  meta reply = that port (and seq), RETURN_UNDELIVERABLE set, and call
//  cb when the answer, a RETURN of the request, the timeout (timeout_ms
//  > 0) or the end of the proc comes first. Returns the once-port's
//  number, or 0 when the post failed (cb is then not called).
uint64_t zhost_proc_request_async (zhost_proc_t *self, zhost_actor_t *from, const char *dest,
                                   const zhost_part_t *parts, size_t count, int timeout_ms,
                                   zhost_reply_fn *cb, void *arg);

//  Blocking request: zhost_proc_request_async, then run the loop until
//  the answer or the timeout. Safe from inside a handler (no deadlock):
//  while it waits, the loop goes on dispatching other messages, so
//  handlers may be re-entered — do not hold state across the call that
//  another handler could change. Fills *reply; returns 0 (reply->status
//  ZHOST_OK) or -1 (reply->status says why).
int zhost_proc_request (zhost_proc_t *self, zhost_actor_t *from, const char *dest,
                        const zhost_part_t *parts, size_t count, int timeout_ms,
                        zhost_reply_t *reply);

//  ---------------------------------------------------------------------
//  Running

//  Run the loop until the proc stops (STOP, a local stop, SIGINT/SIGTERM
//  when the program has not set its own handlers) or closes (BYE from
//  the broker, lost broker). Sends READY first. Returns the exit code.
int zhost_proc_run (zhost_proc_t *self);

//  For programs with their own loop. zhost_proc_fd is libzmq's ZMQ_FD of
//  the DEALER: it becomes readable when there MAY be work, and is edge
//  triggered; so when it is readable, and at the latest after
//  zhost_proc_timeout ms, call zhost_proc_step (self, 0), which handles
//  every message pending, the heartbeats and the request timeouts.
int zhost_proc_fd (zhost_proc_t *self);

//  Milliseconds until the next timer (heartbeat, request timeout) is due.
int zhost_proc_timeout (zhost_proc_t *self);

//  Wait up to timeout_ms (0: no wait, -1: until the next timer) for work
//  and do it: up to 1000 messages (a BATCH's elements count one each),
//  then the batch its handlers made (see Batching), the send queue, the
//  timers. Returns 0
//  while the proc runs and nothing is left, 1 when messages may still be
//  waiting (call it again before waiting on the fd), -1 once the proc has
//  stopped or closed (see zhost_proc_status and zhost_proc_exit_code).
int zhost_proc_step (zhost_proc_t *self, int timeout_ms);

//  Stop locally, as STOP does: each actor's on_stop, flush what waits in
//  the proc's queue, BYE, wait (bounded by 3 × heartbeat) for the
//  broker's BYE, close. An attached client calls it (or destroy) to
//  detach without losing what it sent. Returns the exit code.
int zhost_proc_stop (zhost_proc_t *self, const char *reason);

#ifdef __cplusplus
}
#endif
#endif
