/*  zh_stats.h — the broker's one counter table.

    Where it sits: at the bottom of broker/. Every part that accounts for
    a message increments a field here (BR-3: every message is routed,
    returned, dropped, abandoned or refused, and counted); the host
    agent's `stats` op and, later, the metrics endpoint read it. Counters
    count messages, never frames. A plain struct, as Redis's `stat_*`
    fields are: a counter bump on the hot path is one add.
*/
#ifndef ZH_STATS_H
#define ZH_STATS_H

#include <msgpack.h>
#include <stdint.h>

#include "zh_error.h"

//  The ERROR codes counted, in this order (ZH_ERR_* of docs/protocol.md §7).
#define ZH_REJECT_KINDS 7
extern const int zh_stats_reject_codes[ZH_REJECT_KINDS];

typedef struct {
    uint64_t routed;                    //  SEND/RETURN delivered to a socket
    uint64_t returned[ZH_RC_COUNT];     //  RETURNs the broker made, by code
    uint64_t abandoned;                 //  RETURNs that could not be delivered
    uint64_t dropped;                   //  undeliverable SENDs without the flag
    uint64_t rejected[ZH_REJECT_KINDS]; //  ERRORs answered, by code
    uint64_t rejected_other;            //  ERRORs with a code not listed above
    uint64_t agent_requests;            //  requests the host agent served
    uint64_t agent_unanswerable;        //  agent requests with no usable reply
    uint64_t agent_refused;             //  agent requests refused (ERROR 403: reply)
} zh_stats_t;

//  Count one ERROR of code.
void zh_stats_count_reject (zh_stats_t *self, int code);

//  Pack the counters as map entries (key, value pairs: routed, returned,
//  abandoned, dropped, rejected, agent_*): ZH_STATS_PAIRS of them.
#define ZH_STATS_PAIRS 8
void zh_stats_pack (const zh_stats_t *self, msgpack_packer *pk);

#endif
