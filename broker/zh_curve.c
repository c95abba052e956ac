/*  zh_curve.c — CURVE on the frontend (see zh_curve.h).

    The ZAP handler is a REP socket on inproc://zeromq.zap.01 in the
    broker's context; libzmq sends it one request per CURVE handshake on
    the frontend: [version "1.0"][request id][domain][address][routing id]
    [mechanism "CURVE"][client public key, 32 bytes]. We answer
    [version][request id][status "200" | "400"][text][user id][metadata],
    the user id being the client's Z85 public key.

    The peers directory is read once at start into two tables (endpoint →
    certificate, key → endpoint): zcertstore cannot list what it holds, and
    links need the certificate by endpoint. Every file in it must be a
    public certificate with a valid `endpoint`: a stray or broken file is
    an error naming it, not a key silently missing.
*/
#include "zh_curve.h"
#include "zh_curve_keys.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <string.h>

#include "zh_addr.h"
#include "zh_log.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_FRAMES   7

struct _zh_curve_t {
    zcert_t *cert;
    zcertstore_t *allow;
    zcertstore_t *admin;
    zhashx_t *peer_certs; //  endpoint → zcert_t (public), from --curve-peers
    zhashx_t *peer_keys;  //  Z85 public key → endpoint (a string in peer_certs' certs)
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

static void
s_cert_destructor (void **item)
{
    zcert_destroy ((zcert_t **)item);
}

//  The peer certificates of --curve-peers: endpoint → zcert, and
//  Z85 key → endpoint (a string inside the first map's certs).
typedef struct {
    zhashx_t *certs; //  endpoint → zcert_t (public)
    zhashx_t *keys;  //  Z85 public key → endpoint
} s_peer_maps_t;

//  One file of --curve-peers: a public certificate with a valid endpoint
//  that no other file names. 0 or -1 (err names the file).
static int
s_load_peer (s_peer_maps_t *maps, const char *dir, const char *name, zh_error_t *err)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    zcert_t *cert = zh_cert_load (path, false, "--curve-peers", err);
    if (!cert) return -1;
    const char *endpoint = zcert_meta (cert, "endpoint");
    zh_error_t why;
    if (!endpoint) {
        zcert_destroy (&cert);
        return zh_error_exit (err, 2,
                              "--curve-peers %s: no `endpoint` in its metadata (zhost-ctl keygen "
                              "NAME --endpoint tcp://HOST:PORT writes it)",
                              path);
    }
    if (zh_endpoint_check (endpoint, strlen (endpoint), &why) != 0) {
        zh_error_exit (err, 2, "--curve-peers %s: endpoint \"%.80s\": %s", path, endpoint,
                       why.reason);
        zcert_destroy (&cert);
        return -1;
    }
    if (zhashx_lookup (maps->certs, endpoint)) {
        zh_error_exit (err, 2, "--curve-peers %s: endpoint %.80s is named by another file too",
                       path, endpoint);
        zcert_destroy (&cert);
        return -1;
    }
    zhashx_insert (maps->certs, endpoint, cert);
    zhashx_insert (maps->keys, zcert_public_txt (cert), (void *)zcert_meta (cert, "endpoint"));
    return 0;
}

//  Every public certificate in dir (secret files and dotfiles are
//  skipped) into new maps. 0, or -1 with err (the maps are freed).
static int
s_load_peers (s_peer_maps_t *maps, const char *dir, zh_error_t *err)
{
    maps->certs = zhashx_new ();
    maps->keys = zhashx_new ();
    zhashx_set_destructor (maps->certs, s_cert_destructor);
    DIR *d = opendir (dir);
    int rc = d ? 0 : zh_error_exit (err, 2, "--curve-peers %s: %s", dir, strerror (errno));
    struct dirent *entry;
    while (d && rc == 0 && (entry = readdir (d))) {
        size_t len = strlen (entry->d_name);
        if (entry->d_name[0] == '.' ||
            (len > 7 && strcmp (entry->d_name + len - 7, "_secret") == 0))
            continue;
        rc = s_load_peer (maps, dir, entry->d_name, err);
    }
    if (d) closedir (d);
    if (rc != 0) {
        zhashx_destroy (&maps->keys);
        zhashx_destroy (&maps->certs);
    }
    return rc;
}

//  The directories must exist, and some key must be able to connect.
static int
s_check_dirs (const char *allow_dir, const char *admin_dir, const char *peers_dir, zh_error_t *err)
{
    if (!allow_dir && !admin_dir && !peers_dir)
        return zh_error_exit (err, 2,
                              "--curve-secret needs --curve-allow DIR (or --curve-admin DIR, or "
                              "--curve-peers DIR): with no allowed keys nobody could connect");
    if ((allow_dir && s_check_dir ("--curve-allow", allow_dir, err) != 0) ||
        (admin_dir && s_check_dir ("--curve-admin", admin_dir, err) != 0) ||
        (peers_dir && s_check_dir ("--curve-peers", peers_dir, err) != 0))
        return -1;
    return 0;
}

zh_curve_t *
zh_curve_new (void *ctx, const char *secret_file, const char *allow_dir, const char *admin_dir,
              const char *peers_dir, zh_error_t *err)
{
    if (!secret_file) {
        zh_error_exit (err, 2,
                       "--curve-allow/--curve-admin/--curve-peers need --curve-secret FILE");
        return NULL;
    }
    if (s_check_dirs (allow_dir, admin_dir, peers_dir, err) != 0) return NULL;
    zh_curve_t *self = (zh_curve_t *)zmalloc (sizeof (zh_curve_t));
    self->cert = zh_cert_load (secret_file, true, "--curve-secret", err);
    if (!self->cert) goto fail;
    if (allow_dir) self->allow = zcertstore_new (allow_dir);
    if (admin_dir) self->admin = zcertstore_new (admin_dir);
    if (peers_dir) {
        s_peer_maps_t maps;
        if (s_load_peers (&maps, peers_dir, err) != 0) goto fail;
        self->peer_certs = maps.certs;
        self->peer_keys = maps.keys;
    }
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
        zhashx_destroy (&self->peer_keys);
        zhashx_destroy (&self->peer_certs);
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
    //  CU-1, CU-2: a key in any of the directories may connect.
    char key[41] = "";
    bool curve = version_ok && count == ZAP_FRAMES && zmq_msg_size (&frames[5]) == 5 &&
                 memcmp (zmq_msg_data (&frames[5]), "CURVE", 5) == 0 &&
                 zmq_msg_size (&frames[6]) == 32;
    if (curve) zmq_z85_encode (key, (const uint8_t *)zmq_msg_data (&frames[6]), 32);
    bool allowed = curve && (zh_curve_is_client (self, key) || zh_curve_peer_endpoint (self, key));
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

bool
zh_curve_is_client (zh_curve_t *self, const char *user_id)
{
    return user_id && (s_known (self->allow, user_id) || s_known (self->admin, user_id));
}

const char *
zh_curve_peer_endpoint (zh_curve_t *self, const char *user_id)
{
    return user_id && self->peer_keys ? (const char *)zhashx_lookup (self->peer_keys, user_id)
                                      : NULL;
}

int
zh_curve_apply_peer (zh_curve_t *self, void *socket, const char *endpoint)
{
    zcert_t *server =
        self->peer_certs ? (zcert_t *)zhashx_lookup (self->peer_certs, endpoint) : NULL;
    if (!server) return -1;
    if (zmq_setsockopt (socket, ZMQ_CURVE_SERVERKEY, zcert_public_key (server), 32) != 0 ||
        zmq_setsockopt (socket, ZMQ_CURVE_SECRETKEY, zcert_secret_key (self->cert), 32) != 0 ||
        zmq_setsockopt (socket, ZMQ_CURVE_PUBLICKEY, zcert_public_key (self->cert), 32) != 0)
        return -1;
    return 0;
}

bool
zh_curve_has_peer (zh_curve_t *self, const char *endpoint)
{
    return self->peer_certs && zhashx_lookup (self->peer_certs, endpoint);
}

size_t
zh_curve_peer_count (zh_curve_t *self)
{
    return self->peer_certs ? zhashx_size (self->peer_certs) : 0;
}

const char *
zh_curve_public_txt (zh_curve_t *self)
{
    return zcert_public_txt (self->cert);
}

int
zh_curve_reload (zh_curve_t *self, const char *allow_dir, const char *admin_dir,
                 const char *peers_dir, zh_error_t *err)
{
    if (s_check_dirs (allow_dir, admin_dir, peers_dir, err) != 0) return -1;
    s_peer_maps_t maps = {NULL, NULL};
    if (peers_dir && s_load_peers (&maps, peers_dir, err) != 0) return -1;
    //  Everything read: only now replace what the broker runs with.
    zcertstore_destroy (&self->allow);
    zcertstore_destroy (&self->admin);
    if (allow_dir) self->allow = zcertstore_new (allow_dir);
    if (admin_dir) self->admin = zcertstore_new (admin_dir);
    zhashx_destroy (&self->peer_keys);
    zhashx_destroy (&self->peer_certs);
    self->peer_certs = maps.certs;
    self->peer_keys = maps.keys;
    return 0;
}
