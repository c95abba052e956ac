/*  zh-test-proc.c — the smallest spawned proc, in C, for lifecycle tests.

    Where it sits: spawned by zhost-broker (tests start it with --spawn or
    the spawn op). It does what docs/protocol.md §6 asks of a spawned proc and
    nothing else: DEALER to $ZHOST_BACKEND with ROUTING_ID = its proc id,
    READY {proc, pid}, PONG to PING, and on STOP: BYE, exit 0. Cheap to
    start a hundred of (no interpreter).

    Flags, for the failure paths:
        --no-ready          never send READY
        --ignore-stop       ignore STOP (the broker escalates to SIGTERM)
        --ignore-term       also ignore SIGTERM (the broker ends with SIGKILL)
        --stop-delay MS     wait MS after STOP before BYE and exit
        --exit N            exit N at once, before READY
        --crash-after MS    exit 3 MS after READY
        --ready-delay MS    wait MS before connecting and READY
        --print-before-ready N  write N bytes of lines to stdout before READY
    It prints "up <proc>" at start and "stop <proc>" when STOP arrives.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "zh_proto.h"
#include "zh_wire.h"

static long
s_flag (int argc, char **argv, const char *name, long absent)
{
    for (int i = 1; i < argc; i++)
        if (strcmp (argv[i], name) == 0)
            return i + 1 < argc && argv[i + 1][0] != '-' ? atol (argv[i + 1]) : 1;
    return absent;
}

int
main (int argc, char **argv)
{
    long exit_now = s_flag (argc, argv, "--exit", -1);
    if (exit_now >= 0) return (int)exit_now;
    if (s_flag (argc, argv, "--ignore-term", 0)) signal (SIGTERM, SIG_IGN);
    const char *proc = getenv ("ZHOST_PROC"), *backend = getenv ("ZHOST_BACKEND");
    if (!proc || !backend || !strchr (proc, '@')) {
        fprintf (stderr, "zh-test-proc: ZHOST_PROC and ZHOST_BACKEND must be set\n");
        return 2;
    }
    printf ("up %s\n", proc);
    fflush (stdout);
    long print_bytes = s_flag (argc, argv, "--print-before-ready", 0);
    for (long left = print_bytes; left > 0; left -= 64) {
        char line[65];
        size_t len = left < 64 ? (size_t)left : 64;
        memset (line, 'x', len - 1);
        line[len - 1] = '\n';
        fwrite (line, 1, len, stdout);
    }
    fflush (stdout);
    void *ctx = zmq_ctx_new ();
    void *sock = zmq_socket (ctx, ZMQ_DEALER);
    int linger = 1000;
    zmq_setsockopt (sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (sock, ZMQ_ROUTING_ID, proc, (size_t)(strchr (proc, '@') - proc));
    long ready_delay = s_flag (argc, argv, "--ready-delay", 0);
    if (ready_delay > 0) usleep ((useconds_t)ready_delay * 1000);
    zmq_connect (sock, backend);
    if (!s_flag (argc, argv, "--no-ready", 0)) {
        zh_body_t ready = {.command = ZH_READY,
                           .present = ZH_F_PROC | ZH_F_PID,
                           .proc = zh_span_of (proc),
                           .pid = getpid ()};
        zh_wire_send_command (sock, NULL, 0, ZH_READY, &ready, 0);
    }
    long crash_after = s_flag (argc, argv, "--crash-after", -1);
    long waited = 0;
    while (1) {
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, 50) <= 0) {
            waited += 50;
            if (crash_after >= 0 && waited >= crash_after) return 3;
            continue;
        }
        uint8_t header[64];
        int n = zmq_recv (sock, header, sizeof header, 0);
        int more = 0;
        size_t more_size = sizeof more;
        zmq_getsockopt (sock, ZMQ_RCVMORE, &more, &more_size);
        while (more) {
            zmq_msg_t rest;
            zmq_msg_init (&rest);
            zmq_msg_recv (&rest, sock, 0);
            more = zmq_msg_more (&rest);
            zmq_msg_close (&rest);
        }
        if (n < ZH_HEADER_SIZE) continue;
        if (header[3] == ZH_PING)
            zh_wire_send_command (sock, NULL, 0, ZH_PONG, NULL, 0);
        else if (header[3] == ZH_STOP && !s_flag (argc, argv, "--ignore-stop", 0)) {
            printf ("stop %s\n", proc);
            fflush (stdout);
            long delay = s_flag (argc, argv, "--stop-delay", 0);
            if (delay > 0) usleep ((useconds_t)delay * 1000);
            zh_body_t bye = {
                .command = ZH_BYE, .present = ZH_F_REASON, .reason = zh_span_of ("stopped")};
            zh_wire_send_command (sock, NULL, 0, ZH_BYE, &bye, 0);
            break;
        } else if (header[3] == ZH_BYE)
            break;
    }
    zmq_close (sock);
    zmq_ctx_term (ctx);
    return 0;
}
