/*  test_embedded.c — the broker embedded in a program, with an in-process
    proc (a thread on the inproc backend), driven by a client over tcp.

    Scenario: a program links libzhbroker, spawns the thread proc `echo`
    with zh_broker_spawn_thread, runs the broker on a thread of its own; a
    client attaches over tcp, asks the echo proc (request: client → broker
    → echo over inproc; reply: echo → broker → client at the reply port),
    and gets its payload back unchanged. zh_broker_stop then stops the
    proc with STOP (it answers BYE and returns 7) and the broker exits 0.
*/
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
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

#include "zh_test_broker.h"
#include "zh_proto.h"
#include "zh_wire.h"

static int echo_exit_code = 7;
static volatile int echo_stopped = 0;

//  Receive one whole message into frames (max 4); returns the count.
static int
s_recv (void *sock, zmq_msg_t *frames, int timeout_ms)
{
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll (&item, 1, timeout_ms) <= 0) return 0;
    int n = 0;
    do {
        zmq_msg_init (&frames[n]);
        zmq_msg_recv (&frames[n], sock, 0);
        n++;
    } while (n < 4 && zmq_msg_more (&frames[n - 1]));
    return n;
}

static void
s_close_all (zmq_msg_t *frames, int n)
{
    for (int i = 0; i < n; i++)
        zmq_msg_close (&frames[i]);
}

//  The echo proc: READY, then answer each SEND at its meta `reply` with
//  the same inline part; on STOP, BYE and return echo_exit_code.
static int
s_echo_main (void *ctx, const char *proc_addr, const char *backend, const char *host,
             int64_t heartbeat_ms, void *arg)
{
    void *sock = zmq_socket (ctx, ZMQ_DEALER);
    const char *at = strchr (proc_addr, '@');
    zmq_setsockopt (sock, ZMQ_ROUTING_ID, proc_addr, (size_t)(at - proc_addr));
    zmq_connect (sock, backend);
    zh_body_t ready = {.command = ZH_READY,
                       .present = ZH_F_PROC | ZH_F_PID,
                       .proc = zh_span_of (proc_addr),
                       .pid = getpid ()};
    zh_wire_send_command (sock, NULL, 0, ZH_READY, &ready, 0);
    char src[ZH_ADDR_MAX + 1];
    snprintf (src, sizeof src, "echo.%s", proc_addr);
    int code = -1;
    for (int turns = 0; turns < 1000 && code < 0; turns++) {
        zmq_msg_t frames[4];
        int n = s_recv (sock, frames, 100);
        if (n == 0) continue;
        zh_header_t hdr;
        const uint8_t *data = zmq_msg_data (&frames[0]);
        if (zh_header_check (&hdr, data, zmq_msg_size (&frames[0]), NULL) == 0) {
            if (hdr.command == ZH_SEND) {
                zh_head_t head;
                zh_span_t reply;
                if (zh_head_decode (&head, data, zmq_msg_size (&frames[0]), NULL) == 0 &&
                    zh_meta_find_reply (head.meta, head.meta_len, &reply) == 0) {
                    uint8_t out[2048];
                    long size = zh_head_write (out, sizeof out, ZH_SEND, 64, ZH_FLAG_INLINE,
                                               reply.ptr, reply.len, src, strlen (src), NULL, 0,
                                               head.inline_part, head.inline_len);
                    zmq_send (sock, out, (size_t)size, 0);
                }
            } else if (hdr.command == ZH_PING)
                zh_wire_send_command (sock, NULL, 0, ZH_PONG, NULL, 0);
            else if (hdr.command == ZH_STOP) {
                zh_body_t bye = {
                    .command = ZH_BYE, .present = ZH_F_REASON, .reason = zh_span_of ("stopped")};
                zh_wire_send_command (sock, NULL, 0, ZH_BYE, &bye, 0);
                echo_stopped = 1;
                code = echo_exit_code;
            }
        }
        s_close_all (frames, n);
    }
    zmq_close (sock);
    return code;
}

static void
test_client_asks_an_in_process_echo_proc (void **state)
{
    zh_test_broker_t t;
    zh_test_broker_new (&t, "--linger", "200ms", "--terminate-timeout", "2s", "--log-level", "warn",
                        NULL);
    zh_broker_t *broker = t.broker;
    zh_error_t err;
    assert_int_equal (zh_broker_spawn_thread (broker, "echo", s_echo_main, NULL, 5000, &err), 0);
    //  A second proc of the same live name is refused.
    assert_int_equal (zh_broker_spawn_thread (broker, "echo", s_echo_main, NULL, 5000, &err), -1);
    assert_string_equal (err.word, "PROC_EXISTS");
    const char *frontend = t.frontend;
    zh_test_broker_run (&t);

    //  Client: attach over tcp.
    void *ctx = zmq_ctx_new ();
    void *client = zmq_socket (ctx, ZMQ_DEALER);
    uint8_t rid[16] = {0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    zmq_setsockopt (client, ZMQ_ROUTING_ID, rid, sizeof rid);
    assert_int_equal (zmq_connect (client, frontend), 0);
    zh_wire_send_command (client, NULL, 0, ZH_ATTACH, NULL, 0);
    zmq_msg_t frames[4];
    int n = s_recv (client, frames, 5000);
    assert_int_equal (n, 2);
    zh_body_t boot;
    assert_int_equal (zh_body_decode (&boot, ZH_BOOTSTRAP, zmq_msg_data (&frames[1]),
                                      zmq_msg_size (&frames[1]), &err),
                      0);
    char proc[ZH_ADDR_MAX + 1];
    snprintf (proc, sizeof proc, "%.*s", (int)boot.proc.len, boot.proc.ptr);
    s_close_all (frames, n);

    //  Request: client → broker → echo (inproc); the proc may need a moment
    //  to send READY, so a NO_SUCH_PROC / PROC_GONE answer is retried.
    char dest[ZH_ADDR_MAX + 16], src[ZH_ADDR_MAX + 16], reply[ZH_ADDR_MAX + 16];
    char *at = strchr (proc, '@');
    snprintf (dest, sizeof dest, "echo.echo:1%s", at);
    snprintf (src, sizeof src, "main.%s", proc);
    snprintf (reply, sizeof reply, "main.%.*s:5%s", (int)(at - proc), proc, at);
    uint8_t meta[ZH_ADDR_MAX + 16];
    size_t meta_len = 0;
    meta[meta_len++] = 0x81;
    meta[meta_len++] = 0xa5;
    memcpy (meta + meta_len, "reply", 5);
    meta_len += 5;
    meta[meta_len++] = 0xd9;
    meta[meta_len++] = (uint8_t)strlen (reply);
    memcpy (meta + meta_len, reply, strlen (reply));
    meta_len += strlen (reply);

    bool answered = false;
    for (int attempt = 0; attempt < 50 && !answered; attempt++) {
        uint8_t out_head[4096];
        long len =
            zh_head_write (out_head, sizeof out_head, ZH_SEND, 64,
                           ZH_FLAG_INLINE | ZH_FLAG_RETURN_UNDELIVERABLE, dest, strlen (dest), src,
                           strlen (src), meta, meta_len, (const uint8_t *)"ping\0bytes", 10);
        zmq_send (client, out_head, (size_t)len, 0);
        n = s_recv (client, frames, 5000);
        assert_true (n >= 1);
        zh_head_t head;
        assert_int_equal (
            zh_head_decode (&head, zmq_msg_data (&frames[0]), zmq_msg_size (&frames[0]), &err), 0);
        if (head.hdr.command == ZH_SEND) {
            //  reply: echo → broker → client, at the reply port, unchanged.
            assert_int_equal (head.dest_len, strlen (reply));
            assert_memory_equal (head.dest, reply, head.dest_len);
            assert_int_equal (head.inline_len, 10);
            assert_memory_equal (head.inline_part, "ping\0bytes", 10);
            assert_int_equal (head.hdr.ttl, 63);
            answered = true;
        }
        s_close_all (frames, n);
        if (!answered) usleep (20000);
    }
    assert_true (answered);

    assert_int_equal (zh_test_broker_end (&t), 0);
    assert_true (echo_stopped);
    zmq_close (client);
    zmq_ctx_term (ctx);
}

//  --cpu pins the broker, never its procs: a thread proc started by a
//  pinned thread still gets the CPUs the broker started with.
static cpu_set_t probe_cpus;
static atomic_int probe_done;

static int
s_probe_main (void *ctx, const char *proc_addr, const char *backend, const char *host,
              int64_t heartbeat_ms, void *arg)
{
    (void)ctx, (void)proc_addr, (void)backend, (void)host, (void)heartbeat_ms, (void)arg;
    sched_getaffinity (0, sizeof probe_cpus, &probe_cpus);
    atomic_store (&probe_done, 1);
    return 0;
}

static void
test_thread_procs_keep_the_start_cpus_of_a_pinned_broker (void **state)
{
    (void)state;
    cpu_set_t mine;
    assert_int_equal (sched_getaffinity (0, sizeof mine, &mine), 0);
    if (CPU_COUNT (&mine) < 2) skip ();
    int pin = -1;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET (cpu, &mine)) pin = cpu;
    char pin_text[16];
    snprintf (pin_text, sizeof pin_text, "%d", pin);
    zh_test_broker_t t;
    zh_test_broker_new (&t, "--cpu", pin_text, "--log-level", "warn", NULL);
    //  Spawn from a thread pinned as the broker's loop is (the spawn op
    //  runs there): the proc must not inherit that.
    cpu_set_t one;
    CPU_ZERO (&one);
    CPU_SET (pin, &one);
    assert_int_equal (pthread_setaffinity_np (pthread_self (), sizeof one, &one), 0);
    zh_error_t err;
    assert_int_equal (zh_broker_spawn_thread (t.broker, "probe", s_probe_main, NULL, 5000, &err),
                      0);
    for (int i = 0; i < 200 && !atomic_load (&probe_done); i++)
        usleep (10000);
    assert_int_equal (pthread_setaffinity_np (pthread_self (), sizeof mine, &mine), 0);
    assert_true (atomic_load (&probe_done));
    assert_true (CPU_EQUAL (&probe_cpus, &mine));
    zh_test_broker_end (&t);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_client_asks_an_in_process_echo_proc),
        cmocka_unit_test (test_thread_procs_keep_the_start_cpus_of_a_pinned_broker),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
