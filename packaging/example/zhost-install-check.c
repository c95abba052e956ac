/*  zhost-install-check.c — the smallest client of an installed libzhost.

    Built by scripts/check-install.sh against the installed library (with
    pkg-config and with CMake's find_package, shared and static) to prove
    the headers, zhost.pc and the CMake package are enough to build a
    program. It attaches to a broker's frontend, sends one request with a
    payload to DEST (a port address, e.g. the echo proc's port 2, which
    answers with the request's parts unchanged) and checks the reply:

        zhost-install-check FRONTEND DEST

    Exit 0 when the reply carries the payload back, 1 otherwise (a line on
    stderr says why), 2 on usage.
*/
#include <stdio.h>
#include <string.h>
#include <zhost/zhost.h>

int
main (int argc, char *argv[])
{
    if (argc != 3) {
        fprintf (stderr, "usage: zhost-install-check FRONTEND DEST\n");
        return 2;
    }
    zhost_error_t err;
    zhost_proc_t *proc = zhost_proc_attach (argv[1], "install-check", &err);
    if (!proc) {
        fprintf (stderr, "zhost-install-check: attach %s: %s\n", argv[1], err.message);
        return 1;
    }
    int rc = 1;
    zhost_actor_t *me = zhost_proc_spawn_actor (proc, "check", NULL, NULL);
    if (me) {
        const char *text = "hello from an installed libzhost";
        zhost_part_t part = {text, strlen (text)};
        zhost_reply_t reply;
        if (zhost_proc_request (proc, me, argv[2], &part, 1, 5000, &reply) != 0)
            fprintf (stderr, "zhost-install-check: request %s: %s %s\n", argv[2], reply.code,
                     reply.reason);
        else if (reply.part_count != 1 || reply.parts[0].size != part.size ||
                 memcmp (reply.parts[0].data, text, part.size) != 0)
            fprintf (stderr, "zhost-install-check: %s answered something else\n", reply.src);
        else {
            printf ("reply from %s: %.*s\n", reply.src, (int)reply.parts[0].size,
                    (const char *)reply.parts[0].data);
            rc = 0;
        }
        zhost_reply_reset (&reply);
    } else
        fprintf (stderr, "zhost-install-check: cannot spawn an actor\n");
    zhost_proc_destroy (&proc);
    return rc;
}
