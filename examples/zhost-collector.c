/*  zhost-collector — the seed's UndeliverableCollector as a proc.

    Where it sits: an example of undeliverable handling, and the C side of
    the end-to-end tests of returns (tests/integration/test_procs_e2e.py).
    It runs spawned (ZHOST_PROC set) or attached:

        zhost-collector                         spawned by a broker
        zhost-collector --attach FRONTEND [--label LABEL]
                                                attached; prints "proc ADDR"

    It hosts the actor `collector`:
        port 1  "send to": part 0 is a port address; the collector posts
                "into-the-void" there (asking for RETURNs) and keeps the
                request's meta `reply` as the place to report to.
        port 3  fails (its handler returns 1): the proc will exit 1.
        undeliverable handler: for each RETURN it prints, and posts to the
                report port as one text part,
                    undeliverable dest=ORIGINAL-DEST code=ROOT-CODE at=AT parts=N
        stop callback: prints "stopping".
    It ends on STOP, SIGINT/SIGTERM (attached: a clean detach) or a BYE
    from the broker; the exit code is zhost_proc_run's.
*/
#include <stdio.h>
#include <string.h>

#include <zhost/zhost.h>

static char s_report_to[1100]; //  where reports go ("" = only stdout)

static int
s_send_to (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    if (msg->part_count == 0 || msg->parts[0].size >= sizeof s_report_to) return 1;
    char dest[1100];
    snprintf (dest, sizeof dest, "%.*s", (int)msg->parts[0].size, (const char *)msg->parts[0].data);
    snprintf (s_report_to, sizeof s_report_to, "%s", msg->reply ? msg->reply : "");
    zhost_part_t part = {"into-the-void", 13};
    zhost_error_t err;
    if (zhost_proc_post (zhost_actor_proc (actor), actor, dest, &part, 1, NULL, &err) != 0) {
        printf ("post failed: %s\n", err.message);
        fflush (stdout);
        return 1;
    }
    return 0;
}

static int
s_fail (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    return 1;
}

static int
s_on_undeliverable (zhost_actor_t *actor, const zhost_undeliverable_t *u, void *arg)
{
    char line[2200];
    const zhost_failure_t *root = u->failure_count ? &u->failures[0] : NULL;
    int n =
        snprintf (line, sizeof line, "undeliverable dest=%s code=%s at=%s parts=%zu", u->orig_dest,
                  root ? root->code : "-", root ? root->at : "-", u->msg->part_count);
    printf ("%s\n", line);
    fflush (stdout);
    if (!s_report_to[0]) return 0;
    zhost_part_t part = {line, (size_t)n};
    return zhost_proc_post (zhost_actor_proc (actor), actor, s_report_to, &part, 1, NULL, NULL);
}

static int
s_on_stop (zhost_actor_t *actor, void *arg)
{
    printf ("stopping\n");
    fflush (stdout);
    return 0;
}

int
main (int argc, char *argv[])
{
    zhost_error_t err;
    zhost_proc_t *proc = NULL;
    if (argc >= 3 && strcmp (argv[1], "--attach") == 0) {
        const char *label = argc == 5 && strcmp (argv[3], "--label") == 0 ? argv[4] : NULL;
        proc = zhost_proc_attach (argv[2], label, &err);
    } else if (argc == 1)
        proc = zhost_proc_boot (&err);
    else {
        fprintf (stderr, "usage: zhost-collector [--attach FRONTEND [--label LABEL]]\n");
        return 2;
    }
    if (!proc) {
        fprintf (stderr, "zhost-collector: %s\n", err.message);
        return 2;
    }
    zhost_actor_handlers_t handlers = {s_on_undeliverable, s_on_stop};
    zhost_actor_t *collector = zhost_proc_spawn_actor (proc, "collector", &handlers, NULL);
    if (!collector || zhost_actor_open_port (collector, 1, s_send_to, NULL) ||
        zhost_actor_open_port (collector, 3, s_fail, NULL)) {
        zhost_proc_destroy (&proc);
        return 2;
    }
    printf ("proc %s\n", zhost_proc_addr (proc));
    fflush (stdout);
    int rc = zhost_proc_run (proc);
    printf ("exit %d %s\n", rc, zhost_proc_reason (proc));
    fflush (stdout);
    zhost_proc_destroy (&proc);
    return rc;
}
