/*  zh_curve_keys.c — CURVE keys from zcert files (see zh_curve_keys.h).

    Keys are checked by decoding their Z85 (zmq_z85_decode) so that a
    truncated or mistyped key is refused before libzmq would silently
    ignore it.
*/
#include "zh_curve_keys.h"

#include <stdio.h>
#include <string.h>
#include <zmq.h>

#define S_CERT_FILE_MAX 65536 //  a zcert file is a few hundred bytes

//  True if path is a readable ZPL file. zcert_load (zconfig_load) leaks its
//  zfile_t on a file that is not ZPL (czmq 4.2), which a SIGHUP reload of a
//  directory holding a stray file would repeat: check the text first, the
//  way zh_config reads its file (zconfig_chunk_load frees what it makes).
static bool
s_is_zpl (const char *path)
{
    zchunk_t *text = zchunk_slurp (path, S_CERT_FILE_MAX + 1);
    bool ok = text && zchunk_size (text) > 0 && zchunk_size (text) <= S_CERT_FILE_MAX;
    zconfig_t *root = ok ? zconfig_chunk_load (text) : NULL;
    zchunk_destroy (&text);
    ok = root != NULL;
    zconfig_destroy (&root);
    return ok;
}

zcert_t *
zh_cert_load (const char *file, bool need_secret, const char *what, zh_error_t *err)
{
    //  zcert_load takes the public file's name and reads NAME_secret
    //  (both keys) if it is there, else NAME; accept either name.
    char base[4096];
    if (!file || !*file || strlen (file) >= sizeof base) {
        zh_error_exit (err, 2, "%s: no certificate file given", what);
        return NULL;
    }
    snprintf (base, sizeof base, "%s", file);
    size_t len = strlen (base);
    if (len > 7 && strcmp (base + len - 7, "_secret") == 0) base[len - 7] = 0;
    //  The file zcert_load will read: NAME_secret if it is there, else NAME.
    char secret[4096 + 8];
    snprintf (secret, sizeof secret, "%s_secret", base);
    if (!s_is_zpl (zsys_file_exists (secret) ? secret : base)) {
        zh_error_exit (err, 2, "%s %s: not a readable zcert certificate", what, file);
        return NULL;
    }
    zcert_t *cert = zcert_load (base); //  NULL when neither file is there
    if (!cert) {
        zh_error_exit (err, 2, "%s %s: not a readable zcert certificate", what, file);
        return NULL;
    }
    static const char zeros[ZH_Z85_KEY_LEN + 1] = "0000000000000000000000000000000000000000";
    if (need_secret && strcmp (zcert_secret_txt (cert), zeros) == 0) {
        zcert_destroy (&cert);
        zh_error_exit (err, 2, "%s %s: no secret key (is %s_secret beside it?)", what, file, base);
        return NULL;
    }
    return cert;
}

int
zh_curve_keys_load (zh_curve_keys_t *keys, const char *server_cert, const char *client_cert,
                    zh_error_t *err)
{
    memset (keys, 0, sizeof *keys);
    zcert_t *server = zh_cert_load (server_cert, false, "server certificate", err);
    if (!server) return -1;
    zcert_t *client = zh_cert_load (client_cert, true, "client certificate", err);
    if (!client) {
        zcert_destroy (&server);
        return -1;
    }
    snprintf (keys->server_public, sizeof keys->server_public, "%s", zcert_public_txt (server));
    snprintf (keys->public_key, sizeof keys->public_key, "%s", zcert_public_txt (client));
    snprintf (keys->secret_key, sizeof keys->secret_key, "%s", zcert_secret_txt (client));
    zcert_destroy (&server);
    zcert_destroy (&client);
    return zh_curve_keys_check (keys, err);
}

static int
s_key_check (const char *key, const char *what, zh_error_t *err)
{
    uint8_t raw[32];
    size_t len = strnlen (key, ZH_Z85_KEY_LEN + 1);
    if (len != ZH_Z85_KEY_LEN)
        return zh_error_exit (err, 2, "%s: %zu characters, a Z85 key has %d", what, len,
                              ZH_Z85_KEY_LEN);
    if (!zmq_z85_decode (raw, key)) return zh_error_exit (err, 2, "%s: not Z85 text", what);
    return 0;
}

int
zh_curve_keys_check (const zh_curve_keys_t *keys, zh_error_t *err)
{
    if (s_key_check (keys->server_public, "server public key", err) != 0 ||
        s_key_check (keys->public_key, "client public key", err) != 0 ||
        s_key_check (keys->secret_key, "client secret key", err) != 0)
        return -1;
    return 0;
}

int
zh_curve_keys_apply (const zh_curve_keys_t *keys, void *sock)
{
    //  A 41-byte option value is read as Z85 text by libzmq.
    if (zmq_setsockopt (sock, ZMQ_CURVE_SERVERKEY, keys->server_public, ZH_Z85_KEY_LEN + 1) ||
        zmq_setsockopt (sock, ZMQ_CURVE_PUBLICKEY, keys->public_key, ZH_Z85_KEY_LEN + 1) ||
        zmq_setsockopt (sock, ZMQ_CURVE_SECRETKEY, keys->secret_key, ZH_Z85_KEY_LEN + 1))
        return -1;
    return 0;
}
