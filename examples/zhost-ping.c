/*  zhost-ping — an attached client that asks a proc and times the answers.

    Where it sits: the client side of libzhost. It attaches to a broker's
    frontend (ATTACH → BOOTSTRAP), spawns one actor, `ping`, and sends
    requests with zhost_proc_request (a once-port per request, a timeout),
    printing one line per answer and a summary, like ping(8):

        zhost-ping [-c COUNT] [-i INTERVAL_MS] [-W TIMEOUT_MS] [-p PORT]
                   [-s SIZE | -t TEXT] [-l LABEL] FRONTEND TARGET

    TARGET is an actor address (its port PORT, default 1, is asked), a
    port address, or `agent` (the host agent's `ping` op). With -s the
    payload is SIZE bytes (use -p 2 on zhost-echo to get them back), with
    -t it is TEXT. Output:

        reply from echo.e1@tcp://127.0.0.1:7100: seq=1 time=0.213 ms parts=1 "echo.e1@…"
        seq=2 NO_SUCH_ACTOR: no actor ghost on proc e1@…
        seq=3 TIMEOUT: no answer before the timeout
        3 sent, 1 answered, rtt min/avg/max = 0.213/0.213/0.213 ms

    Exit 0 when every request was answered, 1 when some were not, 2 on a
    bad command line or a failed attach. It detaches cleanly (BYE, and
    waits for the broker's BYE) before it exits.
*/
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zhost/zhost.h>

#include "zh_addr.h"

static const char s_agent_ping[] = "\x81\xa2op\xa4ping"; //  {"op": "ping"}

static double
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int
s_usage (void)
{
    fprintf (stderr, "usage: zhost-ping [-c COUNT] [-i INTERVAL_MS] [-W TIMEOUT_MS] [-p PORT]\n"
                     "                  [-s SIZE | -t TEXT] [-l LABEL] FRONTEND TARGET\n"
                     "TARGET: an actor or port address, or `agent` (the host agent)\n");
    return 2;
}

//  The port address to ask: TARGET's port PORT, or TARGET itself.
static int
s_dest (const char *target, unsigned long long port, zhost_proc_t *proc, char *buf, size_t size)
{
    if (strcmp (target, "agent") == 0)
        return snprintf (buf, size, "host_agent.service:1@%s", zhost_proc_host (proc)) < (int)size
                   ? 0
                   : -1;
    zh_addr_t addr;
    zh_error_t err;
    if (zh_addr_parse (&addr, target, strlen (target), &err) != 0) {
        fprintf (stderr, "zhost-ping: TARGET %s: %s\n", target, err.reason);
        return -1;
    }
    if (addr.kind == ZH_ADDR_PORT) return snprintf (buf, size, "%s", target) < (int)size ? 0 : -1;
    if (addr.kind != ZH_ADDR_ACTOR) {
        fprintf (stderr, "zhost-ping: TARGET %s is a proc address: name an actor\n", target);
        return -1;
    }
    return snprintf (buf, size, "%.*s:%llu@%.*s", (int)(addr.endpoint.ptr - target - 1), target,
                     port, (int)addr.endpoint.len, addr.endpoint.ptr) < (int)size
               ? 0
               : -1;
}

//  Print an answer's first part as text when it looks like text.
static void
s_print_reply (int seq, double ms, const zhost_reply_t *reply)
{
    printf ("reply from %s: seq=%d time=%.3f ms parts=%zu", reply->src, seq, ms, reply->part_count);
    if (reply->part_count) {
        const char *text = (const char *)reply->parts[0].data;
        size_t n = reply->parts[0].size, i = 0;
        while (i < n && text[i] >= 0x20 && text[i] < 0x7f)
            i++;
        if (i == n && n <= 200)
            printf (" \"%.*s\"", (int)n, text);
        else
            printf (" bytes=%zu", n);
    }
    printf ("\n");
}

//  Keep the loop (heartbeats) going while we wait between requests.
static void
s_pause (zhost_proc_t *proc, int ms)
{
    double until = s_now () + ms;
    while (s_now () < until && zhost_proc_step (proc, (int)(until - s_now ()) + 1) >= 0)
        ;
}

int
main (int argc, char *argv[])
{
    int count = 1, interval = 1000, timeout = 2000, opt;
    unsigned long long port = 1;
    size_t size = 0;
    const char *text = NULL, *label = "ping";
    while ((opt = getopt (argc, argv, "c:i:W:p:s:t:l:h")) != -1) {
        switch (opt) {
        case 'c':
            count = atoi (optarg);
            break;
        case 'i':
            interval = atoi (optarg);
            break;
        case 'W':
            timeout = atoi (optarg);
            break;
        case 'p':
            port = strtoull (optarg, NULL, 10);
            break;
        case 's':
            size = strtoul (optarg, NULL, 10);
            break;
        case 't':
            text = optarg;
            break;
        case 'l':
            label = optarg;
            break;
        default:
            return s_usage ();
        }
    }
    if (argc - optind != 2 || count < 1 || timeout < 1 || interval < 0) return s_usage ();
    zhost_error_t err;
    zhost_proc_t *proc = zhost_proc_attach (argv[optind], label, &err);
    if (!proc) {
        fprintf (stderr, "zhost-ping: %s\n", err.message);
        return 2;
    }
    char dest[1100];
    zhost_actor_t *me = zhost_proc_spawn_actor (proc, "ping", NULL, NULL);
    if (!me || s_dest (argv[optind + 1], port, proc, dest, sizeof dest) != 0) {
        zhost_proc_destroy (&proc);
        return 2;
    }
    char *payload = size ? (char *)calloc (1, size) : NULL;
    for (size_t i = 0; i < size; i++)
        payload[i] = (char)('a' + i % 26);
    zhost_part_t part = {s_agent_ping, sizeof s_agent_ping - 1};
    if (strcmp (argv[optind + 1], "agent") != 0)
        part = payload ? (zhost_part_t){payload, size}
                       : (zhost_part_t){text ? text : "ping", strlen (text ? text : "ping")};
    int answered = 0;
    double min = 0, max = 0, sum = 0;
    for (int seq = 1; seq <= count && zhost_proc_status (proc) == ZHOST_RUNNING; seq++) {
        if (seq > 1) s_pause (proc, interval);
        zhost_reply_t reply;
        double start = s_now ();
        int rc = zhost_proc_request (proc, me, dest, &part, 1, timeout, &reply);
        double ms = s_now () - start;
        if (rc == 0) {
            s_print_reply (seq, ms, &reply);
            answered++;
            sum += ms;
            min = answered == 1 || ms < min ? ms : min;
            max = ms > max ? ms : max;
        } else
            printf ("seq=%d %s: %s\n", seq,
                    reply.status == ZHOST_E_RETURNED  ? reply.code
                    : reply.status == ZHOST_E_TIMEOUT ? "TIMEOUT"
                                                      : "FAILED",
                    reply.reason);
        zhost_reply_reset (&reply);
        fflush (stdout);
    }
    printf ("%d sent, %d answered, rtt min/avg/max = %.3f/%.3f/%.3f ms\n", count, answered, min,
            answered ? sum / answered : 0.0, max);
    if (zhost_proc_status (proc) == ZHOST_CLOSED)
        fprintf (stderr, "zhost-ping: %s\n", zhost_proc_reason (proc));
    free (payload);
    zhost_proc_destroy (&proc); //  BYE, and wait for the broker's
    return answered == count ? 0 : 1;
}
