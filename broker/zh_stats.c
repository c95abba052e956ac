/*  zh_stats.c — the broker's one counter table (see zh_stats.h).

    Where it sits: at the bottom of broker/; written by the router, the
    sender and the agent, read by the `stats` op.
*/
#include "zh_stats.h"

#include <stdio.h>

#include "zh_pack.h"

const int zh_stats_reject_codes[ZH_REJECT_KINDS] = {
    ZH_ERR_MALFORMED, ZH_ERR_HANDSHAKE, ZH_ERR_FORBIDDEN,    ZH_ERR_UNKNOWN_COMMAND,
    ZH_ERR_TOO_LARGE, ZH_ERR_VERSION,   ZH_ERR_SHUTTING_DOWN};

void
zh_stats_count_reject (zh_stats_t *self, int code)
{
    for (int i = 0; i < ZH_REJECT_KINDS; i++)
        if (zh_stats_reject_codes[i] == code) {
            self->rejected[i]++;
            return;
        }
    self->rejected_other++;
}

void
zh_stats_pack (const zh_stats_t *self, msgpack_packer *pk)
{
    zh_pack_kv_uint (pk, "routed", self->routed);
    zh_pack_str (pk, "returned");
    msgpack_pack_map (pk, ZH_RC_COUNT);
    for (int rc = 0; rc < ZH_RC_COUNT; rc++)
        zh_pack_kv_uint (pk, zh_rc_name ((zh_rc_t)rc), self->returned[rc]);
    zh_pack_kv_uint (pk, "abandoned", self->abandoned);
    zh_pack_kv_uint (pk, "dropped", self->dropped);
    zh_pack_str (pk, "rejected");
    msgpack_pack_map (pk, ZH_REJECT_KINDS);
    for (int i = 0; i < ZH_REJECT_KINDS; i++) {
        char code[8];
        snprintf (code, sizeof code, "%d", zh_stats_reject_codes[i]);
        zh_pack_kv_uint (pk, code, self->rejected[i]);
    }
    zh_pack_kv_uint (pk, "agent_requests", self->agent_requests);
    zh_pack_kv_uint (pk, "agent_unanswerable", self->agent_unanswerable);
    zh_pack_kv_uint (pk, "agent_refused", self->agent_refused);
}
