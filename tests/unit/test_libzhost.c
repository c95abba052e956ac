/*  test_libzhost.c — libzhost's per-proc caches (LZ-1) against a real
    broker, embedded on a thread of this program.

    Scenario: two procs attach over tcp, `a` (actor `sender`) and `b`
    (actor `recv`, port 1). a posts to recv:1 again and again, so both the
    post's dest check and b's dispatch answer from their caches. Between
    posts the test changes what the cache must not hide: a dest of the
    same length that is not an address (refused), b's port closed
    (NO_SUCH_PORT back to sender) and reopened (delivered), an actor that
    does not exist yet (NO_SUCH_ACTOR) and then does (delivered), and two
    dests in turn (each reaches its own actor).
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

#include "zh_test_broker.h"
#include "zhost/zhost.h"

typedef struct {
    int delivered;
    char last_payload[64];
} counter_t;

typedef struct {
    int returned;
    char code[32];
} bounces_t;

static int
s_count (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    (void)actor;
    counter_t *c = (counter_t *)arg;
    c->delivered++;
    size_t n = msg->part_count ? msg->parts[0].size : 0;
    if (n >= sizeof c->last_payload) n = sizeof c->last_payload - 1;
    memcpy (c->last_payload, n ? msg->parts[0].data : "", n);
    c->last_payload[n] = 0;
    return 0;
}

static int
s_bounced (zhost_actor_t *actor, const zhost_undeliverable_t *u, void *arg)
{
    (void)actor;
    bounces_t *b = (bounces_t *)arg;
    b->returned++;
    snprintf (b->code, sizeof b->code, "%s", u->failure_count ? u->failures[0].code : "-");
    return 0;
}

//  Step both procs until *watch reaches want (or 5 s pass).
static bool
s_pump (zhost_proc_t *a, zhost_proc_t *b, const int *watch, int want)
{
    for (int i = 0; i < 500 && *watch < want; i++) {
        zhost_proc_step (a, 5);
        zhost_proc_step (b, 5);
    }
    return *watch >= want;
}

static int
s_post (zhost_proc_t *a, zhost_actor_t *from, const char *dest, const char *text,
        zhost_error_t *err)
{
    zhost_part_t part = {text, strlen (text)};
    return zhost_proc_post (a, from, dest, &part, 1, NULL, err);
}

static void
test_caches_never_hide_a_change (void **state)
{
    (void)state;
    zh_test_broker_t t;
    zh_test_broker_new (&t, "--linger", "200ms", "--log-level", "error", NULL);
    zh_test_broker_run (&t);
    const char *frontend = t.frontend;

    zhost_error_t zerr;
    zhost_proc_t *a = zhost_proc_attach (frontend, "a", &zerr);
    assert_non_null (a);
    zhost_proc_t *b = zhost_proc_attach (frontend, "b", &zerr);
    assert_non_null (b);
    bounces_t bounces = {0};
    zhost_actor_handlers_t on_a = {.on_undeliverable = s_bounced};
    zhost_actor_t *sender = zhost_proc_spawn_actor (a, "sender", &on_a, &bounces);
    zhost_actor_t *recv = zhost_proc_spawn_actor (b, "recv", NULL, NULL);
    assert_non_null (sender);
    assert_non_null (recv);
    counter_t at_recv = {0}, at_late = {0};
    assert_int_equal (zhost_actor_open_port (recv, 1, s_count, &at_recv), 0);
    char dest[1100], bad[1100], late_dest[1100];
    assert_true (zhost_actor_port_addr (recv, 1, dest, sizeof dest) > 0);

    //  post: a → broker → b, twice (the second from both caches).
    assert_int_equal (s_post (a, sender, dest, "one", &zerr), 0);
    assert_true (s_pump (a, b, &at_recv.delivered, 1));
    assert_int_equal (s_post (a, sender, dest, "two", &zerr), 0);
    assert_true (s_pump (a, b, &at_recv.delivered, 2));
    assert_string_equal (at_recv.last_payload, "two");

    //  A dest of the same length that is not a port address is refused,
    //  though it differs from the cached one in one byte only.
    snprintf (bad, sizeof bad, "%s", dest);
    *strstr (bad, ":1@") = '@';
    assert_int_equal (strlen (bad), strlen (dest));
    assert_int_equal (s_post (a, sender, bad, "x", &zerr), -1);
    assert_int_equal (zerr.code, ZHOST_E_INVALID);
    assert_int_equal (s_post (a, sender, "", "x", &zerr), -1);
    assert_int_equal (zerr.code, ZHOST_E_INVALID);

    //  b closes port 1: the same dest now comes back NO_SUCH_PORT; reopened,
    //  it is delivered again.
    assert_int_equal (zhost_actor_close_port (recv, 1), 0);
    assert_int_equal (s_post (a, sender, dest, "closed", &zerr), 0);
    assert_true (s_pump (a, b, &bounces.returned, 1));
    assert_string_equal (bounces.code, "NO_SUCH_PORT");
    assert_int_equal (at_recv.delivered, 2);
    assert_int_equal (zhost_actor_open_port (recv, 1, s_count, &at_recv), 0);
    assert_int_equal (s_post (a, sender, dest, "three", &zerr), 0);
    assert_true (s_pump (a, b, &at_recv.delivered, 3));

    //  An actor that is not there yet: NO_SUCH_ACTOR, then, once spawned,
    //  delivered at the same dest.
    snprintf (late_dest, sizeof late_dest, "late.%s", zhost_proc_addr (b));
    char *at = strchr (late_dest, '@');
    char tail[1100];
    snprintf (tail, sizeof tail, "%s", at);
    snprintf (at, sizeof late_dest - (size_t)(at - late_dest), ":1%s", tail);
    assert_int_equal (s_post (a, sender, late_dest, "early", &zerr), 0);
    assert_true (s_pump (a, b, &bounces.returned, 2));
    assert_string_equal (bounces.code, "NO_SUCH_ACTOR");
    zhost_actor_t *late = zhost_proc_spawn_actor (b, "late", NULL, NULL);
    assert_non_null (late);
    assert_int_equal (zhost_actor_open_port (late, 1, s_count, &at_late), 0);
    assert_int_equal (s_post (a, sender, late_dest, "late", &zerr), 0);
    assert_true (s_pump (a, b, &at_late.delivered, 1));

    //  Two dests in turn: each reaches its own actor.
    for (int i = 0; i < 3; i++) {
        assert_int_equal (s_post (a, sender, dest, "to recv", &zerr), 0);
        assert_int_equal (s_post (a, sender, late_dest, "to late", &zerr), 0);
    }
    assert_true (s_pump (a, b, &at_late.delivered, 4));
    assert_true (s_pump (a, b, &at_recv.delivered, 6));
    assert_string_equal (at_recv.last_payload, "to recv");
    assert_string_equal (at_late.last_payload, "to late");
    assert_int_equal (bounces.returned, 2);

    zhost_proc_destroy (&a);
    zhost_proc_destroy (&b);
    assert_int_equal (zh_test_broker_end (&t), 0);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_caches_never_hide_a_change),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
