/*  test_libzhost_batch.c — libzhost and BATCH (docs/protocol.md §14),
    against a fake broker: a ROUTER in this test that does the handshake
    and speaks BATCH by hand, so every frame the library sends can be
    looked at.

    Scenarios: ATTACH says batch (not with ZHOST_BATCH=0) and BOOTSTRAP's
    bound is taken; BATCH elements are dispatched in order, interleaved
    with lone SENDs, a RETURN element going to on_undeliverable; the posts
    handlers make in one step leave as one BATCH frame (bounces too); a
    post outside a step leaves at once as a lone SEND; cork/flush; frames
    split at batch_max_bytes, and a message with payload frames flushes
    what is corked first; no BATCH when BOOTSTRAP says batch false; a
    malformed container keeps the elements before the fault and the proc
    runs on; a handler's blocking request is not held in the batch while
    it waits; a full queue refuses batched posts as lone ones and loses
    nothing; a spawned proc says batch in READY from ZHOST_BATCH_MAX_BYTES.
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
#include "zh_wire.h"
#include "zhost/zhost.h"

#define PEER "peer.p9@tcp://127.0.0.1:9"   //  src of what the fake sends
#define SINK "sink.p9:1@tcp://127.0.0.1:9" //  where handlers post

//  ---------------------------------------------------------------------
//  The fake broker

typedef struct {
    void *ctx;
    void *router;
    char endpoint[256];
    uint8_t rid[256];
    size_t rid_len;
    //  BOOTSTRAP's answer
    bool batch;         //  batch field present and true
    bool batch_field;   //  write the batch field at all
    uint64_t batch_max; //  0: leave batch_max_bytes out
    //  what the last ATTACH said
    bool attach_batch_present, attach_batch;
    int mode; //  of the helper thread: 0 answer ATTACH, 1 answer BYE
    pthread_t thread;
} fake_t;

static void
s_fake_new (fake_t *f, bool batch, uint64_t batch_max)
{
    memset (f, 0, sizeof *f);
    f->ctx = zmq_ctx_new ();
    f->router = zmq_socket (f->ctx, ZMQ_ROUTER);
    int linger = 0, handover = 1; //  a spawned proc comes back with the same id
    zmq_setsockopt (f->router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (f->router, ZMQ_ROUTER_HANDOVER, &handover, sizeof handover);
    assert_int_equal (zmq_bind (f->router, "tcp://127.0.0.1:*"), 0);
    size_t size = sizeof f->endpoint;
    assert_int_equal (zmq_getsockopt (f->router, ZMQ_LAST_ENDPOINT, f->endpoint, &size), 0);
    f->batch = batch;
    f->batch_field = true;
    f->batch_max = batch_max;
}

static void
s_fake_destroy (fake_t *f)
{
    zmq_close (f->router);
    zmq_ctx_term (f->ctx);
}

//  A message the fake read: its frames after the routing id.
typedef struct {
    size_t count;
    zmq_msg_t frames[8];
} got_t;

static void
s_got_close (got_t *g)
{
    for (size_t i = 0; i < g->count; i++)
        zmq_msg_close (&g->frames[i]);
    g->count = 0;
}

static const uint8_t *
s_data (got_t *g, size_t i)
{
    return (const uint8_t *)zmq_msg_data (&g->frames[i]);
}

static size_t
s_size (got_t *g, size_t i)
{
    return zmq_msg_size (&g->frames[i]);
}

//  Read one message within timeout_ms; false if none. Keeps the routing id.
static bool
s_fake_recv (fake_t *f, got_t *g, int timeout_ms)
{
    g->count = 0;
    zmq_pollitem_t item = {f->router, 0, ZMQ_POLLIN, 0};
    if (zmq_poll (&item, 1, timeout_ms) <= 0) return false;
    int n = zmq_recv (f->router, f->rid, sizeof f->rid, 0);
    assert_true (n > 0);
    f->rid_len = (size_t)n;
    int more = 1;
    size_t len = sizeof more;
    zmq_getsockopt (f->router, ZMQ_RCVMORE, &more, &len);
    while (more) {
        assert_true (g->count < 8);
        zmq_msg_init (&g->frames[g->count]);
        assert_true (zmq_msg_recv (&g->frames[g->count], f->router, 0) >= 0);
        more = zmq_msg_more (&g->frames[g->count]);
        g->count++;
    }
    return true;
}

static void
s_fake_send (fake_t *f, const uint8_t *data, size_t size)
{
    assert_int_equal (zmq_send (f->router, f->rid, f->rid_len, ZMQ_SNDMORE), (int)f->rid_len);
    assert_int_equal (zmq_send (f->router, data, size, 0), (int)size);
}

static void
s_fake_send2 (fake_t *f, const uint8_t *a, size_t a_size, const uint8_t *b, size_t b_size)
{
    zmq_send (f->router, f->rid, f->rid_len, ZMQ_SNDMORE);
    zmq_send (f->router, a, a_size, ZMQ_SNDMORE);
    zmq_send (f->router, b, b_size, 0);
}

//  The helper thread: answer one ATTACH with BOOTSTRAP (mode 0), or one
//  BYE with BYE (mode 1); anything else read meanwhile is dropped.
static void *
s_fake_serve (void *arg)
{
    fake_t *f = (fake_t *)arg;
    for (int i = 0; i < 100; i++) {
        got_t g;
        if (!s_fake_recv (f, &g, 100)) continue;
        uint8_t cmd = s_size (&g, 0) >= ZH_HEADER_SIZE ? s_data (&g, 0)[3] : 0;
        if (f->mode == 0 && cmd == ZH_ATTACH) {
            zh_body_t body;
            zh_error_t err;
            assert_int_equal (zh_body_decode (&body, ZH_ATTACH, g.count > 1 ? s_data (&g, 1) : NULL,
                                              g.count > 1 ? s_size (&g, 1) : 0, &err),
                              0);
            f->attach_batch_present = body.present & ZH_F_BATCH;
            f->attach_batch = body.batch;
            char proc[300], agent[300];
            snprintf (proc, sizeof proc, "c1@%s", f->endpoint);
            snprintf (agent, sizeof agent, "host_agent.service@%s", f->endpoint);
            zh_body_t boot = {.command = ZH_BOOTSTRAP,
                              .present = ZH_F_PROC | ZH_F_HOST | ZH_F_AGENT | ZH_F_HEARTBEAT_MS |
                                         ZH_F_MAX_MSG_BYTES | ZH_F_HWM | ZH_F_INCARNATION,
                              .proc = zh_span_of (proc),
                              .host = zh_span_of (f->endpoint),
                              .agent = zh_span_of (agent),
                              .heartbeat_ms = 10000,
                              .max_msg_bytes = 1 << 20,
                              .hwm = 10000,
                              .incarnation = 7};
            if (f->batch_field) {
                boot.present |= ZH_F_BATCH;
                boot.batch = f->batch;
            }
            if (f->batch_max) {
                boot.present |= ZH_F_BATCH_MAX_BYTES;
                boot.batch_max_bytes = f->batch_max;
            }
            assert_int_equal (
                zh_wire_send_command (f->router, f->rid, f->rid_len, ZH_BOOTSTRAP, &boot, 0), 0);
            s_got_close (&g);
            return NULL;
        }
        s_got_close (&g);
        if (f->mode == 1 && cmd == ZH_BYE) {
            zh_body_t bye = {
                .command = ZH_BYE, .present = ZH_F_REASON, .reason = zh_span_of ("bye")};
            zh_wire_send_command (f->router, f->rid, f->rid_len, ZH_BYE, &bye, 0);
            return NULL;
        }
    }
    return NULL;
}

static zhost_proc_t *
s_fake_attach (fake_t *f, zhost_error_t *err)
{
    f->mode = 0;
    assert_int_equal (pthread_create (&f->thread, NULL, s_fake_serve, f), 0);
    zhost_proc_t *proc = zhost_proc_attach (f->endpoint, "t", err);
    pthread_join (f->thread, NULL);
    return proc;
}

//  Destroy the proc (BYE answered by the fake), then the fake.
static void
s_fake_end (fake_t *f, zhost_proc_t **proc)
{
    f->mode = 1;
    assert_int_equal (pthread_create (&f->thread, NULL, s_fake_serve, f), 0);
    zhost_proc_destroy (proc);
    pthread_join (f->thread, NULL);
    s_fake_destroy (f);
}

//  ---------------------------------------------------------------------
//  Messages the fake builds

//  A one-frame SEND (or RETURN with meta) with an inline text, into buf.
static size_t
s_elem (uint8_t *buf, size_t size, uint8_t command, const char *dest, const uint8_t *meta,
        size_t meta_len, const char *text)
{
    long n = zh_head_write (
        buf, size, command, ZH_TTL_DEFAULT, ZH_FLAG_INLINE | ZH_FLAG_RETURN_UNDELIVERABLE, dest,
        strlen (dest), PEER, strlen (PEER), meta, meta_len, (const uint8_t *)text, strlen (text));
    assert_true (n > 0);
    return (size_t)n;
}

static void
s_send_lone (fake_t *f, const char *dest, const char *text)
{
    uint8_t buf[2048];
    s_fake_send (f, buf, s_elem (buf, sizeof buf, ZH_SEND, dest, NULL, 0, text));
}

//  A BATCH being built.
typedef struct {
    uint8_t buf[16384];
    size_t used;
} batch_t;

static void
s_batch_init (batch_t *b)
{
    zh_header_write (b->buf, ZH_BATCH, 0, 0);
    b->used = ZH_HEADER_SIZE;
}

static void
s_batch_raw (batch_t *b, const uint8_t *elem, size_t len)
{
    assert_int_equal (zh_batch_put (b->buf, sizeof b->buf, &b->used, elem, len), 0);
}

static void
s_batch_send (batch_t *b, const char *dest, const char *text)
{
    uint8_t elem[2048];
    s_batch_raw (b, elem, s_elem (elem, sizeof elem, ZH_SEND, dest, NULL, 0, text));
}

//  A RETURN element to actor addr: the SEND `text` bounced NO_SUCH_ACTOR.
static void
s_batch_return (batch_t *b, const char *addr, const char *text)
{
    size_t meta_len = 0;
    uint8_t *meta = zh_return_meta_encode (NULL, 0, "NO_SUCH_ACTOR", "gone", PEER, SINK,
                                           strlen (SINK), NULL, 0, &meta_len);
    assert_non_null (meta);
    uint8_t elem[2048];
    s_batch_raw (b, elem, s_elem (elem, sizeof elem, ZH_RETURN, addr, meta, meta_len, text));
    free (meta);
}

//  ---------------------------------------------------------------------
//  The proc side: one actor `recv`, port 1 logs each message's text and,
//  when echo is set, posts it on to SINK.

typedef struct {
    char log[64][32];
    int count;
    bool echo;
    zhost_proc_t *proc;
} log_t;

static void
s_log (log_t *l, const char *prefix, const zhost_msg_t *msg)
{
    assert_true (l->count < 64);
    size_t n = msg->part_count ? msg->parts[0].size : 0;
    snprintf (l->log[l->count++], sizeof l->log[0], "%s%.*s", prefix, (int)n,
              n ? (const char *)msg->parts[0].data : "");
}

static int
s_on_msg (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    log_t *l = (log_t *)arg;
    s_log (l, "", msg);
    if (l->echo) {
        zhost_error_t err;
        assert_int_equal (zhost_proc_post (zhost_actor_proc (actor), actor, SINK, msg->parts,
                                           msg->part_count, NULL, &err),
                          0);
    }
    return 0;
}

static int
s_on_undeliverable (zhost_actor_t *actor, const zhost_undeliverable_t *u, void *arg)
{
    (void)actor;
    s_log ((log_t *)arg, "R:", u->msg);
    return 0;
}

typedef struct {
    fake_t fake;
    zhost_proc_t *proc;
    zhost_actor_t *recv;
    log_t log;
    char dest[1100]; //  recv:1
} fixture_t;

static void
s_setup (fixture_t *x, bool batch, uint64_t batch_max)
{
    memset (x, 0, sizeof *x);
    s_fake_new (&x->fake, batch, batch_max);
    zhost_error_t err;
    x->proc = s_fake_attach (&x->fake, &err);
    assert_non_null (x->proc);
    zhost_actor_handlers_t h = {.on_undeliverable = s_on_undeliverable};
    x->recv = zhost_proc_spawn_actor (x->proc, "recv", &h, &x->log);
    assert_non_null (x->recv);
    assert_int_equal (zhost_actor_open_port (x->recv, 1, s_on_msg, &x->log), 0);
    assert_true (zhost_actor_port_addr (x->recv, 1, x->dest, sizeof x->dest) > 0);
}

//  Step the proc until the log holds want entries (or 2 s pass).
static void
s_pump (fixture_t *x, int want)
{
    for (int i = 0; i < 400 && x->log.count < want; i++)
        zhost_proc_step (x->proc, 5);
    assert_int_equal (x->log.count, want);
}

static void
s_expect_log (fixture_t *x, const char *const *want, int n)
{
    assert_int_equal (x->log.count, n);
    for (int i = 0; i < n; i++)
        assert_string_equal (x->log.log[i], want[i]);
}

//  The fake reads one SEND to SINK with this inline text (lone).
static void
s_expect_lone (fixture_t *x, const char *text)
{
    got_t g;
    assert_true (s_fake_recv (&x->fake, &g, 1000));
    assert_int_equal (g.count, 1);
    zh_head_t head;
    zh_error_t err;
    assert_int_equal (zh_head_decode (&head, s_data (&g, 0), s_size (&g, 0), &err), 0);
    assert_int_equal (head.hdr.command, ZH_SEND);
    assert_int_equal (head.inline_len, strlen (text));
    assert_memory_equal (head.inline_part, text, strlen (text));
    s_got_close (&g);
}

//  The fake reads one BATCH frame holding exactly these elements: SENDs
//  with these texts (or "R:text" for a RETURN). Returns the frame size.
static size_t
s_expect_batch (fixture_t *x, const char *const *texts, size_t n)
{
    got_t g;
    assert_true (s_fake_recv (&x->fake, &g, 1000));
    assert_int_equal (g.count, 1);
    zh_frame_view_t view = {s_data (&g, 0), s_size (&g, 0)};
    zh_msg_t msg;
    zh_error_t err;
    assert_int_equal (zh_msg_decode (&msg, &view, 1, &err), 0);
    assert_int_equal (msg.hdr.command, ZH_BATCH);
    assert_int_equal (msg.batch_elements, n);
    zh_batch_iter_t it;
    assert_int_equal (zh_batch_begin (&it, view.data, view.size, &err), 0);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *elem;
        size_t len;
        assert_int_equal (zh_batch_next (&it, &elem, &len, &err), 1);
        zh_head_t head;
        assert_int_equal (zh_head_decode (&head, elem, len, &err), 0);
        const char *text = texts[i];
        if (strncmp (text, "R:", 2) == 0) {
            assert_int_equal (head.hdr.command, ZH_RETURN);
            text += 2;
        } else
            assert_int_equal (head.hdr.command, ZH_SEND);
        assert_int_equal (head.inline_len, strlen (text));
        assert_memory_equal (head.inline_part, text, strlen (text));
    }
    size_t size = view.size;
    s_got_close (&g);
    return size;
}

static void
s_expect_nothing (fixture_t *x, int ms)
{
    got_t g;
    bool got = s_fake_recv (&x->fake, &g, ms);
    if (got) {
        print_error ("unexpected message: %zu frames, command 0x%02x\n", g.count,
                     s_size (&g, 0) >= 4 ? s_data (&g, 0)[3] : 0);
        s_got_close (&g);
    }
    assert_false (got);
}

static void
s_post (fixture_t *x, const char *text)
{
    zhost_part_t part = {text, strlen (text)};
    zhost_error_t err;
    assert_int_equal (zhost_proc_post (x->proc, x->recv, SINK, &part, 1, NULL, &err), 0);
}

//  ---------------------------------------------------------------------
//  Tests

static void
test_attach_negotiates (void **state)
{
    (void)state;
    unsetenv ("ZHOST_BATCH");
    zhost_error_t err;
    fake_t f;
    s_fake_new (&f, true, 4096);
    zhost_proc_t *proc = s_fake_attach (&f, &err);
    assert_non_null (proc);
    assert_true (f.attach_batch_present && f.attach_batch);
    assert_int_equal (zhost_proc_batch_max_bytes (proc), 4096);
    s_fake_end (&f, &proc);

    //  batch: true without a bound: the default, 256 KiB.
    s_fake_new (&f, true, 0);
    proc = s_fake_attach (&f, &err);
    assert_non_null (proc);
    assert_int_equal (zhost_proc_batch_max_bytes (proc), 262144);
    s_fake_end (&f, &proc);

    //  A broker that does not batch (no batch field): none.
    s_fake_new (&f, false, 0);
    f.batch_field = false;
    proc = s_fake_attach (&f, &err);
    assert_non_null (proc);
    assert_int_equal (zhost_proc_batch_max_bytes (proc), 0);
    s_fake_end (&f, &proc);

    //  ZHOST_BATCH=0: ATTACH says batch false, and the proc sends none
    //  whatever BOOTSTRAP says.
    setenv ("ZHOST_BATCH", "0", 1);
    s_fake_new (&f, true, 4096);
    proc = s_fake_attach (&f, &err);
    assert_non_null (proc);
    assert_true (f.attach_batch_present);
    assert_false (f.attach_batch);
    assert_int_equal (zhost_proc_batch_max_bytes (proc), 0);
    s_fake_end (&f, &proc);

    //  A value that does not parse is refused, naming the variable.
    setenv ("ZHOST_BATCH", "maybe", 1);
    assert_null (zhost_proc_attach ("tcp://127.0.0.1:1", "t", &err));
    assert_int_equal (err.code, ZHOST_E_ENV_INVALID);
    assert_non_null (strstr (err.message, "ZHOST_BATCH=maybe"));
    unsetenv ("ZHOST_BATCH");
}

static void
test_batch_elements_dispatched_in_order (void **state)
{
    (void)state;
    fixture_t x;
    s_setup (&x, true, 4096);
    //  lone a; BATCH [b, c, RETURN r, d]; lone e; BATCH [f]
    s_send_lone (&x.fake, x.dest, "a");
    batch_t b;
    s_batch_init (&b);
    s_batch_send (&b, x.dest, "b");
    s_batch_send (&b, x.dest, "c");
    s_batch_return (&b, zhost_actor_addr (x.recv), "r");
    s_batch_send (&b, x.dest, "d");
    s_fake_send (&x.fake, b.buf, b.used);
    s_send_lone (&x.fake, x.dest, "e");
    s_batch_init (&b);
    s_batch_send (&b, x.dest, "f");
    s_fake_send (&x.fake, b.buf, b.used);
    s_pump (&x, 7);
    static const char *const want[] = {"a", "b", "c", "R:r", "d", "e", "f"};
    s_expect_log (&x, want, 7);
    s_expect_nothing (&x, 50);
    s_fake_end (&x.fake, &x.proc);
}

static void
test_handler_posts_leave_as_one_batch (void **state)
{
    (void)state;
    fixture_t x;
    s_setup (&x, true, 4096);
    x.log.echo = true;
    batch_t b;
    s_batch_init (&b);
    static const char *const five[] = {"1", "2", "3", "4", "5"};
    for (int i = 0; i < 5; i++)
        s_batch_send (&b, x.dest, five[i]);
    s_fake_send (&x.fake, b.buf, b.used);
    s_pump (&x, 5);
    s_expect_batch (&x, five, 5);
    s_expect_nothing (&x, 50);

    //  One message in a step: its one post goes as a lone SEND.
    s_send_lone (&x.fake, x.dest, "6");
    s_pump (&x, 6);
    s_expect_lone (&x, "6");

    //  The proc's own bounce (a closed port, flagged) joins the batch in
    //  order with the handlers' posts.
    char closed[1100];
    assert_true (zhost_actor_port_addr (x.recv, 7, closed, sizeof closed) > 0);
    s_batch_init (&b);
    s_batch_send (&b, x.dest, "7");
    s_batch_send (&b, closed, "8");
    s_batch_send (&b, x.dest, "9");
    s_fake_send (&x.fake, b.buf, b.used);
    s_pump (&x, 8);
    static const char *const mixed[] = {"7", "R:8", "9"};
    s_expect_batch (&x, mixed, 3);
    s_expect_nothing (&x, 50);
    s_fake_end (&x.fake, &x.proc);
}

static void
test_post_outside_a_step_leaves_at_once (void **state)
{
    (void)state;
    fixture_t x;
    s_setup (&x, true, 4096);
    s_post (&x, "now"); //  no step: it is on the wire already
    s_expect_lone (&x, "now");
    s_post (&x, "again");
    s_expect_lone (&x, "again");
    s_fake_end (&x.fake, &x.proc);
}

static void
test_cork_and_flush (void **state)
{
    (void)state;
    fixture_t x;
    s_setup (&x, true, 4096);
    assert_int_equal (zhost_proc_cork (x.proc), 0);
    static const char *const three[] = {"x", "y", "z"};
    for (int i = 0; i < 3; i++)
        s_post (&x, three[i]);
    s_expect_nothing (&x, 100);
    assert_int_equal (zhost_proc_flush (x.proc), 0);
    s_expect_batch (&x, three, 3);
    //  Uncorked again: at once.
    s_post (&x, "w");
    s_expect_lone (&x, "w");
    //  A flush with nothing corked sends nothing; a step sends what is
    //  corked before it waits, and the cork holds.
    assert_int_equal (zhost_proc_flush (x.proc), 0);
    s_expect_nothing (&x, 50);
    assert_int_equal (zhost_proc_cork (x.proc), 0);
    s_post (&x, "p");
    s_post (&x, "q");
    zhost_proc_step (x.proc, 0);
    static const char *const pq[] = {"p", "q"};
    s_expect_batch (&x, pq, 2);
    s_post (&x, "s");
    s_expect_nothing (&x, 50);
    assert_int_equal (zhost_proc_flush (x.proc), 0);
    s_expect_lone (&x, "s"); //  one element alone: a plain SEND
    s_fake_end (&x.fake, &x.proc);
}

static void
test_split_at_batch_max_bytes_and_order (void **state)
{
    (void)state;
    fixture_t x;
    s_setup (&x, true, 400);
    assert_int_equal (zhost_proc_batch_max_bytes (x.proc), 400);
    assert_int_equal (zhost_proc_cork (x.proc), 0);
    char texts[12][32];
    const char *ptrs[12];
    for (int i = 0; i < 12; i++) {
        snprintf (texts[i], sizeof texts[i], "message-%02d-xxxxxxxxxxxxxxxx", i);
        ptrs[i] = texts[i];
        s_post (&x, texts[i]);
    }
    assert_int_equal (zhost_proc_flush (x.proc), 0);
    //  As many elements (each with its 4-byte length) as fit in 400 bytes
    //  after the 6-byte header, per frame, in order.
    size_t elem =
        zh_head_size (strlen (SINK), strlen (zhost_actor_addr (x.recv)), 0, strlen (texts[0]));
    size_t per = (400 - ZH_HEADER_SIZE) / (elem + ZH_BATCH_LEN_SIZE);
    assert_true (per >= 2 && per < 12);
    for (size_t k = 0; k < 12; k += per) {
        size_t n = 12 - k < per ? 12 - k : per;
        if (n == 1)
            s_expect_lone (&x, ptrs[k]);
        else
            assert_true (s_expect_batch (&x, ptrs + k, n) <= 400);
    }
    s_expect_nothing (&x, 50);

    //  A message with payload frames of its own flushes what is corked
    //  first, goes lone, and the batch goes on after it.
    assert_int_equal (zhost_proc_cork (x.proc), 0);
    s_post (&x, "a");
    s_post (&x, "b");
    static char big[5000];
    memset (big, 'B', sizeof big);
    zhost_part_t part = {big, sizeof big};
    zhost_error_t err;
    assert_int_equal (zhost_proc_post (x.proc, x.recv, SINK, &part, 1, NULL, &err), 0);
    s_post (&x, "c");
    s_post (&x, "d");
    assert_int_equal (zhost_proc_flush (x.proc), 0);
    static const char *const ab[] = {"a", "b"}, *const cd[] = {"c", "d"};
    s_expect_batch (&x, ab, 2);
    got_t g;
    assert_true (s_fake_recv (&x.fake, &g, 1000));
    assert_int_equal (g.count, 2); //  head + the 5000-byte part
    assert_int_equal (s_data (&g, 0)[3], ZH_SEND);
    assert_int_equal (s_size (&g, 1), sizeof big);
    s_got_close (&g);
    s_expect_batch (&x, cd, 2);
    s_expect_nothing (&x, 50);
    s_fake_end (&x.fake, &x.proc);
}

static void
test_no_batch_when_bootstrap_says_false (void **state)
{
    (void)state;
    fixture_t x;
    s_setup (&x, false, 4096);
    assert_int_equal (zhost_proc_batch_max_bytes (x.proc), 0);
    x.log.echo = true;
    for (int i = 0; i < 3; i++)
        s_send_lone (&x.fake, x.dest, "m");
    s_pump (&x, 3);
    for (int i = 0; i < 3; i++)
        s_expect_lone (&x, "m");
    //  A cork changes nothing: posts still leave at once.
    assert_int_equal (zhost_proc_cork (x.proc), 0);
    s_post (&x, "k");
    s_expect_lone (&x, "k");
    assert_int_equal (zhost_proc_flush (x.proc), 0);
    s_expect_nothing (&x, 50);
    s_fake_end (&x.fake, &x.proc);
}

static void
test_malformed_container (void **state)
{
    (void)state;
    fixture_t x;
    s_setup (&x, true, 4096);
    batch_t b;
    //  a, b, then a length that runs past the frame: a and b stand.
    s_batch_init (&b);
    s_batch_send (&b, x.dest, "a");
    s_batch_send (&b, x.dest, "b");
    static const uint8_t past[] = {0x00, 0x00, 0x10, 0x00, 'Z', 'H'};
    memcpy (b.buf + b.used, past, sizeof past);
    s_fake_send (&x.fake, b.buf, b.used + sizeof past);
    //  c, then a length of 0.
    s_batch_init (&b);
    s_batch_send (&b, x.dest, "c");
    memset (b.buf + b.used, 0, 4);
    s_fake_send (&x.fake, b.buf, b.used + 4);
    //  d, a PING as an element (not batched: skipped alone), bytes that
    //  are no head, e.
    s_batch_init (&b);
    s_batch_send (&b, x.dest, "d");
    uint8_t ping[ZH_HEADER_SIZE];
    zh_header_write (ping, ZH_PING, 0, 0);
    s_batch_raw (&b, ping, sizeof ping);
    static const uint8_t junk[] = {1, 2, 3};
    s_batch_raw (&b, junk, sizeof junk);
    s_batch_send (&b, x.dest, "e");
    s_fake_send (&x.fake, b.buf, b.used);
    //  Refused whole: no elements; ttl set in the BATCH header; two frames.
    uint8_t empty[ZH_HEADER_SIZE];
    zh_header_write (empty, ZH_BATCH, 0, 0);
    s_fake_send (&x.fake, empty, sizeof empty);
    s_batch_init (&b);
    s_batch_send (&b, x.dest, "no-1");
    b.buf[4] = 1;
    s_fake_send (&x.fake, b.buf, b.used);
    s_batch_init (&b);
    s_batch_send (&b, x.dest, "no-2");
    s_fake_send2 (&x.fake, b.buf, b.used, (const uint8_t *)"x", 1);
    //  And then a lone SEND as usual.
    s_send_lone (&x.fake, x.dest, "f");
    s_pump (&x, 6);
    static const char *const want[] = {"a", "b", "c", "d", "e", "f"};
    s_expect_log (&x, want, 6);
    for (int i = 0; i < 20; i++)
        zhost_proc_step (x.proc, 5);
    assert_int_equal (x.log.count, 6);
    assert_int_equal (zhost_proc_status (x.proc), ZHOST_RUNNING);
    s_fake_end (&x.fake, &x.proc);
}

//  A handler that posts, then requests (blocking), then posts again. The
//  request must not wait corked: the nested step sends [x, request] as a
//  BATCH before it waits, and the answer comes back.
typedef struct {
    zhost_errno_t status;
    char answer[32];
} asker_t;

static int
s_ask (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    (void)msg;
    asker_t *a = (asker_t *)arg;
    zhost_proc_t *proc = zhost_actor_proc (actor);
    zhost_part_t x = {"x", 1}, q = {"question", 8}, y = {"y", 1};
    assert_int_equal (zhost_proc_post (proc, actor, SINK, &x, 1, NULL, NULL), 0);
    zhost_reply_t reply;
    zhost_proc_request (proc, actor, SINK, &q, 1, 2000, &reply);
    a->status = reply.status;
    if (reply.status == ZHOST_OK && reply.part_count)
        snprintf (a->answer, sizeof a->answer, "%.*s", (int)reply.parts[0].size,
                  (const char *)reply.parts[0].data);
    zhost_reply_reset (&reply);
    assert_int_equal (zhost_proc_post (proc, actor, SINK, &y, 1, NULL, NULL), 0);
    return 0;
}

//  The fake's side, on a thread: read [x, question] as one BATCH, answer
//  the question at its reply port with its seq.
typedef struct {
    fake_t *fake;
    bool saw_batch;
} answerer_t;

static void *
s_answer (void *arg)
{
    answerer_t *w = (answerer_t *)arg;
    got_t g;
    if (!s_fake_recv (w->fake, &g, 2000)) return NULL;
    zh_batch_iter_t it;
    zh_error_t err;
    const uint8_t *elem[2];
    size_t len[2];
    if (g.count == 1 && zh_batch_begin (&it, s_data (&g, 0), s_size (&g, 0), &err) == 0 &&
        zh_batch_next (&it, &elem[0], &len[0], &err) == 1 &&
        zh_batch_next (&it, &elem[1], &len[1], &err) == 1 &&
        zh_batch_next (&it, &elem[0], &len[0], &err) == 0) {
        zh_head_t head;
        zh_span_t reply;
        int64_t seq;
        if (zh_head_decode (&head, elem[1], len[1], &err) == 0 && head.inline_len == 8 &&
            memcmp (head.inline_part, "question", 8) == 0 &&
            zh_meta_find_reply (head.meta, head.meta_len, &reply) == 0 &&
            zh_meta_find_seq (head.meta, head.meta_len, &seq) == 0) {
            w->saw_batch = true;
            char dest[1100];
            snprintf (dest, sizeof dest, "%.*s", (int)reply.len, reply.ptr);
            uint8_t meta[14] = {0x81, 0xa3, 's', 'e', 'q', 0xd3};
            for (int i = 0; i < 8; i++)
                meta[6 + i] = (uint8_t)((uint64_t)seq >> (56 - 8 * i));
            uint8_t buf[2048];
            s_fake_send (w->fake, buf,
                         s_elem (buf, sizeof buf, ZH_SEND, dest, meta, sizeof meta, "answer"));
        }
    }
    s_got_close (&g);
    return NULL;
}

static void
test_request_in_a_handler_is_not_held (void **state)
{
    (void)state;
    fixture_t x;
    s_setup (&x, true, 4096);
    asker_t asker = {0};
    assert_int_equal (zhost_actor_open_port (x.recv, 2, s_ask, &asker), 0);
    char ask[1100];
    assert_true (zhost_actor_port_addr (x.recv, 2, ask, sizeof ask) > 0);
    answerer_t w = {&x.fake, false};
    pthread_t thread;
    s_send_lone (&x.fake, ask, "go");
    assert_int_equal (pthread_create (&thread, NULL, s_answer, &w), 0);
    for (int i = 0; i < 100 && !asker.answer[0]; i++)
        zhost_proc_step (x.proc, 10);
    pthread_join (thread, NULL);
    assert_true (w.saw_batch);
    assert_int_equal (asker.status, ZHOST_OK);
    assert_string_equal (asker.answer, "answer");
    s_expect_lone (&x, "y"); //  posted after the request, alone in its step
    s_expect_nothing (&x, 50);
    s_fake_end (&x.fake, &x.proc);
}

//  Read what the fake has (lone SENDs and BATCH elements), checking that
//  the texts count up from *next; step the proc between reads.
static void
s_drain_all (fixture_t *x, long *next, long want)
{
    for (int idle = 0; idle < 200 && *next < want;) {
        got_t g;
        if (!s_fake_recv (&x->fake, &g, 0)) {
            zhost_proc_step (x->proc, 5);
            idle++;
            continue;
        }
        idle = 0;
        zh_batch_iter_t it;
        zh_error_t err;
        const uint8_t *elem = s_data (&g, 0);
        size_t len = s_size (&g, 0);
        bool batch = elem[3] == ZH_BATCH;
        if (batch) assert_int_equal (zh_batch_begin (&it, elem, len, &err), 0);
        while (!batch || zh_batch_next (&it, &elem, &len, &err) == 1) {
            zh_head_t head;
            assert_int_equal (zh_head_decode (&head, elem, len, &err), 0);
            char text[32];
            snprintf (text, sizeof text, "%.*s", (int)head.inline_len, head.inline_part);
            assert_int_equal (strtol (text, NULL, 10), *next);
            (*next)++;
            if (!batch) break;
        }
        s_got_close (&g);
    }
}

//  A post that finds the proc's queue full is refused, batched or not
//  (EAGAIN, as ever), and nothing accepted is lost or reordered.
static void
test_full_queue_refuses_and_loses_nothing (void **state)
{
    (void)state;
    fixture_t x;
    s_setup (&x, true, 4096);
    long accepted = 0;
    char text[32];
    zhost_part_t part = {text, 0};
    zhost_error_t err;
    //  The fake reads nothing: the socket fills, then the proc's queue.
    for (long i = 0; i < 2000000; i++) {
        part.size = (size_t)snprintf (text, sizeof text, "%ld", accepted);
        if (zhost_proc_post (x.proc, x.recv, SINK, &part, 1, NULL, &err) != 0) break;
        accepted++;
    }
    assert_int_equal (err.code, ZHOST_E_SOCKET);
    assert_non_null (strstr (err.message, "queue is full"));
    //  Corked (and so batched), refused the same way.
    assert_int_equal (zhost_proc_cork (x.proc), 0);
    part.size = (size_t)snprintf (text, sizeof text, "%ld", accepted);
    assert_int_equal (zhost_proc_post (x.proc, x.recv, SINK, &part, 1, NULL, &err), -1);
    assert_non_null (strstr (err.message, "queue is full"));
    long next = 0;
    s_drain_all (&x, &next, accepted / 2);
    //  Room again: corked posts are taken, and leave after the rest.
    for (int i = 0; i < 100; i++) {
        part.size = (size_t)snprintf (text, sizeof text, "%ld", accepted);
        assert_int_equal (zhost_proc_post (x.proc, x.recv, SINK, &part, 1, NULL, &err), 0);
        accepted++;
    }
    assert_int_equal (zhost_proc_flush (x.proc), 0);
    s_drain_all (&x, &next, accepted);
    assert_int_equal (next, accepted);
    s_expect_nothing (&x, 50);
    s_fake_end (&x.fake, &x.proc);
}

//  A spawned proc: READY says batch when ZHOST_BATCH_MAX_BYTES allows.
static void
s_spawned (fake_t *f, const char *batch_max, bool want_batch)
{
    char proc_addr[300];
    snprintf (proc_addr, sizeof proc_addr, "sp1@%s", f->endpoint);
    setenv ("ZHOST_PROC", proc_addr, 1);
    setenv ("ZHOST_BACKEND", f->endpoint, 1);
    setenv ("ZHOST_HOST", f->endpoint, 1);
    setenv ("ZHOST_HEARTBEAT_MS", "10000", 1);
    if (batch_max)
        setenv ("ZHOST_BATCH_MAX_BYTES", batch_max, 1);
    else
        unsetenv ("ZHOST_BATCH_MAX_BYTES");
    zhost_error_t err;
    fixture_t x;
    memset (&x, 0, sizeof x);
    x.proc = zhost_proc_boot (&err);
    assert_non_null (x.proc);
    x.recv = zhost_proc_spawn_actor (x.proc, "recv", NULL, &x.log);
    assert_int_equal (zhost_actor_open_port (x.recv, 1, s_on_msg, &x.log), 0);
    assert_true (zhost_actor_port_addr (x.recv, 1, x.dest, sizeof x.dest) > 0);
    x.log.echo = true;
    assert_int_equal (zhost_proc_ready (x.proc), 0);
    memcpy (&x.fake, f, sizeof *f);
    got_t g;
    assert_true (s_fake_recv (&x.fake, &g, 1000));
    assert_int_equal (x.fake.rid_len, 3);
    assert_memory_equal (x.fake.rid, "sp1", 3);
    assert_int_equal (s_data (&g, 0)[3], ZH_READY);
    zh_body_t body;
    zh_error_t perr;
    assert_int_equal (g.count, 2);
    assert_int_equal (zh_body_decode (&body, ZH_READY, s_data (&g, 1), s_size (&g, 1), &perr), 0);
    assert_int_equal (body.batch, want_batch);
    s_got_close (&g);
    assert_int_equal (zhost_proc_batch_max_bytes (x.proc),
                      want_batch ? strtoull (batch_max, NULL, 10) : 0);
    batch_t b;
    s_batch_init (&b);
    s_batch_send (&b, x.dest, "1");
    s_batch_send (&b, x.dest, "2");
    s_fake_send (&x.fake, b.buf, b.used);
    s_pump (&x, 2);
    static const char *const both[] = {"1", "2"};
    if (want_batch)
        s_expect_batch (&x, both, 2);
    else {
        s_expect_lone (&x, "1");
        s_expect_lone (&x, "2");
    }
    memcpy (f, &x.fake, sizeof *f);
    f->mode = 1;
    assert_int_equal (pthread_create (&f->thread, NULL, s_fake_serve, f), 0);
    zhost_proc_destroy (&x.proc);
    pthread_join (f->thread, NULL);
}

static void
test_spawned_proc_negotiates_from_env (void **state)
{
    (void)state;
    fake_t f;
    s_fake_new (&f, true, 0);
    s_spawned (&f, "4096", true);
    s_spawned (&f, NULL, false);
    s_spawned (&f, "0", false);
    setenv ("ZHOST_BATCH", "off", 1);
    s_spawned (&f, "4096", false);
    unsetenv ("ZHOST_BATCH");
    setenv ("ZHOST_BATCH_MAX_BYTES", "lots", 1);
    zhost_error_t err;
    assert_null (zhost_proc_boot (&err));
    assert_int_equal (err.code, ZHOST_E_ENV_INVALID);
    assert_non_null (strstr (err.message, "ZHOST_BATCH_MAX_BYTES"));
    unsetenv ("ZHOST_BATCH_MAX_BYTES");
    s_fake_destroy (&f);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_attach_negotiates),
        cmocka_unit_test (test_batch_elements_dispatched_in_order),
        cmocka_unit_test (test_handler_posts_leave_as_one_batch),
        cmocka_unit_test (test_post_outside_a_step_leaves_at_once),
        cmocka_unit_test (test_cork_and_flush),
        cmocka_unit_test (test_split_at_batch_max_bytes_and_order),
        cmocka_unit_test (test_no_batch_when_bootstrap_says_false),
        cmocka_unit_test (test_malformed_container),
        cmocka_unit_test (test_request_in_a_handler_is_not_held),
        cmocka_unit_test (test_full_queue_refuses_and_loses_nothing),
        cmocka_unit_test (test_spawned_proc_negotiates_from_env),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
