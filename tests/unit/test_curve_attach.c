/*  test_curve_attach.c — libzhost attaching to a CURVE frontend
    (zhost_curve_load, zhost_proc_attach_curve; common/zh_curve_keys.c).

    One embedded broker with --curve-secret and --curve-allow, certificates
    written by zcert as `zhost-ctl keygen` writes them. Scenarios: an
    allowed client attaches, and two attached clients exchange a message
    end to end over CURVE; a key not in the allow directory is refused at
    once (ZHOST_E_REFUSED naming --curve-allow, well before the 5 s attach
    timeout); a plain client is told the broker requires CURVE, also at
    once; CURVE keys against a plain broker fail at once, saying what to check; bad
    certificate files and malformed keys are ZHOST_E_INVALID naming what
    is wrong; an attach that gets no BOOTSTRAP times out, saying so when
    not even a connection was made.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <czmq.h>
#include <zmq.h>

#include "zh_test_broker.h"
#include "zhost/zhost.h"

typedef struct {
    char dir[64];         //  certificates
    char allow[96];       //  --curve-allow: alice's public certificate
    char broker_key[96];  //  broker.key (+ broker.key_secret)
    char alice_key[96];   //  allowed
    char mallory_key[96]; //  not allowed
    zh_test_broker_t t;
} fixture_t;

static void
s_cert (const char *path, const char *copy_public_to)
{
    zcert_t *cert = zcert_new ();
    assert_non_null (cert);
    assert_int_equal (zcert_save (cert, path), 0);
    if (copy_public_to) assert_int_equal (zcert_save_public (cert, copy_public_to), 0);
    zcert_destroy (&cert);
}

static int
setup (void **state)
{
    fixture_t *f = calloc (1, sizeof *f);
    snprintf (f->dir, sizeof f->dir, "/tmp/zh-curve-XXXXXX");
    assert_non_null (mkdtemp (f->dir));
    snprintf (f->allow, sizeof f->allow, "%s/allow", f->dir);
    assert_int_equal (mkdir (f->allow, 0700), 0);
    snprintf (f->broker_key, sizeof f->broker_key, "%s/broker.key", f->dir);
    snprintf (f->alice_key, sizeof f->alice_key, "%s/alice.key", f->dir);
    snprintf (f->mallory_key, sizeof f->mallory_key, "%s/mallory.key", f->dir);
    char alice_public[128];
    snprintf (alice_public, sizeof alice_public, "%s/alice.key", f->allow);
    s_cert (f->broker_key, NULL);
    s_cert (f->alice_key, alice_public);
    s_cert (f->mallory_key, NULL);
    *state = f;
    return 0;
}

static int
teardown (void **state)
{
    fixture_t *f = *state;
    char cmd[128];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal (system (cmd), 0);
    free (f);
    return 0;
}

static void
s_start_curve_broker (fixture_t *f)
{
    char secret[128];
    snprintf (secret, sizeof secret, "%s_secret", f->broker_key);
    zh_test_broker_new (&f->t, "--curve-secret", secret, "--curve-allow", f->allow, "--linger",
                        "200ms", NULL);
    zh_test_broker_run (&f->t);
}

typedef struct {
    int got;
    char payload[64];
} inbox_t;

static int
s_on_message (zhost_actor_t *actor, const zhost_msg_t *msg, void *arg)
{
    (void)actor;
    inbox_t *in = arg;
    if (msg->part_count == 1 && msg->parts[0].size < sizeof in->payload) {
        memcpy (in->payload, msg->parts[0].data, msg->parts[0].size);
        in->payload[msg->parts[0].size] = 0;
    }
    in->got++;
    return 0;
}

static void
test_allowed_key_attaches_and_delivers (void **state)
{
    fixture_t *f = *state;
    s_start_curve_broker (f);
    zhost_curve_t curve;
    zhost_error_t err;
    //  Either file of a pair may be named.
    char alice_secret[128];
    snprintf (alice_secret, sizeof alice_secret, "%s_secret", f->alice_key);
    assert_int_equal (zhost_curve_load (&curve, f->broker_key, alice_secret, &err), 0);
    assert_int_equal (strlen (curve.server_public), 40);
    zhost_proc_t *a = zhost_proc_attach_curve (f->t.frontend, "alice", &curve, &err);
    assert_non_null (a);
    zhost_proc_t *b = zhost_proc_attach_curve (f->t.frontend, "alice", &curve, &err);
    assert_non_null (b);
    inbox_t inbox = {0};
    zhost_actor_t *rx = zhost_proc_spawn_actor (b, "rx", NULL, NULL);
    assert_non_null (rx);
    assert_int_equal (zhost_actor_open_port (rx, 1, s_on_message, &inbox), 0);
    char dest[512];
    assert_true (zhost_actor_port_addr (rx, 1, dest, sizeof dest) > 0);
    zhost_actor_t *tx = zhost_proc_spawn_actor (a, "tx", NULL, NULL);
    assert_non_null (tx);
    zhost_part_t part = {"over curve", 10};
    assert_int_equal (zhost_proc_post (a, tx, dest, &part, 1, NULL, &err), 0);
    for (int i = 0; i < 100 && !inbox.got; i++) {
        zhost_proc_step (a, 10);
        zhost_proc_step (b, 10);
    }
    assert_int_equal (inbox.got, 1);
    assert_string_equal (inbox.payload, "over curve");
    zhost_proc_destroy (&a);
    zhost_proc_destroy (&b);
    assert_int_equal (zh_test_broker_end (&f->t), 0);
}

static void
test_refused_key_and_plain_client_fail_at_once (void **state)
{
    fixture_t *f = *state;
    s_start_curve_broker (f);
    zhost_curve_t curve;
    zhost_error_t err;
    assert_int_equal (zhost_curve_load (&curve, f->broker_key, f->mallory_key, &err), 0);
    int64_t start = zclock_mono ();
    assert_null (zhost_proc_attach_curve (f->t.frontend, "mallory", &curve, &err));
    assert_int_equal (err.code, ZHOST_E_REFUSED);
    assert_int_equal (err.broker_code, 0);
    assert_non_null (strstr (err.message, "refused this client's CURVE key"));
    assert_non_null (strstr (err.message, "--curve-allow"));
    assert_true (zclock_mono () - start < 4000);

    start = zclock_mono ();
    assert_null (zhost_proc_attach (f->t.frontend, "plain", &err));
    assert_int_equal (err.code, ZHOST_E_REFUSED);
    assert_non_null (strstr (err.message, "CURVE"));
    assert_true (zclock_mono () - start < 4000);
    assert_int_equal (zh_test_broker_end (&f->t), 0);
}

static void
test_curve_keys_against_a_plain_broker (void **state)
{
    fixture_t *f = *state;
    zh_test_broker_new (&f->t, "--linger", "200ms", NULL);
    zh_test_broker_run (&f->t);
    zhost_curve_t curve;
    zhost_error_t err;
    assert_int_equal (zhost_curve_load (&curve, f->broker_key, f->alice_key, &err), 0);
    assert_null (zhost_proc_attach_curve (f->t.frontend, "alice", &curve, &err));
    assert_int_equal (err.code, ZHOST_E_REFUSED);
    //  libzmq gives the client no detail here (the server side saw the
    //  mismatch): the message says what to check.
    assert_non_null (strstr (err.message, "does it run CURVE?"));
    assert_int_equal (zh_test_broker_end (&f->t), 0);
}

static void
test_bad_files_and_keys_are_invalid (void **state)
{
    fixture_t *f = *state;
    zhost_curve_t curve;
    zhost_error_t err;
    //  A missing file names itself.
    assert_int_equal (zhost_curve_load (&curve, "/nonexistent/broker.key", f->alice_key, &err), -1);
    assert_int_equal (err.code, ZHOST_E_INVALID);
    assert_non_null (strstr (err.message, "/nonexistent/broker.key"));
    //  A client certificate without its secret half.
    char public_only[128];
    snprintf (public_only, sizeof public_only, "%s/alice.key", f->allow);
    assert_int_equal (zhost_curve_load (&curve, f->broker_key, public_only, &err), -1);
    assert_int_equal (err.code, ZHOST_E_INVALID);
    assert_non_null (strstr (err.message, "no secret key"));
    //  Keys copied in by hand are checked before any connection.
    assert_int_equal (zhost_curve_load (&curve, f->broker_key, f->alice_key, &err), 0);
    curve.secret_key[10] = 0;
    assert_null (zhost_proc_attach_curve ("tcp://127.0.0.1:1", NULL, &curve, &err));
    assert_int_equal (err.code, ZHOST_E_INVALID);
    assert_non_null (strstr (err.message, "client secret key: 10 characters"));
    assert_int_equal (zhost_curve_load (&curve, f->broker_key, f->alice_key, &err), 0);
    curve.server_public[0] = '"'; //  not in Z85's alphabet
    assert_null (zhost_proc_attach_curve ("tcp://127.0.0.1:1", NULL, &curve, &err));
    assert_non_null (strstr (err.message, "server public key: not Z85"));
}

static void
test_no_bootstrap_times_out_saying_whether_anyone_listened (void **state)
{
    (void)state;
    //  A port that was free a moment ago.
    void *ctx = zmq_ctx_new ();
    void *probe = zmq_socket (ctx, ZMQ_ROUTER);
    assert_int_equal (zmq_bind (probe, "tcp://127.0.0.1:*"), 0);
    char endpoint[256];
    size_t size = sizeof endpoint;
    assert_int_equal (zmq_getsockopt (probe, ZMQ_LAST_ENDPOINT, endpoint, &size), 0);
    //  While it is bound, it completes the handshake and never answers:
    //  a plain timeout.
    zhost_error_t err;
    assert_null (zhost_proc_attach (endpoint, NULL, &err));
    assert_int_equal (err.code, ZHOST_E_TIMEOUT);
    assert_non_null (strstr (err.message, "no BOOTSTRAP from"));
    assert_null (strstr (err.message, "no connection"));
    zmq_close (probe);
    zmq_ctx_term (ctx);
    //  Nobody there at all.
    assert_null (zhost_proc_attach (endpoint, NULL, &err));
    assert_int_equal (err.code, ZHOST_E_TIMEOUT);
    assert_non_null (strstr (err.message, "no connection: is a broker listening there?"));
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_allowed_key_attaches_and_delivers, setup, teardown),
        cmocka_unit_test_setup_teardown (test_refused_key_and_plain_client_fail_at_once, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (test_curve_keys_against_a_plain_broker, setup, teardown),
        cmocka_unit_test_setup_teardown (test_bad_files_and_keys_are_invalid, setup, teardown),
        cmocka_unit_test (test_no_bootstrap_times_out_saying_whether_anyone_listened),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
