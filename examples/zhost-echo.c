/*  zhost-echo — the echo proc: a spawned proc hosting one actor, `echo`.

    Where it sits: the smallest real user of libzhost, and a fixture that
    scripts and tests in other languages rely on. Its contract (keep it):

        zhost-broker --spawn e1=zhost-echo      (or the agent's spawn op)

        port 1  a SEND carrying meta `reply` is answered at that reply
                port with one payload part: this actor's own address as
                text, e.g. "echo.e1@tcp://127.0.0.1:7100" (the seed's
                EchoActor);
        port 2  answered at `reply` with the request's payload parts,
                unchanged (same count, same bytes);
        STOP    exits 0.

    Answers echo the request's `seq`. A request without `reply` is
    ignored. Anything else (another port, another actor) comes back to a
    sender that asked for it as NO_SUCH_PORT / NO_SUCH_ACTOR.
*/
#include <stdio.h>
#include <string.h>

#include <zhost/zhost.h>

//  Port 1: who are you? — our own address.
static int
s_who (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    if (!msg->reply) return 0;
    const char *addr = zhost_actor_addr (actor);
    zhost_part_t part = {addr, strlen (addr)};
    return zhost_actor_reply (actor, msg, &part, 1) == 0 ? 0 : 1;
}

//  Port 2: the same parts back.
static int
s_same (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    if (!msg->reply) return 0;
    return zhost_actor_reply (actor, msg, msg->parts, msg->part_count) == 0 ? 0 : 1;
}

int
main (int argc, char *argv[])
{
    zhost_error_t err;
    zhost_proc_t *proc = zhost_proc_boot (&err);
    if (!proc) {
        fprintf (stderr, "zhost-echo: %s\n", err.message);
        return 2;
    }
    zhost_actor_t *echo = zhost_proc_spawn_actor (proc, "echo", NULL, NULL);
    if (!echo || zhost_actor_open_port (echo, 1, s_who, NULL) ||
        zhost_actor_open_port (echo, 2, s_same, NULL)) {
        fprintf (stderr, "zhost-echo: cannot install the echo actor\n");
        zhost_proc_destroy (&proc);
        return 2;
    }
    int rc = zhost_proc_run (proc); //  READY, serve, until STOP
    zhost_proc_destroy (&proc);
    return rc;
}
