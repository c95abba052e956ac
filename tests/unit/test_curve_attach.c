/*  test_curve_attach.c — libzhost attaching to a CURVE frontend
    (zhost_curve_load, zhost_proc_attach_curve; common/zh_curve_keys.c).

    One embedded broker with --curve-secret and --curve-allow, certificates
    written by zcert as `zhost-ctl keygen` writes them. Scenarios: an
    allowed client attaches, and two attached clients exchange a message
    end to end over CURVE; a key not in the allow directory is refused at
    once (ZHOST_E_REFUSED naming --curve-allow, well before the 5 s attach
    timeout); a plain client is told the broker requires CURVE, also at
    once; CURVE keys against a plain broker fail at once, saying what to
    check, however libzmq reports it (a mechanism mismatch, a failure with
    no detail, or the connection closing: HS-1, each variant also driven
    through zh_handshake_explain); bad certificate files and malformed
    keys are ZHOST_E_INVALID naming what is wrong; an attach that gets no
    BOOTSTRAP times out, saying whether a connection was made at all and
    whether its handshake completed.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <czmq.h>
#include <zmq.h>

#include "zh_handshake.h"
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
    int64_t start = zclock_mono ();
    assert_null (zhost_proc_attach_curve (f->t.frontend, "alice", &curve, &err));
    assert_int_equal (err.code, ZHOST_E_REFUSED);
    assert_int_equal (err.broker_code, 0);
    assert_true (zclock_mono () - start < 4000);
    //  Depending on which side sees the mismatch first, libzmq tells the
    //  client "mechanism mismatch", nothing, or only that the connection
    //  closed (HS-1): each says the broker does not run CURVE, or asks
    //  whether it does and whether the server key is right.
    assert_non_null (strstr (err.message, f->t.frontend));
    if (!strstr (err.message, "this client offers CURVE and the broker does not run it") &&
        !strstr (err.message, "is the server key the broker's, and does it run CURVE?"))
        fail_msg ("names no cause: %s", err.message);
    assert_int_equal (zh_test_broker_end (&f->t), 0);
}

//  Every report libzmq may give, as zh_handshake_explain words it: each
//  names the endpoint and the cause to check (HS-1).
static void
test_every_handshake_failure_names_what_to_check (void **state)
{
    (void)state;
    const char *ep = "tcp://10.0.0.5:7100";
    struct {
        uint16_t event;
        uint32_t value;
    } failures[] = {
        {ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH},
        {ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, 104},
        {ZMQ_EVENT_DISCONNECTED, 17},
        {ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC},
        {ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE},
        {ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_PROTOCOL_ERROR_ZMTP_UNEXPECTED_COMMAND},
        {ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_WELCOME},
    };
    char why[512];
    for (int curve = 0; curve <= 1; curve++)
        for (size_t i = 0; i < sizeof failures / sizeof failures[0]; i++) {
            why[0] = 0;
            assert_int_equal (zh_handshake_explain (curve, failures[i].event, failures[i].value, ep,
                                                    why, sizeof why),
                              -1);
            assert_non_null (strstr (why, ep));
            bool named =
                curve ? strstr (why, "the broker does not run it") ||
                            strstr (why, "is the server key the broker's, and does it run CURVE?")
                      : strstr (why, "the broker requires CURVE") ||
                            strstr (why, "does the broker require CURVE?");
            if (!named)
                fail_msg ("curve=%d event=0x%x value=0x%x: %s", curve, failures[i].event,
                          failures[i].value, why);
        }
    //  A refused key names the directories, whoever reports it.
    assert_int_equal (
        zh_handshake_explain (true, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH, 400, ep, why, sizeof why), -1);
    assert_non_null (strstr (why, "refused this client's CURVE key (ZAP status 400)"));
    assert_non_null (strstr (why, "--curve-allow"));
    //  Success and the other events decide nothing.
    assert_int_equal (
        zh_handshake_explain (true, ZMQ_EVENT_HANDSHAKE_SUCCEEDED, 0, ep, why, sizeof why), 1);
    assert_int_equal (zh_handshake_explain (true, ZMQ_EVENT_CONNECTED, 9, ep, why, sizeof why), 0);
    assert_int_equal (
        zh_handshake_explain (false, ZMQ_EVENT_CONNECT_RETRIED, 100, ep, why, sizeof why), 0);
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
    //  A listener that accepts (the kernel's backlog does) and never
    //  speaks ZMTP: connected, but no handshake.
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    assert_int_equal (bind (fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal (listen (fd, 4), 0);
    assert_int_equal (getsockname (fd, (struct sockaddr *)&addr, &len), 0);
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%u", (unsigned)ntohs (addr.sin_port));
    assert_null (zhost_proc_attach (endpoint, NULL, &err));
    assert_int_equal (err.code, ZHOST_E_TIMEOUT);
    assert_non_null (strstr (err.message, "its ZMTP handshake never completed"));
    close (fd);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_allowed_key_attaches_and_delivers, setup, teardown),
        cmocka_unit_test_setup_teardown (test_refused_key_and_plain_client_fail_at_once, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (test_curve_keys_against_a_plain_broker, setup, teardown),
        cmocka_unit_test (test_every_handshake_failure_names_what_to_check),
        cmocka_unit_test_setup_teardown (test_bad_files_and_keys_are_invalid, setup, teardown),
        cmocka_unit_test (test_no_bootstrap_times_out_saying_whether_anyone_listened),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
