/*  zhost-pipeline — two spawned procs working together: front → upper.

    Where it sits: an example of a proc that is both a server and a
    client of another proc, through the broker:

        client ──SEND port 1──▶ front.<p1> ──request──▶ upper.<p2> port 1
               ◀──answer───────            ◀──answer──  (the text in upper case)

        zhost-broker --spawn up="zhost-pipeline upper" \
                     --spawn fr="zhost-pipeline front upper.up"
        zhost-ping -t hello FRONTEND front.fr@ENDPOINT      → "HELLO"

    Roles:
        upper           actor `upper`, port 1: answers part 0 upper-cased.
        front NEXT      actor `front`, port 1: asks NEXT (an actor address,
                        or "actor.proc" on this broker) at its port 1 and
                        answers its own requester with NEXT's answer. If
                        NEXT fails, it answers "error: CODE" (a RETURN) or
                        "error: TIMEOUT".
        front NEXT --blocking
                        the same with the blocking zhost_proc_request
                        called inside the handler (the loop keeps running
                        while it waits); by default the asynchronous
                        zhost_proc_request_async with a callback.
*/
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zhost/zhost.h>

#define S_TIMEOUT_MS 2000

static char s_next[1100]; //  NEXT's port 1 address

//  ---------------------------------------------------------------------
//  upper

static int
s_upper (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    if (!msg->reply || msg->part_count == 0) return 0;
    size_t n = msg->parts[0].size;
    char *text = (char *)malloc (n + 1);
    if (!text) return 1;
    for (size_t i = 0; i < n; i++)
        text[i] = (char)toupper (((const unsigned char *)msg->parts[0].data)[i]);
    zhost_part_t part = {text, n};
    int rc = zhost_actor_reply (actor, msg, &part, 1);
    free (text);
    return rc == 0 ? 0 : 1;
}

//  ---------------------------------------------------------------------
//  front

//  Where the answer to one of front's requests must go.
typedef struct {
    char reply[1100];
    bool has_seq;
    int64_t seq;
} s_pending_t;

static int
s_answer (zhost_actor_t *actor, const char *reply, bool has_seq, int64_t seq, zhost_errno_t status,
          const zhost_part_t *parts, size_t count, const char *code)
{
    char text[64];
    zhost_part_t err_part = {text, 0};
    if (status != ZHOST_OK) {
        err_part.size = (size_t)snprintf (text, sizeof text, "error: %s",
                                          status == ZHOST_E_TIMEOUT ? "TIMEOUT" : code);
        parts = &err_part;
        count = 1;
    }
    zhost_post_opts_t opts = {.has_seq = has_seq, .seq = seq};
    return zhost_proc_post (zhost_actor_proc (actor), actor, reply, parts, count, &opts, NULL);
}

//  Asynchronous form: the callback answers the original requester.
static void
s_on_upper (zhost_actor_t *actor, zhost_errno_t status, const zhost_msg_t *msg,
            const zhost_undeliverable_t *u, void *arg)
{
    s_pending_t *p = (s_pending_t *)arg;
    const char *code = u && u->failure_count ? u->failures[0].code : "FAILED";
    if (status != ZHOST_E_STOPPED && status != ZHOST_E_CLOSED)
        s_answer (actor, p->reply, p->has_seq, p->seq, status, msg ? msg->parts : NULL,
                  msg ? msg->part_count : 0, code);
    free (p);
}

static int
s_front_async (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    if (!msg->reply) return 0;
    s_pending_t *p = (s_pending_t *)calloc (1, sizeof (s_pending_t));
    if (!p) return 1;
    snprintf (p->reply, sizeof p->reply, "%s", msg->reply);
    p->has_seq = msg->has_seq;
    p->seq = msg->seq;
    if (!zhost_proc_request_async (zhost_actor_proc (actor), actor, s_next, msg->parts,
                                   msg->part_count, S_TIMEOUT_MS, s_on_upper, p)) {
        free (p);
        return 1;
    }
    return 0;
}

//  Blocking form: safe inside a handler, the loop runs while it waits.
//  msg stays valid across the call; copy the reply address anyway, as a
//  habit: other handlers run meanwhile.
static int
s_front_blocking (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    if (!msg->reply) return 0;
    char reply_to[1100];
    snprintf (reply_to, sizeof reply_to, "%s", msg->reply);
    zhost_reply_t reply;
    zhost_proc_request (zhost_actor_proc (actor), actor, s_next, msg->parts, msg->part_count,
                        S_TIMEOUT_MS, &reply);
    int rc = 0;
    if (reply.status != ZHOST_E_STOPPED && reply.status != ZHOST_E_CLOSED)
        rc = s_answer (actor, reply_to, msg->has_seq, msg->seq, reply.status, reply.parts,
                       reply.part_count, reply.code);
    zhost_reply_reset (&reply);
    return rc == 0 ? 0 : 1;
}

//  ---------------------------------------------------------------------

static int
s_usage (void)
{
    fprintf (stderr, "usage: zhost-pipeline upper\n"
                     "       zhost-pipeline front NEXT [--blocking]\n");
    return 2;
}

int
main (int argc, char *argv[])
{
    bool front = argc >= 3 && strcmp (argv[1], "front") == 0;
    if (!(argc == 2 && strcmp (argv[1], "upper") == 0) &&
        !(front && (argc == 3 || (argc == 4 && strcmp (argv[3], "--blocking") == 0))))
        return s_usage ();
    zhost_error_t err;
    zhost_proc_t *proc = zhost_proc_boot (&err);
    if (!proc) {
        fprintf (stderr, "zhost-pipeline: %s\n", err.message);
        return 2;
    }
    zhost_actor_t *actor = zhost_proc_spawn_actor (proc, front ? "front" : "upper", NULL, NULL);
    zhost_handler_fn *handler = !front ? s_upper : argc == 4 ? s_front_blocking : s_front_async;
    if (front) {
        //  NEXT: "actor.proc" on this broker, or a full actor address.
        const char *next = argv[2];
        const char *at = strchr (next, '@');
        if (at)
            snprintf (s_next, sizeof s_next, "%.*s:1%s", (int)(at - next), next, at);
        else
            snprintf (s_next, sizeof s_next, "%s:1@%s", next, zhost_proc_host (proc));
    }
    if (!actor || zhost_actor_open_port (actor, 1, handler, NULL) != 0) {
        zhost_proc_destroy (&proc);
        return 2;
    }
    int rc = zhost_proc_run (proc);
    zhost_proc_destroy (&proc);
    return rc;
}
