/*  zh_config.h — the broker's configuration: durations, flags,
    environment and the ZPL config file.

    Where it sits: zhost-broker's main() builds a zh_config_t with
    zh_config_load and hands it to the broker; nothing else reads argv or
    the environment. Precedence, highest first (docs/design.md, Configuration in docs/broker.md):

        command-line flags  >  ZHOST_* environment  >  --config FILE (ZPL)  >  defaults

    Multi-valued settings (frontend, advertise, spawn): the highest source
    that sets any value replaces the lower sources' values entirely.

    Every option has one row in the table behind zh_config_help, which
    prints each flag with its environment variable and default, so --help
    can never drift from the code.
*/
#ifndef ZH_CONFIG_H
#define ZH_CONFIG_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "zh_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ZH_CONFIG_OPTIONS_MAX 48 //  rows of the option table at most

#define ZH_CONFIG_LIST_MAX 16 //  frontends, advertised endpoints, spawns

//  Parse a duration: "30s", "500ms", "2m", "1h", "0" (bare 0 only; other
//  bare numbers are refused as ambiguous). Result in milliseconds.
//  Refuses negatives, overflow, empty text, unknown units. 0 or -1.
int zh_duration_parse (const char *text, int64_t *ms, zh_error_t *err);

//  Format ms as the shortest exact duration ("1s", "500ms", "2m", "0").
const char *zh_duration_format (int64_t ms, char *buf, size_t size);

//  Split a command line into words as a POSIX shell would (single and
//  double quotes, backslash escapes; no expansion, no globbing, no shell).
//  Returns a NULL-terminated malloc'd argv (free with zh_argv_free) and
//  *argc, or NULL with err (unterminated quote, trailing backslash, empty).
char **zh_shell_split (const char *command, int *argc, zh_error_t *err);
void zh_argv_free (char ***argv_p);

typedef struct {
    char *name;    //  a label (checked by the broker: INVALID_NAME)
    char *command; //  the raw command text
} zh_spawn_spec_t;

typedef struct {
    char *frontends[ZH_CONFIG_LIST_MAX];
    size_t frontend_count;
    char *advertise[ZH_CONFIG_LIST_MAX];
    size_t advertise_count;
    char *runtime_dir;
    int64_t heartbeat_ms;         //  default 1s
    int64_t liveness;             //  heartbeats of silence before a drop, default 3
    int64_t delivery_timeout_ms;  //  default 30s
    int64_t ready_timeout_ms;     //  default 30s (0 = forever)
    int64_t terminate_timeout_ms; //  default 10s
    int64_t linger_ms;            //  shutdown linger, default 2s
    int64_t max_in_flight;        //  default 16
    int64_t max_msg_bytes;        //  default 16 MiB
    int64_t batch_max_bytes;      //  default 256 KiB, 0: no batching (§14)
    int64_t hwm;                  //  default 10000
    int64_t max_peers;            //  links to other brokers at once, default 1024
    int64_t ttl;                  //  default 64
    zh_spawn_spec_t spawns[ZH_CONFIG_LIST_MAX];
    size_t spawn_count;
    char *curve_secret;
    char *curve_allow;
    char *curve_admin;
    char *curve_peers; //  --curve-peers DIR: other brokers' public certs
    char *metrics;     //  --metrics ADDR: /metrics and /healthz, NULL: off
    char *cpus;        //  --cpu LIST, NULL: not pinned
    char *config_file;
    char *log_level;                        //  default "info"
    bool help;                              //  --help was given
    bool version;                           //  --version was given
    uint8_t sources[ZH_CONFIG_OPTIONS_MAX]; //  where each option's value came from (zh_source_t)
} zh_config_t;

//  Where a setting's value came from (the `config` op and zhost-ctl config).
typedef enum { ZH_SOURCE_DEFAULT = 0, ZH_SOURCE_FILE, ZH_SOURCE_ENV, ZH_SOURCE_FLAG } zh_source_t;

//  "default", "file", "env", "flag"
const char *zh_source_name (zh_source_t source);

//  One effective setting: key (the flag's name), its value as text, and
//  where it came from. A list gives one call per value (none for an empty
//  list: its key is reported once with value "").
typedef void (zh_config_setting_fn) (void *arg, const char *key, const char *value,
                                     zh_source_t source);

//  Every setting the config file may hold, in --help's order.
void zh_config_each (const zh_config_t *self, zh_config_setting_fn *fn, void *arg);

//  One setting that differs between two configs: key, the old and new
//  values (a list's values joined by ", "), and whether SIGHUP can apply
//  it without a restart (zh_config_reloadable).
typedef void (zh_config_change_fn) (void *arg, const char *key, const char *old_value,
                                    const char *new_value, bool reloadable);

//  Every setting whose value differs between self and fresh, in --help's
//  order (sources alone do not count).
void zh_config_diff (const zh_config_t *self, const zh_config_t *fresh, zh_config_change_fn *fn,
                     void *arg);

//  True for the settings a running broker takes on SIGHUP: log-level,
//  curve-allow, curve-admin, curve-peers.
bool zh_config_reloadable (const char *key);

//  Take key's value (and its source) from fresh into self: a reloadable
//  setting only (the two configs swap the values). 0, or -1 for any other key.
int zh_config_adopt (zh_config_t *self, zh_config_t *fresh, const char *key);

//  A config with the defaults of docs/broker.md (runtime_dir from
//  $XDG_RUNTIME_DIR/zhost or /tmp/zhost-<uid>).
zh_config_t *zh_config_new (void);
void zh_config_destroy (zh_config_t **self_p);

//  Apply the config file named by --config / ZHOST_CONFIG (if any), then
//  the environment (envp, NULL-terminated "KEY=VALUE" list; pass environ),
//  then argv (argv[0] is the program). On a bad value: -1 with err whose
//  reason names the flag (or variable, or file and line) and the value,
//  e.g. "--heartbeat: '10x' is not a duration (unit must be ms, s, m or h)".
int zh_config_load (zh_config_t *self, int argc, char **argv, char **envp, zh_error_t *err);

//  Parse a CPU list ("1", "0,2-3": N or N-M items, comma-separated, each
//  below CPU_SETSIZE) into set. 0, or -1 with err saying what is wrong.
int zh_cpu_list_parse (const char *text, cpu_set_t *set, zh_error_t *err);

//  Write set as a CPU list ("0,2-3") into buf (truncated to size); buf.
char *zh_cpu_list_format (const cpu_set_t *set, char *buf, size_t size);

//  Split a listening address: PORT (host 127.0.0.1), HOST:PORT or
//  [IPV6]:PORT (brackets dropped; a host of * is 0.0.0.0) into host and
//  port text (port: digits, 0..65535). 0, or -1 with why saying what is
//  wrong. --metrics uses it.
#define ZH_HOST_MAX 255 //  host text at most
int zh_hostport_split (const char *addr, char *host, size_t host_size, char *port, size_t port_size,
                       zh_error_t *why);

//  Print the --help text: usage, then every flag with its environment
//  variable and default.
void zh_config_help (FILE *out, const char *program);

//  Print the effective configuration as a ZPL file (for --help-config
//  style dumps and tests of the round trip through zconfig).
void zh_config_print (const zh_config_t *self, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
