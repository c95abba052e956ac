/*  zh_curve.c — CURVE on the frontend (see zh_curve.h).

    The ZAP handler is a REP socket on inproc://zeromq.zap.01 in the
    broker's context; libzmq sends it one request per CURVE handshake on
    the frontend: [version "1.0"][request id][domain][address][routing id]
    [mechanism "CURVE"][client public key, 32 bytes]. We answer
    [version][request id][status "200" | "400"][text][user id][metadata],
    the user id being the client's Z85 public key.
*/
#include "zh_curve.h"
#include "zh_curve_keys.h"

#include <czmq.h>
#include <string.h>

#include "zh_log.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_FRAMES   7

struct _zh_curve_t {
    zcert_t *cert;
    zcertstore_t *allow;
    zcertstore_t *admin;
    void *zap;
    uint64_t allowed, denied;
};

//  A directory, or an error naming the flag.
static int
s_check_dir (const char *flag, const char *dir, zh_error_t *err)
{
    if (!zsys_file_exists (dir) || !zsys_file_mode (dir) || !S_ISDIR (zsys_file_mode (dir)))
        return zh_error_exit (err, 2, "%s %s: not a directory", flag, dir);
    return 0;
}

zh_curve_t *
zh_curve_new (void *ctx, const char *secret_file, const char *allow_dir, const char *admin_dir,
              zh_error_t *err)
{
    if (!secret_file) {
        zh_error_exit (err, 2, "--curve-allow/--curve-admin need --curve-secret FILE");
        return NULL;
    }
    if (!allow_dir && !admin_dir) {
        zh_error_exit (err, 2,
                       "--curve-secret needs --curve-allow DIR (or --curve-admin DIR): "
                       "with no allowed keys nobody could connect");
        return NULL;
    }
    if ((allow_dir && s_check_dir ("--curve-allow", allow_dir, err) != 0) ||
        (admin_dir && s_check_dir ("--curve-admin", admin_dir, err) != 0))
        return NULL;
    zh_curve_t *self = (zh_curve_t *)zmalloc (sizeof (zh_curve_t));
    self->cert = zh_cert_load (secret_file, true, "--curve-secret", err);
    if (!self->cert) goto fail;
    if (allow_dir) self->allow = zcertstore_new (allow_dir);
    if (admin_dir) self->admin = zcertstore_new (admin_dir);
    self->zap = zmq_socket (ctx, ZMQ_REP);
    if (!self->zap || zmq_bind (self->zap, ZAP_ENDPOINT) != 0) {
        zh_error_exit (err, 1, "ZAP handler %s: %s", ZAP_ENDPOINT, zmq_strerror (errno));
        goto fail;
    }
    int zero = 0;
    zmq_setsockopt (self->zap, ZMQ_LINGER, &zero, sizeof zero);
    return self;
fail:
    zh_curve_destroy (&self);
    return NULL;
}

void
zh_curve_destroy (zh_curve_t **self_p)
{
    if (self_p && *self_p) {
        zh_curve_t *self = *self_p;
        if (self->zap) zmq_close (self->zap);
        zcert_destroy (&self->cert);
        zcertstore_destroy (&self->allow);
        zcertstore_destroy (&self->admin);
        free (self);
        *self_p = NULL;
    }
}

int
zh_curve_apply (zh_curve_t *self, void *socket)
{
    int one = 1;
    if (zmq_setsockopt (socket, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt (socket, ZMQ_CURVE_SECRETKEY, zcert_secret_key (self->cert), 32) != 0 ||
        zmq_setsockopt (socket, ZMQ_CURVE_PUBLICKEY, zcert_public_key (self->cert), 32) != 0 ||
        zmq_setsockopt (socket, ZMQ_ZAP_DOMAIN, "zhost", 5) != 0)
        return -1;
    return 0;
}

void *
zh_curve_zap_socket (zh_curve_t *self)
{
    return self->zap;
}

static bool
s_known (zcertstore_t *store, const char *key)
{
    return store && zcertstore_lookup (store, key) != NULL;
}

void
zh_curve_handle (zh_curve_t *self)
{
    zmq_msg_t frames[ZAP_FRAMES];
    int count = 0;
    bool more = true;
    while (more) {
        zmq_msg_t scratch, *msg = count < ZAP_FRAMES ? &frames[count] : &scratch;
        zmq_msg_init (msg);
        if (zmq_msg_recv (msg, self->zap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (msg);
            break;
        }
        more = zmq_msg_more (msg);
        if (msg == &scratch)
            zmq_msg_close (msg);
        else
            count++;
    }
    if (count < 2) {
        //  Not a ZAP request; REP still owes an answer.
        for (int i = 0; i < count; i++)
            zmq_msg_close (&frames[i]);
        if (count == 1) zmq_send (self->zap, "", 0, 0);
        return;
    }
    //  RFC 27: version "1.0" only; any other is refused (status 400).
    bool version_ok =
        zmq_msg_size (&frames[0]) == 3 && memcmp (zmq_msg_data (&frames[0]), "1.0", 3) == 0;
    //  CU-1: a key in either directory may connect.
    char key[41] = "";
    bool curve = version_ok && count == ZAP_FRAMES && zmq_msg_size (&frames[5]) == 5 &&
                 memcmp (zmq_msg_data (&frames[5]), "CURVE", 5) == 0 &&
                 zmq_msg_size (&frames[6]) == 32;
    if (curve) zmq_z85_encode (key, (const uint8_t *)zmq_msg_data (&frames[6]), 32);
    bool allowed = curve && (s_known (self->allow, key) || s_known (self->admin, key));
    if (allowed)
        self->allowed++;
    else {
        self->denied++;
        char address[64] = "";
        if (count > 3)
            snprintf (address, sizeof address, "%.*s", (int)zmq_msg_size (&frames[3]),
                      (const char *)zmq_msg_data (&frames[3]));
        char q1[96], q2[64];
        zh_warn ("curve-denied", "address=%s key=%s",
                 zh_log_quote (q1, sizeof q1, address, strlen (address)),
                 zh_log_quote (q2, sizeof q2, key, strlen (key)));
    }
    const char *status = allowed ? "200" : "400";
    const char *text = allowed ? "OK" : version_ok ? "No access" : "Unsupported ZAP version";
    zmq_send (self->zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_send (self->zap, zmq_msg_data (&frames[1]), zmq_msg_size (&frames[1]), ZMQ_SNDMORE);
    zmq_send (self->zap, status, 3, ZMQ_SNDMORE);
    zmq_send (self->zap, text, strlen (text), ZMQ_SNDMORE);
    zmq_send (self->zap, allowed ? key : "", allowed ? 40 : 0, ZMQ_SNDMORE);
    zmq_send (self->zap, "", 0, 0);
    for (int i = 0; i < count; i++)
        zmq_msg_close (&frames[i]);
}

bool
zh_curve_is_admin (zh_curve_t *self, const char *user_id)
{
    return user_id && s_known (self->admin, user_id);
}

const char *
zh_curve_public_txt (zh_curve_t *self)
{
    return zcert_public_txt (self->cert);
}
