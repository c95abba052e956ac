/*  zh_conn.h — one peer of one broker socket: an attached client, a peer
    broker, a spawned proc, or a connection that has not finished its
    handshake yet.

    Where it sits: the broker looks a connection up by (socket, routing id)
    for every message it receives, to know its principal (docs/protocol.md §4
    step 1) and to record liveness; the routing table points at the
    connection of each attached or spawned proc, to know where to send.
*/
#ifndef ZH_CONN_H
#define ZH_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zh_addr.h"
#include "zh_coalesce.h"

typedef enum { ZH_SOCK_FRONTEND = 0, ZH_SOCK_BACKEND, ZH_SOCK_CONTROL, ZH_SOCK_COUNT } zh_sock_t;

typedef enum {
    ZH_CONN_CLIENT = 1, //  attached with ATTACH (frontend or control)
    ZH_CONN_PEER,       //  another broker, HELLO'd on the frontend
    ZH_CONN_PROC        //  a spawned proc on the backend
} zh_conn_kind_t;

#define ZH_RID_MAX    255
#define ZH_ADDR_CACHE 256 //  addresses longer than this are not cached
#define ZH_KEY_TXT    41  //  a Z85 CURVE public key and its NUL

typedef struct _zh_conn_t zh_conn_t;
struct _zh_conn_t {
    zh_sock_t sock;              //  the socket it is a peer of
    zh_conn_kind_t kind;         //  client, peer broker or spawned proc
    uint8_t rid[ZH_RID_MAX];     //  its routing id on that socket
    size_t rid_len;              //  bytes of rid
    char proc_id[ZH_ID_MAX + 1]; //  CLIENT, PROC: principal proc id
    size_t proc_id_len;          //  bytes of proc_id (0: none)
    char *peer_endpoint;         //  PEER: principal endpoint
    size_t peer_endpoint_len;    //  bytes of peer_endpoint
    char key[ZH_KEY_TXT];        //  CURVE key it attached under ("" without CURVE)
    uint8_t *bootstrap;          //  CLIENT: the BOOTSTRAP body, resent on re-ATTACH
    size_t bootstrap_size;       //  bytes of bootstrap
    int64_t last_recv;           //  ms, monotonic: last message from it
    int64_t last_send;           //  ms, monotonic: last message to it
    bool silent_logged;          //  PROC: silence already logged
    //  Fast-path caches (BR-5): the last src from this connection that
    //  passed the address and principal checks; the last dest it sent to,
    //  parsed (spans point into dest_cache), and that dest's route while
    //  the routes' generation is unchanged.
    char src_cache[ZH_ADDR_CACHE];  //  the last src that passed
    size_t src_cache_len;           //  bytes of src_cache (0: none)
    char dest_cache[ZH_ADDR_CACHE]; //  the last dest parsed
    size_t dest_cache_len;          //  bytes of dest_cache (0: none)
    zh_addr_t dest_addr;            //  dest_cache parsed
    zh_conn_t *dest_to;             //  dest_addr's route, valid at dest_to_gen
    uint64_t dest_to_gen;           //  the routes' generation dest_to was found at
    void *link_socket;              //  a peer link of ours: its DEALER (no rid); else NULL
    uint64_t msgs_in;               //  SEND/RETURN received from it
    uint64_t msgs_out;              //  SEND/RETURN delivered to it
    //  BATCH (docs/protocol.md §14), negotiated in ATTACH/BOOTSTRAP, READY,
    //  HELLO/WELCOME: it takes BATCH from us and we take BATCH from it.
    bool batch;         //  negotiated
    size_t batch_max;   //  the largest BATCH frame toward it
    zh_coalesce_t *out; //  what the router is batching toward it this turn, or NULL
    bool out_queued;    //  out is on the router's list of batches to send
};

//  "frontend", "backend", "control".
const char *zh_sock_name (zh_sock_t sock);

zh_conn_t *zh_conn_new (zh_sock_t sock, zh_conn_kind_t kind, const uint8_t *rid, size_t rid_len);
void zh_conn_destroy (zh_conn_t **self_p);

//  Set the principal of a CLIENT or PROC (id text, NUL-terminated).
void zh_conn_set_proc_id (zh_conn_t *self, const char *proc_id);

//  Record the CURVE key (Z85) it attached under; NULL or "" for none.
void zh_conn_set_key (zh_conn_t *self, const char *key);

//  True if a message that arrived under key (NULL: no CURVE) may speak
//  for this connection: the same key it attached under (BR-6).
bool zh_conn_key_matches (const zh_conn_t *self, const char *key);

//  Set the principal of a PEER. 0 or -1 on allocation failure.
int zh_conn_set_peer_endpoint (zh_conn_t *self, const char *endpoint, size_t len);

//  Say whether it batches (§14) and the largest BATCH toward it; turning
//  batching off drops an empty coalescing buffer (the router sends what a
//  buffer holds before any handshake command is handled).
void zh_conn_set_batch (zh_conn_t *self, bool batch, size_t batch_max);

//  Keep the BOOTSTRAP body (takes ownership of body).
void zh_conn_set_bootstrap (zh_conn_t *self, uint8_t *body, size_t size);

//  Short printable name for logs: the proc id, the peer endpoint, or the
//  routing id in hex.
const char *zh_conn_name (const zh_conn_t *self, char *buf, size_t size);

#endif
