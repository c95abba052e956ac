/*  zhost-ctl.c — the control CLI of zhost-broker (docs/ctl.md).

    Where it sits: outside the broker, as one more client. It attaches to
    the broker's control socket (ipc://<runtime-dir>/control, which gives
    admin rights) or, with --connect, to a frontend; sends one request to
    the host agent (docs/protocol.md §8: a SEND to host_agent.service:1@<ep>
    whose inline part is {"op": …}); waits for the answer while answering
    PINGs; says BYE and waits for the broker's BYE so that nothing is lost
    (§7); prints the answer for people or as JSON. keygen needs no broker:
    it writes a CURVE certificate pair with czmq's zcert.

        zhost-ctl ──ATTACH──▶ control ──BOOTSTRAP──▶ zhost-ctl
                  ──SEND {op}──▶ host_agent ──SEND {ok, …}──▶ ctl.<proc>:1
                  ──BYE──▶ broker ──BYE──▶ close

    Before it trusts the control socket it checks the runtime dir on a
    descriptor (not a symlink, ours, mode & 077 == 0; control a socket of
    ours) and dials through that descriptor: s_check_runtime_dir.

    Exit codes: 0 ok; 1 the op failed (ok=false, RETURN or ERROR); 2 usage
    (or a configuration it will not use: a certificate file, an untrusted
    runtime dir); 3 no broker (socket missing or refusing, or no BOOTSTRAP
    in time).
*/
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "zh_addr.h"
#include "zh_config.h"
#include "zh_curve_keys.h"
#include "zh_handshake.h"
#include "zh_error.h"
#include "zh_pack.h"
#include "zh_proto.h"
#include "zh_wire.h"

#define PROGRAM        "zhost-ctl"
#define EXIT_OK        0
#define EXIT_FAILED    1
#define EXIT_USAGE     2
#define EXIT_NO_BROKER 3

#define DEFAULT_TIMEOUT_MS   10000 //  quick ops and the attach
#define DEFAULT_READY_MS     30000 //  the broker's default ready timeout
#define DEFAULT_TERMINATE_MS 10000 //  the broker's default terminate timeout
#define WAIT_MARGIN_MS       10000 //  on top of the broker's own timeouts
#define BYE_WAIT_MAX_MS      3000
#define MAX_FRAMES           64
#define MAX_ENV              256

//  ---------------------------------------------------------------------
//  Options

typedef enum {
    CMD_NONE = 0,
    CMD_PING,
    CMD_LIST,
    CMD_STATUS,
    CMD_SPAWN,
    CMD_STOP,
    CMD_KILL,
    CMD_STOP_ALL,
    CMD_SHUTDOWN,
    CMD_STATS,
    CMD_WATCH,
    CMD_LOGS,
    CMD_CONFIG,
    CMD_KEYGEN
} command_t;

typedef struct {
    const char *word; //  on the command line
    const char *op;   //  on the wire
    command_t command;
    bool needs_name;
} command_info_t;

static const command_info_t s_commands[] = {
    {"ping", "ping", CMD_PING, false},
    {"list", "list", CMD_LIST, false},
    {"status", "status", CMD_STATUS, true},
    {"spawn", "spawn", CMD_SPAWN, true},
    {"stop", "stop", CMD_STOP, true},
    {"kill", "kill", CMD_KILL, true},
    {"stop-all", "stop_all", CMD_STOP_ALL, false},
    {"shutdown", "shutdown", CMD_SHUTDOWN, false},
    {"stats", "stats", CMD_STATS, false},
    {"watch", "watch", CMD_WATCH, false},
    {"logs", "logs", CMD_LOGS, true},
    {"config", "config", CMD_CONFIG, false},
    {"keygen", NULL, CMD_KEYGEN, true},
};

typedef struct {
    const char *runtime_dir;  //  NULL: the default
    const char *connect;      //  a frontend endpoint instead of the control socket
    const char *curve_server; //  --curve-server: the broker's certificate
    const char *curve_cert;   //  --curve-cert: ours (with its _secret beside it)
    bool json;
    int64_t timeout_ms; //  how long ctl waits; -1: derived from the op
    const command_info_t *cmd;
    const char *name;
    //  op arguments (-1: not given)
    int64_t ready_timeout_ms;
    int64_t op_timeout_ms;
    int64_t max_in_flight;
    const char *reason;
    const char *env[MAX_ENV];
    size_t env_count;
    char **argv; //  spawn: the COMMAND words (in our argv)
    int argc;
    const char *out_dir;  //  keygen
    const char *endpoint; //  keygen: the broker's endpoint, for --curve-peers
    bool force;           //  keygen: overwrite
    bool follow;          //  logs -f
    int64_t lines;        //  logs --lines N (-1: the broker's default)
} options_t;

static void
s_help (FILE *out)
{
    fprintf (out,
             "Usage: " PROGRAM " [--runtime-dir DIR | --connect ENDPOINT] [--json]\n"
             "                 [--timeout DURATION] COMMAND [ARGS]\n"
             "\n"
             "Talks to a running zhost-broker: attaches to its control socket\n"
             "(ipc://DIR/control), sends one request to its host agent, prints the answer.\n"
             "\n"
             "Commands:\n"
             "  ping                    check the broker answers (host, incarnation, version)\n"
             "  list                    the procs: NAME STATUS PID EXIT/SIGNAL/REASON PROC\n"
             "  status NAME             one proc, with the tail of its output\n"
             "  spawn NAME [--ready-timeout D] [--env K=V]... -- COMMAND [ARG]...\n"
             "                          start a proc and wait until it is ready\n"
             "  stop NAME [--timeout D] [--reason TEXT]\n"
             "                          STOP, then SIGTERM, then SIGKILL (D apart each)\n"
             "  kill NAME               SIGKILL a proc's process group now\n"
             "  stop-all [--timeout D] [--max-in-flight N]\n"
             "                          stop every proc; prints attempted/stopped/failed\n"
             "  shutdown [--timeout D] [--max-in-flight N]\n"
             "                          stop every proc, then the broker exits\n"
             "  stats                   the broker's counters\n"
             "  watch                   the procs, then every proc and peer-link change as\n"
             "                          it happens (a line each; JSON lines with --json)\n"
             "                          until interrupted\n"
             "  logs [-f] [--lines N] NAME\n"
             "                          a proc's kept output (stdout lines to stdout, stderr\n"
             "                          lines to stderr); -f: then follow it until it ends\n"
             "  config                  the broker's effective settings: KEY VALUE SOURCE\n"
             "                          (flag, env, file or default)\n"
             "  keygen NAME [--out DIR] [--endpoint E] [--force]\n"
             "                          write a CURVE certificate pair NAME.key and\n"
             "                          NAME.key_secret (for --curve-secret/--curve-allow);\n"
             "                          --endpoint: a broker's, for other brokers' --curve-peers\n"
             "\n"
             "Options:\n"
             "  --runtime-dir DIR       the broker's runtime dir (default $ZHOST_RUNTIME_DIR,\n"
             "                          else $XDG_RUNTIME_DIR/zhost, else /tmp/zhost-<uid>)\n"
             "  --connect ENDPOINT      attach to a frontend instead (e.g. tcp://host:7100);\n"
             "                          admin ops are then refused (NOT_ALLOWED) unless\n"
             "                          the key below is in the broker's --curve-admin\n"
             "  --curve-server FILE     the broker's certificate (its NAME.key), for a\n"
             "                          frontend that runs CURVE; with --curve-cert\n"
             "  --curve-cert FILE       this client's certificate (NAME.key, with\n"
             "                          NAME.key_secret beside it)\n"
             "  --json                  print the agent's answer as JSON\n"
             "  --timeout DURATION      how long to wait for the broker (e.g. 10s, 500ms);\n"
             "                          default 10s, more for spawn and the stop ops; after\n"
             "                          stop, stop-all and shutdown it is their terminate timeout\n"
             "  -h, --help              this text\n"
             "  --version               the version\n"
             "\n"
             "The runtime dir must be a directory of this user, not a symlink, mode 0700\n"
             "(no access for group or others), as zhost-broker makes it.\n"
             "\n"
             "Exit status: 0 ok, 1 the operation failed, 2 usage error (or an untrusted\n"
             "runtime dir), 3 no broker.\n");
}

static int s_usage_error (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

static int
s_usage_error (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, PROGRAM ": ");
    vfprintf (stderr, format, args);
    va_end (args);
    fprintf (stderr, "\nTry '" PROGRAM " --help'\n");
    return EXIT_USAGE;
}

static const command_info_t *
s_command_find (const char *word)
{
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++)
        if (strcmp (s_commands[i].word, word) == 0) return &s_commands[i];
    return NULL;
}

//  The value of a flag that takes one: argv[*i + 1], advancing *i.
static const char *
s_flag_value (int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) return NULL;
    *i += 1;
    return argv[*i];
}

static int
s_parse_duration (const char *flag, const char *text, int64_t *ms)
{
    zh_error_t err;
    if (zh_duration_parse (text, ms, &err) != 0)
        return s_usage_error ("%s: %s (e.g. 10s, 500ms)", flag, err.reason);
    return 0;
}

static int
s_parse_count (const char *flag, const char *text, int64_t *n)
{
    char *end = NULL;
    errno = 0;
    long long value = strtoll (text, &end, 10);
    if (errno || end == text || *end || value < 1 || value > INT32_MAX)
        return s_usage_error ("%s: '%s' is not a positive integer", flag, text);
    *n = value;
    return 0;
}

//  Flags every command accepts (before or after the command word).
//  Returns 1 if argv[*i] was one, 0 if not, or an exit code + 10.
static int
s_parse_global (options_t *o, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    const char *value;
    if (strcmp (arg, "--json") == 0) {
        o->json = true;
        return 1;
    }
    const struct {
        const char *flag;
        const char **slot;
    } strings[] = {{"--runtime-dir", &o->runtime_dir},
                   {"--connect", &o->connect},
                   {"--curve-server", &o->curve_server},
                   {"--curve-cert", &o->curve_cert}};
    for (size_t k = 0; k < sizeof strings / sizeof strings[0]; k++) {
        if (strcmp (arg, strings[k].flag) != 0) continue;
        if (!(value = s_flag_value (argc, argv, i)) || !*value)
            return 10 + s_usage_error ("%s needs a value", arg);
        *strings[k].slot = value;
        return 1;
    }
    if (strcmp (arg, "--timeout") == 0) {
        if (!(value = s_flag_value (argc, argv, i)))
            return 10 + s_usage_error ("--timeout needs a value");
        return s_parse_duration ("--timeout", value, &o->timeout_ms) ? 10 + EXIT_USAGE : 1;
    }
    return 0;
}

static int
s_parse_env (options_t *o, const char *value)
{
    const char *eq = value ? strchr (value, '=') : NULL;
    if (!eq || eq == value) return s_usage_error ("--env: '%s' is not K=V", value ? value : "");
    if (o->env_count == MAX_ENV) return s_usage_error ("--env: at most %d variables", MAX_ENV);
    o->env[o->env_count++] = value;
    return 0;
}

//  Flags of one command, after the command word. Returns 1 if argv[*i]
//  was one, 0 if not, or an exit code + 10.
static int
s_parse_command_flag (options_t *o, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    command_t c = o->cmd->command;
    bool stops = c == CMD_STOP || c == CMD_STOP_ALL || c == CMD_SHUTDOWN;
    const char *value = NULL;
    int rc = 0;
    if (c == CMD_SPAWN && strcmp (arg, "--ready-timeout") == 0) {
        value = s_flag_value (argc, argv, i);
        rc = value ? s_parse_duration (arg, value, &o->ready_timeout_ms) : -1;
    } else if (c == CMD_SPAWN && strcmp (arg, "--env") == 0) {
        value = s_flag_value (argc, argv, i);
        rc = value ? s_parse_env (o, value) : -1;
    } else if (stops && strcmp (arg, "--timeout") == 0) {
        value = s_flag_value (argc, argv, i);
        rc = value ? s_parse_duration (arg, value, &o->op_timeout_ms) : -1;
    } else if (c == CMD_STOP && strcmp (arg, "--reason") == 0) {
        value = s_flag_value (argc, argv, i);
        o->reason = value;
    } else if ((c == CMD_STOP_ALL || c == CMD_SHUTDOWN) && strcmp (arg, "--max-in-flight") == 0) {
        value = s_flag_value (argc, argv, i);
        rc = value ? s_parse_count (arg, value, &o->max_in_flight) : -1;
    } else if (c == CMD_KEYGEN && strcmp (arg, "--out") == 0) {
        value = s_flag_value (argc, argv, i);
        o->out_dir = value;
    } else if (c == CMD_KEYGEN && strcmp (arg, "--endpoint") == 0) {
        value = s_flag_value (argc, argv, i);
        o->endpoint = value;
        zh_error_t err;
        if (value && zh_endpoint_check (value, strlen (value), &err) != 0)
            return 10 + s_usage_error ("keygen --endpoint '%s': %s", value, err.reason);
    } else if (c == CMD_LOGS && (strcmp (arg, "-f") == 0 || strcmp (arg, "--follow") == 0)) {
        o->follow = true;
        return 1;
    } else if (c == CMD_LOGS && strcmp (arg, "--lines") == 0) {
        value = s_flag_value (argc, argv, i);
        rc = value ? s_parse_count (arg, value, &o->lines) : -1;
    } else if (c == CMD_KEYGEN && strcmp (arg, "--force") == 0) {
        o->force = true;
        return 1;
    } else
        return 0;
    if (!value) return 10 + s_usage_error ("%s needs a value", arg);
    return rc ? 10 + EXIT_USAGE : 1;
}

static int
s_parse_after_command (options_t *o, int argc, char **argv, int i)
{
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp (arg, "--") == 0 && o->cmd->command == CMD_SPAWN) {
            o->argv = argv + i + 1;
            o->argc = argc - i - 1;
            break;
        }
        int rc = s_parse_command_flag (o, argc, argv, &i);
        if (rc == 0) rc = s_parse_global (o, argc, argv, &i);
        if (rc >= 10) return rc - 10;
        if (rc == 1) continue;
        if (arg[0] == '-' && arg[1])
            return s_usage_error ("%s: unknown flag '%s'", o->cmd->word, arg);
        if (o->cmd->needs_name && !o->name) {
            o->name = arg;
            continue;
        }
        if (o->cmd->command == CMD_SPAWN) { //  COMMAND without "--"
            o->argv = argv + i;
            o->argc = argc - i;
            break;
        }
        return s_usage_error ("%s: unexpected argument '%s'", o->cmd->word, arg);
    }
    if (o->cmd->needs_name && (!o->name || !*o->name))
        return s_usage_error ("%s needs a NAME", o->cmd->word);
    if (o->cmd->command == CMD_SPAWN && o->argc < 1)
        return s_usage_error ("spawn %s needs a COMMAND after '--'", o->name);
    if (o->cmd->command == CMD_KEYGEN && (strchr (o->name, '/') || o->name[0] == '.'))
        return s_usage_error ("keygen: NAME '%s' must be a plain file name", o->name);
    return 0;
}

//  Parse the command line. Returns -1 to go on, or an exit code.
static int
s_parse (options_t *o, int argc, char **argv)
{
    memset (o, 0, sizeof *o);
    o->timeout_ms = o->ready_timeout_ms = o->op_timeout_ms = o->max_in_flight = o->lines = -1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp (arg, "--help") == 0 || strcmp (arg, "-h") == 0) {
            s_help (stdout);
            return EXIT_OK;
        }
        if (strcmp (arg, "--version") == 0) {
            printf (PROGRAM " %s\n", ZH_VERSION_STRING);
            return EXIT_OK;
        }
        int rc = s_parse_global (o, argc, argv, &i);
        if (rc >= 10) return rc - 10;
        if (rc == 1) continue;
        if (arg[0] == '-') return s_usage_error ("unknown flag '%s'", arg);
        o->cmd = s_command_find (arg);
        if (!o->cmd) return s_usage_error ("unknown command '%s'", arg);
        rc = s_parse_after_command (o, argc, argv, i + 1);
        if (rc) return rc;
        break;
    }
    if (!o->cmd) return s_usage_error ("no command given");
    if (o->connect && o->runtime_dir)
        return s_usage_error ("--runtime-dir and --connect exclude each other");
    if (!o->curve_server != !o->curve_cert)
        return s_usage_error ("--curve-server and --curve-cert go together");
    if (o->curve_server && !o->connect && o->cmd->command != CMD_KEYGEN)
        return s_usage_error ("--curve-server/--curve-cert are for a frontend (--connect "
                              "ENDPOINT); the control socket needs no keys");
    return -1;
}

//  ---------------------------------------------------------------------
//  Time

//  How long ctl waits for the answer (ms; -1 forever).
static int64_t
s_answer_wait_ms (const options_t *o)
{
    command_t c = o->cmd->command;
    bool stops = c == CMD_STOP || c == CMD_STOP_ALL || c == CMD_SHUTDOWN;
    if (o->timeout_ms >= 0) return o->timeout_ms;
    if (c == CMD_SPAWN) {
        if (o->ready_timeout_ms == 0) return -1; //  the broker waits forever, so do we
        return (o->ready_timeout_ms > 0 ? o->ready_timeout_ms : DEFAULT_READY_MS) + WAIT_MARGIN_MS;
    }
    if (stops) {
        int64_t t = o->op_timeout_ms >= 0 ? o->op_timeout_ms : DEFAULT_TERMINATE_MS;
        return 2 * t + WAIT_MARGIN_MS;
    }
    return DEFAULT_TIMEOUT_MS;
}

//  ---------------------------------------------------------------------
//  The request map

static void
s_pack_spawn_args (msgpack_packer *pk, const options_t *o)
{
    zh_pack_str (pk, "argv");
    msgpack_pack_array (pk, (size_t)o->argc);
    for (int i = 0; i < o->argc; i++)
        zh_pack_str (pk, o->argv[i]);
    zh_pack_str (pk, "env");
    msgpack_pack_map (pk, o->env_count);
    for (size_t i = 0; i < o->env_count; i++) {
        const char *eq = strchr (o->env[i], '=');
        zh_pack_strn (pk, o->env[i], (size_t)(eq - o->env[i]));
        zh_pack_str (pk, eq + 1);
    }
}

//  {"op": …, args} into buffer.
static void
s_pack_request (msgpack_sbuffer *buffer, const options_t *o)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    command_t c = o->cmd->command;
    size_t n = 1 + (o->cmd->needs_name ? 1 : 0);
    if (c == CMD_SPAWN) n += 2 + (o->ready_timeout_ms >= 0);
    n += o->op_timeout_ms >= 0;
    n += o->max_in_flight >= 0;
    n += o->reason != NULL;
    n += o->follow + (o->lines >= 0);
    msgpack_pack_map (&pk, n);
    zh_pack_kv_str (&pk, "op", o->cmd->op);
    if (o->cmd->needs_name) zh_pack_kv_str (&pk, "name", o->name);
    if (c == CMD_SPAWN) {
        s_pack_spawn_args (&pk, o);
        if (o->ready_timeout_ms >= 0) zh_pack_kv_int (&pk, "ready_timeout_ms", o->ready_timeout_ms);
    }
    if (o->op_timeout_ms >= 0) zh_pack_kv_int (&pk, "timeout_ms", o->op_timeout_ms);
    if (o->max_in_flight >= 0) zh_pack_kv_int (&pk, "max_in_flight", o->max_in_flight);
    if (o->reason) zh_pack_kv_str (&pk, "reason", o->reason);
    if (o->follow) zh_pack_kv_bool (&pk, "follow", true);
    if (o->lines >= 0) zh_pack_kv_int (&pk, "lines", o->lines);
}

//  ---------------------------------------------------------------------
//  JSON (--json): a msgpack object as JSON. Binary and ext are base64.

static void
s_json_string (FILE *out, const char *s, size_t len)
{
    fputc ('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            fprintf (out, "\\%c", ch);
        else if (ch == '\n')
            fputs ("\\n", out);
        else if (ch == '\r')
            fputs ("\\r", out);
        else if (ch == '\t')
            fputs ("\\t", out);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf (out, "\\u%04x", ch);
        else
            fputc (ch, out); //  UTF-8 passes through
    }
    fputc ('"', out);
}

static void
s_json_base64 (FILE *out, const char *data, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = (const unsigned char *)data;
    fputc ('"', out);
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len) v |= p[i + 2];
        fputc (alphabet[(v >> 18) & 63], out);
        fputc (alphabet[(v >> 12) & 63], out);
        fputc (i + 1 < len ? alphabet[(v >> 6) & 63] : '=', out);
        fputc (i + 2 < len ? alphabet[v & 63] : '=', out);
    }
    fputc ('"', out);
}

static void s_json (FILE *out, const msgpack_object *o);

//  A map key: strings as they are, anything else as its JSON text quoted.
static void
s_json_key (FILE *out, const msgpack_object *key)
{
    if (key->type == MSGPACK_OBJECT_STR) {
        s_json_string (out, key->via.str.ptr, key->via.str.size);
        return;
    }
    char *text = NULL;
    size_t size = 0;
    FILE *mem = open_memstream (&text, &size);
    if (mem) {
        s_json (mem, key);
        fclose (mem);
        s_json_string (out, text, size);
    } else
        fputs ("\"?\"", out);
    free (text);
}

static void
s_json (FILE *out, const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        fputs ("null", out);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        fputs (o->via.boolean ? "true" : "false", out);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        fprintf (out, "%llu", (unsigned long long)o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        fprintf (out, "%lld", (long long)o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (o->via.f64 != o->via.f64 || o->via.f64 > 1e308 || o->via.f64 < -1e308)
            fputs ("null", out); //  NaN and infinities have no JSON spelling
        else
            fprintf (out, "%.17g", o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        s_json_string (out, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        s_json_base64 (out, o->via.bin.ptr, o->via.bin.size);
        break;
    case MSGPACK_OBJECT_EXT:
        s_json_base64 (out, o->via.ext.ptr, o->via.ext.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
        fputc ('[', out);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i) fputs (", ", out);
            s_json (out, &o->via.array.ptr[i]);
        }
        fputc (']', out);
        break;
    case MSGPACK_OBJECT_MAP:
        fputc ('{', out);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            if (i) fputs (", ", out);
            s_json_key (out, &o->via.map.ptr[i].key);
            fputs (": ", out);
            s_json (out, &o->via.map.ptr[i].val);
        }
        fputc ('}', out);
        break;
    default:
        fputs ("null", out);
    }
}

//  ---------------------------------------------------------------------
//  Reading the answer map

//  A scalar as text into buf ("" when absent; "-" for nil).
static const char *
s_text (const msgpack_object *o, char *buf, size_t size)
{
    buf[0] = 0;
    if (!o) return buf;
    if (o->type == MSGPACK_OBJECT_STR)
        snprintf (buf, size, "%.*s", (int)o->via.str.size, o->via.str.ptr);
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        snprintf (buf, size, "%llu", (unsigned long long)o->via.u64);
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        snprintf (buf, size, "%lld", (long long)o->via.i64);
    else if (o->type == MSGPACK_OBJECT_BOOLEAN)
        snprintf (buf, size, "%s", o->via.boolean ? "true" : "false");
    else if (o->type == MSGPACK_OBJECT_NIL)
        snprintf (buf, size, "-");
    else if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)
        snprintf (buf, size, "%g", o->via.f64);
    else {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream (&text, &len);
        if (mem) {
            s_json (mem, o);
            fclose (mem);
            snprintf (buf, size, "%s", text);
        }
        free (text);
    }
    return buf;
}

#define TEXT(obj, buf) s_text ((obj), (buf), sizeof (buf))

//  How a proc ended, for people: "exit 0", "signal 9", "READY_TIMEOUT".
static const char *
s_proc_outcome (const msgpack_object *entry, char *buf, size_t size)
{
    char value[256];
    const msgpack_object *o;
    buf[0] = 0;
    if ((o = zh_map_get (entry, "exit_code")))
        snprintf (buf, size, "exit %s", TEXT (o, value));
    else if ((o = zh_map_get (entry, "signal"))) {
        const msgpack_object *core = zh_map_get (entry, "core_dumped");
        bool dumped = core && core->type == MSGPACK_OBJECT_BOOLEAN && core->via.boolean;
        snprintf (buf, size, "signal %s%s", TEXT (o, value), dumped ? " (core dumped)" : "");
    } else if ((o = zh_map_get (entry, "reason")))
        snprintf (buf, size, "%s", TEXT (o, value));
    return buf;
}

//  ---------------------------------------------------------------------
//  Printing an ok answer for people

static void
s_print_ping (const msgpack_object *answer)
{
    char host[1100], incarnation[32], version[64];
    printf ("pong from %s (version %s, incarnation %s)\n", TEXT (zh_map_get (answer, "host"), host),
            TEXT (zh_map_get (answer, "version"), version),
            TEXT (zh_map_get (answer, "incarnation"), incarnation));
}

#define LIST_COLUMNS 5

static void
s_list_row (const msgpack_object *entry, char cells[LIST_COLUMNS][1100])
{
    s_text (zh_map_get (entry, "name"), cells[0], sizeof cells[0]);
    s_text (zh_map_get (entry, "status"), cells[1], sizeof cells[1]);
    s_text (zh_map_get (entry, "pid"), cells[2], sizeof cells[2]);
    s_proc_outcome (entry, cells[3], sizeof cells[3]);
    s_text (zh_map_get (entry, "proc"), cells[4], sizeof cells[4]);
    if (!cells[3][0]) snprintf (cells[3], sizeof cells[3], "-");
}

static void
s_print_list (const msgpack_object *answer)
{
    static const char *headers[LIST_COLUMNS] = {"NAME", "STATUS", "PID", "EXIT/SIGNAL/REASON",
                                                "PROC"};
    const msgpack_object *procs = zh_map_get (answer, "procs");
    uint32_t n = procs && procs->type == MSGPACK_OBJECT_ARRAY ? procs->via.array.size : 0;
    char (*rows)[LIST_COLUMNS][1100] = calloc (n + 1, sizeof *rows);
    if (!rows) return;
    size_t width[LIST_COLUMNS];
    for (int c = 0; c < LIST_COLUMNS; c++) {
        snprintf (rows[0][c], sizeof rows[0][c], "%s", headers[c]);
        width[c] = strlen (headers[c]);
    }
    for (uint32_t r = 0; r < n; r++) {
        s_list_row (&procs->via.array.ptr[r], rows[r + 1]);
        for (int c = 0; c < LIST_COLUMNS; c++)
            if (strlen (rows[r + 1][c]) > width[c]) width[c] = strlen (rows[r + 1][c]);
    }
    for (uint32_t r = 0; r <= n; r++) {
        for (int c = 0; c < LIST_COLUMNS - 1; c++)
            printf ("%-*s  ", (int)width[c], rows[r][c]);
        printf ("%s\n", rows[r][LIST_COLUMNS - 1]);
    }
    free (rows);
}

static void
s_print_status (const msgpack_object *answer)
{
    const msgpack_object *entry = zh_map_get (answer, "proc");
    char value[1100];
    if (entry && entry->type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < entry->via.map.size; i++) {
            char key[64];
            printf ("%s: %s\n", TEXT (&entry->via.map.ptr[i].key, key),
                    TEXT (&entry->via.map.ptr[i].val, value));
        }
    const msgpack_object *tail = zh_map_get (answer, "tail");
    if (tail && tail->type == MSGPACK_OBJECT_STR && tail->via.str.size > 0) {
        printf ("output tail:\n");
        const char *p = tail->via.str.ptr, *end = p + tail->via.str.size;
        while (p < end) {
            const char *nl = memchr (p, '\n', (size_t)(end - p));
            size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
            printf ("  %.*s\n", (int)len, p);
            p += len + (nl ? 1 : 0);
        }
    }
}

//  stats: every counter on its own line, nested maps as dotted names,
//  values aligned.
typedef struct {
    char name[600];
    char value[64];
} counter_t;

static size_t
s_collect_counters (const msgpack_object *o, const char *prefix, counter_t *out, size_t n,
                    size_t max)
{
    for (uint32_t i = 0; o->type == MSGPACK_OBJECT_MAP && i < o->via.map.size; i++) {
        char key[256], name[600];
        TEXT (&o->via.map.ptr[i].key, key);
        if (!*prefix && strcmp (key, "ok") == 0) continue;
        snprintf (name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", key);
        const msgpack_object *v = &o->via.map.ptr[i].val;
        if (v->type == MSGPACK_OBJECT_MAP && v->via.map.size > 0)
            n = s_collect_counters (v, name, out, n, max);
        else if (n < max) {
            snprintf (out[n].name, sizeof out[n].name, "%s", name);
            if (v->type == MSGPACK_OBJECT_MAP)
                snprintf (out[n].value, sizeof out[n].value, "-");
            else
                TEXT (v, out[n].value);
            n++;
        }
    }
    return n;
}

static void
s_print_stats (const msgpack_object *answer)
{
    size_t max = 4096;
    counter_t *counters = calloc (max, sizeof *counters);
    if (!counters) return;
    size_t n = s_collect_counters (answer, "", counters, 0, max);
    size_t width = 0;
    for (size_t i = 0; i < n; i++)
        if (strlen (counters[i].name) > width) width = strlen (counters[i].name);
    for (size_t i = 0; i < n; i++)
        printf ("%-*s  %s\n", (int)width, counters[i].name, counters[i].value);
    free (counters);
}

static void
s_print_end (const options_t *o, const msgpack_object *answer)
{
    char status[64], outcome[300];
    const msgpack_object *entry = zh_map_get (answer, "proc");
    s_proc_outcome (entry, outcome, sizeof outcome);
    TEXT (zh_map_get (answer, "status"), status);
    if (outcome[0])
        printf ("%s: %s (%s)\n", o->name, status, outcome);
    else
        printf ("%s: %s\n", o->name, status);
}

//  config: KEY VALUE SOURCE, aligned.
static void
s_print_config (const msgpack_object *answer)
{
    const msgpack_object *settings = zh_map_get (answer, "settings");
    uint32_t n = settings && settings->type == MSGPACK_OBJECT_ARRAY ? settings->via.array.size : 0;
    size_t kw = 3, vw = 5;
    char key[64], value[1100], source[16];
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *row = &settings->via.array.ptr[i];
        size_t k = strlen (TEXT (zh_map_get (row, "key"), key));
        size_t v = strlen (TEXT (zh_map_get (row, "value"), value));
        kw = k > kw ? k : kw;
        vw = v > vw && v < 60 ? v : vw;
    }
    char file[1100];
    if (*TEXT (zh_map_get (answer, "file"), file)) printf ("# config file %s\n", file);
    printf ("%-*s  %-*s  %s\n", (int)kw, "KEY", (int)vw, "VALUE", "SOURCE");
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *row = &settings->via.array.ptr[i];
        TEXT (zh_map_get (row, "key"), key);
        TEXT (zh_map_get (row, "value"), value);
        TEXT (zh_map_get (row, "source"), source);
        printf ("%-*s  %-*s  %s\n", (int)kw, key, (int)vw, value[0] ? value : "-", source);
    }
}

//  One kept or followed line: stdout lines to stdout, stderr to stderr.
static void
s_print_line (const options_t *o, const msgpack_object *entry)
{
    char stream[16], line[4200];
    TEXT (zh_map_get (entry, "stream"), stream);
    TEXT (zh_map_get (entry, "line"), line);
    if (o->json) {
        printf ("{\"stream\": ");
        s_json_string (stdout, stream, strlen (stream));
        printf (", \"line\": ");
        s_json_string (stdout, line, strlen (line));
        printf ("}\n");
    } else
        fprintf (strcmp (stream, "stderr") == 0 ? stderr : stdout, "%s\n", line);
}

static void
s_print_lines (const options_t *o, const msgpack_object *answer)
{
    const msgpack_object *lines = zh_map_get (answer, "lines");
    uint32_t n = lines && lines->type == MSGPACK_OBJECT_ARRAY ? lines->via.array.size : 0;
    for (uint32_t i = 0; i < n; i++)
        s_print_line (o, &lines->via.array.ptr[i]);
}

//  A watch event for people, one line.
static void
s_print_event (const msgpack_object *event)
{
    char kind[16], a[1100], b[32], c[32], d[32], outcome[300];
    TEXT (zh_map_get (event, "event"), kind);
    if (strcmp (kind, "proc") == 0) {
        s_proc_outcome (event, outcome, sizeof outcome);
        printf ("proc %s: %s -> %s pid %s%s%s\n", TEXT (zh_map_get (event, "name"), a),
                TEXT (zh_map_get (event, "from"), b), TEXT (zh_map_get (event, "to"), c),
                TEXT (zh_map_get (event, "pid"), d), outcome[0] ? " " : "", outcome);
    } else if (strcmp (kind, "peer") == 0) {
        const msgpack_object *inc = zh_map_get (event, "incarnation");
        printf ("peer %s: %s", TEXT (zh_map_get (event, "endpoint"), a),
                TEXT (zh_map_get (event, "state"), b));
        if (inc) printf (" incarnation %s", TEXT (inc, c));
        printf ("\n");
    } else {
        s_text (event, a, sizeof a);
        printf ("%s\n", a);
    }
}

static void
s_print_ok (const options_t *o, const msgpack_object *answer)
{
    char a[1100], b[64], c[64];
    switch (o->cmd->command) {
    case CMD_PING:
        s_print_ping (answer);
        break;
    case CMD_LIST:
        s_print_list (answer);
        break;
    case CMD_STATUS:
        s_print_status (answer);
        break;
    case CMD_STATS:
        s_print_stats (answer);
        break;
    case CMD_CONFIG:
        s_print_config (answer);
        break;
    case CMD_LOGS:
        s_print_lines (o, answer);
        break;
    case CMD_WATCH: {
        char pid[32];
        const msgpack_object *procs = zh_map_get (answer, "procs");
        uint32_t n = procs && procs->type == MSGPACK_OBJECT_ARRAY ? procs->via.array.size : 0;
        for (uint32_t i = 0; i < n; i++) {
            const msgpack_object *p = &procs->via.array.ptr[i];
            s_proc_outcome (p, a, sizeof a);
            printf ("proc %s: %s pid %s%s%s\n", TEXT (zh_map_get (p, "name"), b),
                    TEXT (zh_map_get (p, "status"), c), TEXT (zh_map_get (p, "pid"), pid),
                    a[0] ? " " : "", a);
        }
        break;
    }
    case CMD_SPAWN:
        printf ("spawned %s pid %s (proc %s)\n", o->name, TEXT (zh_map_get (answer, "pid"), b),
                TEXT (zh_map_get (answer, "proc"), a));
        break;
    case CMD_STOP:
    case CMD_KILL:
        s_print_end (o, answer);
        break;
    case CMD_STOP_ALL:
    case CMD_SHUTDOWN:
        printf ("%s: attempted %s, stopped %s, failed %s\n", o->cmd->word,
                TEXT (zh_map_get (answer, "attempted"), a),
                TEXT (zh_map_get (answer, "stopped"), b), TEXT (zh_map_get (answer, "failed"), c));
        break;
    default:
        break;
    }
}

//  ---------------------------------------------------------------------
//  Failures

//  What to do about some failures.
static void
s_hint (const options_t *o, const char *code)
{
    if (strcmp (code, "NOT_ALLOWED") == 0 && o->connect)
        fprintf (stderr,
                 "hint: admin operations (spawn, stop, kill, stop-all, shutdown) are allowed "
                 "on the control socket (run " PROGRAM " on the broker's machine without "
                 "--connect, or with --runtime-dir DIR) and, on a CURVE frontend, with a key "
                 "from the broker's --curve-admin directory (--curve-server FILE --curve-cert "
                 "FILE)\n");
}

//  A failure as the JSON map of an ok=false answer (for --json).
static void
s_json_failure (const char *code, const char *message)
{
    printf ("{\"ok\": false, \"error\": {\"code\": ");
    s_json_string (stdout, code, strlen (code));
    printf (", \"message\": ");
    s_json_string (stdout, message, strlen (message));
    printf ("}}\n");
}

static void
s_report_failure (const options_t *o, const char *code, const char *message)
{
    if (o->json) s_json_failure (code, message);
    fprintf (stderr, PROGRAM ": %s failed: %s: %s\n", o->cmd->word, code, message);
    s_hint (o, code);
}

//  An ok=false answer: print its error.
static void
s_report_answer_error (const options_t *o, const msgpack_object *answer)
{
    const msgpack_object *error = zh_map_get (answer, "error");
    char code[128], message[4096];
    TEXT (zh_map_get (error, "code"), code);
    TEXT (zh_map_get (error, "message"), message);
    const char *text = message;
    size_t n = strlen (code);
    if (n && strncmp (text, code, n) == 0 && text[n] == ':')
        text += n + 1 + (text[n + 1] == ' '); //  the broker repeated the code word
    fprintf (stderr, PROGRAM ": %s failed: %s: %s\n", o->cmd->word, code[0] ? code : "ERROR", text);
    s_hint (o, code);
}

//  ---------------------------------------------------------------------
//  The session with the broker

typedef struct {
    const options_t *opts;
    void *ctx;
    void *sock;
    zh_handshake_t *watch;        //  the socket's handshake, until BOOTSTRAP
    char endpoint[PATH_MAX + 32]; //  what we connected to (as the user named it)
    const char *runtime_dir;      //  NULL with --connect
    int dir_fd;                   //  the checked runtime dir, or -1
    char via_fd[64];              //  ipc:///proc/self/fd/N/control, or ""
    //  from BOOTSTRAP
    char proc_id[ZH_ID_MAX + 1];
    char host[ZH_ADDR_MAX + 1]; //  the proc's endpoint
    char agent_port[ZH_ADDR_MAX + 8];
    char reply[ZH_ID_MAX + ZH_ADDR_MAX + 16];  //  the answer, and watch or logs events
    char reply2[ZH_ID_MAX + ZH_ADDR_MAX + 16]; //  logs -f: the watch that tells the proc ended
    char src[ZH_ID_MAX + ZH_ADDR_MAX + 16];
    bool following; //  logs: the answer said following
    int64_t heartbeat_ms;
    int64_t last_sent;
    bool got_bye; //  the broker said BYE
    char bye_reason[256];
    char refused[512]; //  why the handshake failed (s_wait returned -2)
} session_t;

typedef struct {
    zmq_msg_t frames[MAX_FRAMES];
    size_t count;
} message_t;

//  SIGINT or SIGTERM during watch or logs -f: end the stream cleanly.
static volatile sig_atomic_t s_interrupted = 0;

static void
s_on_interrupt (int sig)
{
    (void)sig;
    s_interrupted = 1;
}

static void
s_message_close (message_t *m)
{
    for (size_t i = 0; i < m->count; i++)
        zmq_msg_close (&m->frames[i]);
    m->count = 0;
}

//  Receive one multipart message (frames past MAX_FRAMES are dropped).
static int
s_recv (session_t *s, message_t *m)
{
    m->count = 0;
    int more = 1;
    while (more) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, s->sock, 0) < 0) {
            zmq_msg_close (&frame);
            s_message_close (m);
            return -1;
        }
        more = zmq_msg_more (&frame);
        if (m->count < MAX_FRAMES)
            m->frames[m->count++] = frame;
        else
            zmq_msg_close (&frame);
    }
    return 0;
}

//  Send a control command with an optional body.
static int
s_send_control (session_t *s, uint8_t command, const zh_body_t *body)
{
    int rc = zh_wire_send_command (s->sock, NULL, 0, command, body, 0);
    s->last_sent = zclock_mono ();
    return rc;
}

static int
s_send_reason (session_t *s, uint8_t command, const char *reason)
{
    zh_body_t body = {.command = command, .present = ZH_F_REASON, .reason = zh_span_of (reason)};
    return s_send_control (s, command, &body);
}

//  Wait for a message until deadline (-1: forever), sending PING when we
//  have been silent for a heartbeat and answering the broker's PINGs.
//  Returns 1 with a message, 0 on timeout, -1 on error.
static int
s_wait (session_t *s, message_t *m, int64_t deadline)
{
    while (true) {
        if (s_interrupted) return -3;
        int64_t now = zclock_mono ();
        if (deadline >= 0 && now >= deadline) return 0;
        if (s->heartbeat_ms > 0 && now - s->last_sent >= s->heartbeat_ms)
            s_send_control (s, ZH_PING, NULL);
        long wait = s->heartbeat_ms > 0 ? (long)s->heartbeat_ms : 1000;
        if (deadline >= 0 && deadline - now < wait) wait = (long)(deadline - now);
        zmq_pollitem_t items[2] = {
            {s->sock, 0, ZMQ_POLLIN, 0},
            {s->watch ? zh_handshake_socket (s->watch) : NULL, 0, ZMQ_POLLIN, 0}};
        int rc = zmq_poll (items, s->watch ? 2 : 1, wait);
        if (rc < 0 && errno != EINTR) return -1;
        if (rc <= 0) continue;
        if (s->watch && (items[1].revents & ZMQ_POLLIN) &&
            zh_handshake_read (s->watch, s->refused, sizeof s->refused) < 0)
            return -2;
        if (!(items[0].revents & ZMQ_POLLIN)) continue;
        if (s_recv (s, m) != 0) return -1;
        zh_header_t hdr;
        zh_error_t err;
        const uint8_t *data = (const uint8_t *)zmq_msg_data (&m->frames[0]);
        if (zh_header_check (&hdr, data, zmq_msg_size (&m->frames[0]), &err) == 0 &&
            hdr.command == ZH_PING) {
            s_send_control (s, ZH_PONG, NULL);
            s_message_close (m);
            continue;
        }
        return 1;
    }
}

//  The command byte of a received message, or -1 if it is not ZHP/1.
static int
s_command_of (const message_t *m)
{
    zh_header_t hdr;
    zh_error_t err;
    const uint8_t *data = (const uint8_t *)zmq_msg_data ((zmq_msg_t *)&m->frames[0]);
    size_t size = zmq_msg_size ((zmq_msg_t *)&m->frames[0]);
    if (size < ZH_HEADER_SIZE || data[0] != ZH_MAGIC0 || data[1] != ZH_MAGIC1) return -1;
    if (!zh_command_has_head (data[3]) && zh_header_check (&hdr, data, size, &err) != 0) return -1;
    return data[3];
}

//  Decode a control command's body (frame 1, if any).
static int
s_body_of (const message_t *m, uint8_t command, zh_body_t *body)
{
    zh_error_t err;
    const uint8_t *data = NULL;
    size_t size = 0;
    if (m->count > 1) {
        data = (const uint8_t *)zmq_msg_data ((zmq_msg_t *)&m->frames[1]);
        size = zmq_msg_size ((zmq_msg_t *)&m->frames[1]);
    }
    return zh_body_decode (body, command, data, size, &err);
}

static void
s_copy_span (char *buf, size_t size, zh_span_t span)
{
    snprintf (buf, size, "%.*s", (int)span.len, span.ptr ? span.ptr : "");
}

//  --- connect and attach ---

//  The runtime dir is trusted only as the broker makes it (docs/design.md,
//  Security): a directory of its own, not a symlink, owned by our
//  effective uid, with no access for group or others; and its control
//  entry, if any, a socket of ours and not a symlink. Checked on a
//  descriptor (O_NOFOLLOW, fstat, fstatat), and the connect then goes
//  through that descriptor (ipc:///proc/self/fd/N/control), so the dir
//  checked is the dir dialled. Returns 0 (*present: control exists), or
//  EXIT_USAGE after saying what is wrong (a configuration error, like a
//  bad certificate file).
static int
s_check_runtime_dir (session_t *s, bool *present)
{
    const char *dir = s->runtime_dir;
    char problem[256] = "";
    *present = false;
    s->dir_fd = open (dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (s->dir_fd < 0) {
        int e = errno;
        if (e == ENOENT) return 0; //  no dir, so no broker: s_probe_control says so
        if (e == ELOOP || (e == ENOTDIR && lstat (dir, &st) == 0 && S_ISLNK (st.st_mode)))
            snprintf (problem, sizeof problem, "it is a symbolic link");
        else if (e == ENOTDIR)
            snprintf (problem, sizeof problem, "it is not a directory");
        else
            snprintf (problem, sizeof problem, "cannot open it: %s", strerror (e));
    } else if (fstat (s->dir_fd, &st) != 0)
        snprintf (problem, sizeof problem, "cannot stat it: %s", strerror (errno));
    else if (!S_ISDIR (st.st_mode))
        snprintf (problem, sizeof problem, "it is not a directory");
    else if (st.st_uid != geteuid ())
        snprintf (problem, sizeof problem, "it is owned by uid %u, not by us (uid %u)",
                  (unsigned)st.st_uid, (unsigned)geteuid ());
    else if (st.st_mode & 077)
        snprintf (problem, sizeof problem, "its mode %04o lets group or others in (want 0700)",
                  (unsigned)(st.st_mode & 07777));
    else if (fstatat (s->dir_fd, "control", &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT)
            snprintf (problem, sizeof problem, "cannot stat %s/control: %s", dir, strerror (errno));
    } else if (S_ISLNK (st.st_mode))
        snprintf (problem, sizeof problem, "%s/control is a symbolic link", dir);
    else if (!S_ISSOCK (st.st_mode))
        snprintf (problem, sizeof problem, "%s/control is not a socket", dir);
    else if (st.st_uid != geteuid ())
        snprintf (problem, sizeof problem, "%s/control is owned by uid %u, not by us (uid %u)", dir,
                  (unsigned)st.st_uid, (unsigned)geteuid ());
    else
        *present = true;
    if (!problem[0]) {
        //  Dial the dir we checked, not whatever the path names later (a
        //  system without /proc falls back to the path).
        char fd_dir[32];
        snprintf (fd_dir, sizeof fd_dir, "/proc/self/fd/%d", s->dir_fd);
        if (*present && access (fd_dir, X_OK) == 0)
            snprintf (s->via_fd, sizeof s->via_fd, "ipc://%s/control", fd_dir);
        return 0;
    }
    fprintf (stderr,
             PROGRAM ": refusing runtime dir %s: %s.\n"
                     "zhost-ctl trusts the control socket only in a directory of this user "
                     "with mode 0700 that is not a symlink, as zhost-broker makes it; fix the "
                     "dir or pass --runtime-dir DIR.\n",
             dir, problem);
    return EXIT_USAGE;
}

//  With the control socket: is it there, and does something listen?
//  Returns 0, or EXIT_NO_BROKER after saying what is wrong.
static int
s_probe_control (session_t *s, const char *path, bool present)
{
    const char *problem = NULL;
    //  The socket file's path as connect(2) takes it: through the dir's fd.
    const char *dial = s->via_fd[0] ? s->via_fd + strlen ("ipc://") : path;
    if (!present)
        problem = "the control socket does not exist";
    else if (strlen (dial) < sizeof ((struct sockaddr_un *)0)->sun_path) {
        //  (a longer path is left to libzmq, which refuses it too)
        int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        memcpy (addr.sun_path, dial, strlen (dial) + 1);
        if (fd >= 0 && connect (fd, (struct sockaddr *)&addr, sizeof addr) != 0 &&
            (errno == ECONNREFUSED || errno == ENOENT))
            problem = "nothing is listening on the control socket (stale socket file)";
        if (fd >= 0) close (fd);
    }
    if (!problem) return 0;
    fprintf (stderr,
             PROGRAM ": no broker at %s (runtime dir %s): %s\n"
                     "Start one with 'zhost-broker --runtime-dir %s', or pass --runtime-dir DIR "
                     "(or --connect ENDPOINT) to reach a broker elsewhere.\n",
             s->endpoint, s->runtime_dir, problem, s->runtime_dir);
    return EXIT_NO_BROKER;
}

static void
s_no_bootstrap (session_t *s, const char *why)
{
    if (s->runtime_dir)
        fprintf (stderr,
                 PROGRAM ": no broker answered at %s (runtime dir %s): %s\n"
                         "Is zhost-broker running with --runtime-dir %s? Start it, or pass "
                         "--runtime-dir DIR.\n",
                 s->endpoint, s->runtime_dir, why, s->runtime_dir);
    else
        fprintf (stderr,
                 PROGRAM
                 ": no broker answered at %s: %s\n"
                 "Is zhost-broker running with that frontend? Check the endpoint, or use the "
                 "control socket (--runtime-dir DIR).\n",
                 s->endpoint, why);
}

static const char *
s_default_runtime_dir (char *buf, size_t size)
{
    const char *dir = getenv ("ZHOST_RUNTIME_DIR");
    if (dir && *dir) return dir;
    const char *xdg = getenv ("XDG_RUNTIME_DIR");
    if (xdg && *xdg)
        snprintf (buf, size, "%s/zhost", xdg);
    else
        snprintf (buf, size, "/tmp/zhost-%u", (unsigned)getuid ());
    return buf;
}

static void
s_routing_id (uint8_t id[16])
{
    if (getrandom (id, 16, 0) != 16) {
        srand ((unsigned)(time (NULL) ^ getpid ()));
        for (int i = 0; i < 16; i++)
            id[i] = (uint8_t)rand ();
    }
    if (id[0] == 0) id[0] = 1; //  §1: first byte non-zero
}

static int
s_open_socket (session_t *s)
{
    s->ctx = zmq_ctx_new ();
    s->sock = s->ctx ? zmq_socket (s->ctx, ZMQ_DEALER) : NULL;
    if (!s->sock) {
        fprintf (stderr, PROGRAM ": cannot make a ZeroMQ socket: %s\n", zmq_strerror (errno));
        return EXIT_FAILED;
    }
    uint8_t id[16];
    s_routing_id (id);
    int linger = 1000;
    zmq_setsockopt (s->sock, ZMQ_ROUTING_ID, id, sizeof id);
    zmq_setsockopt (s->sock, ZMQ_LINGER, &linger, sizeof linger);
    bool curve = s->opts->curve_server != NULL;
    if (curve) {
        zh_curve_keys_t keys;
        zh_error_t err;
        if (zh_curve_keys_load (&keys, s->opts->curve_server, s->opts->curve_cert, &err) != 0) {
            fprintf (stderr, PROGRAM ": %s\n", err.reason);
            return EXIT_USAGE;
        }
        if (zh_curve_keys_apply (&keys, s->sock) != 0) {
            fprintf (stderr, PROGRAM ": cannot set the CURVE keys: %s\n", zmq_strerror (errno));
            return EXIT_FAILED;
        }
    }
    //  A frontend's refusal (a CURVE key it does not allow, a CURVE
    //  mismatch) shows here at once; the socket itself would stay silent.
    if (!s->runtime_dir) s->watch = zh_handshake_new (s->ctx, s->sock, curve);
    if (zmq_connect (s->sock, s->via_fd[0] ? s->via_fd : s->endpoint) != 0) {
        fprintf (stderr, PROGRAM ": cannot connect to '%s': %s\n", s->endpoint,
                 zmq_strerror (errno));
        return s->runtime_dir ? EXIT_NO_BROKER : EXIT_USAGE;
    }
    return 0;
}

//  Fill the session's addresses from a BOOTSTRAP body.
static int
s_take_bootstrap (session_t *s, const zh_body_t *body)
{
    zh_addr_t proc;
    zh_error_t err;
    if (zh_addr_parse_kind (&proc, ZH_ADDR_PROC, body->proc.ptr, body->proc.len, &err) != 0) {
        fprintf (stderr, PROGRAM ": BOOTSTRAP proc '%.*s' is not a proc address: %s\n",
                 (int)body->proc.len, body->proc.ptr, err.reason);
        return EXIT_FAILED;
    }
    s_copy_span (s->proc_id, sizeof s->proc_id, proc.proc.text);
    s_copy_span (s->host, sizeof s->host, proc.endpoint);
    const char *agent = body->agent.ptr;
    const char *at = memchr (agent, '@', body->agent.len);
    if (!at) {
        fprintf (stderr, PROGRAM ": BOOTSTRAP agent '%.*s' is not an address\n",
                 (int)body->agent.len, agent);
        return EXIT_FAILED;
    }
    snprintf (s->agent_port, sizeof s->agent_port, "%.*s:1%.*s", (int)(at - agent), agent,
              (int)(body->agent.len - (size_t)(at - agent)), at);
    snprintf (s->reply, sizeof s->reply, "ctl.%s:1@%s", s->proc_id, s->host);
    snprintf (s->reply2, sizeof s->reply2, "ctl.%s:2@%s", s->proc_id, s->host);
    snprintf (s->src, sizeof s->src, "ctl.%s@%s", s->proc_id, s->host);
    s->heartbeat_ms = (int64_t)body->heartbeat_ms;
    return 0;
}

//  An ERROR as text: "ERROR 503 (shutting down): reason".
static void
s_error_text (const zh_body_t *body, char *buf, size_t size)
{
    snprintf (buf, size, "ERROR %lld (%s): %.*s", (long long)body->code,
              zh_error_code_name ((int)body->code), (int)body->reason.len,
              body->reason.ptr ? body->reason.ptr : "");
}

//  ATTACH → BOOTSTRAP within the timeout. 0 or an exit code.
static int
s_attach (session_t *s, int64_t timeout_ms)
{
    zh_body_t attach = {.command = ZH_ATTACH,
                        .present = ZH_F_LABEL | ZH_F_LANG | ZH_F_PID,
                        .label = zh_span_of ("ctl"),
                        .lang = zh_span_of ("c"),
                        .pid = (int64_t)getpid ()};
    if (s_send_control (s, ZH_ATTACH, &attach) != 0) {
        s_no_bootstrap (s, "could not send ATTACH");
        return EXIT_NO_BROKER;
    }
    int64_t deadline = zclock_mono () + timeout_ms;
    message_t m;
    while (true) {
        int rc = s_wait (s, &m, deadline);
        if (rc == -2) {
            fprintf (stderr, PROGRAM ": %s\n", s->refused);
            return EXIT_NO_BROKER;
        }
        if (rc <= 0) {
            char why[96];
            snprintf (why, sizeof why, "no BOOTSTRAP within %lldms", (long long)timeout_ms);
            s_no_bootstrap (s, why);
            return EXIT_NO_BROKER;
        }
        int command = s_command_of (&m);
        zh_body_t body;
        int result = -1;
        if (command == ZH_BOOTSTRAP && s_body_of (&m, ZH_BOOTSTRAP, &body) == 0)
            result = s_take_bootstrap (s, &body);
        else if (command == ZH_ERROR && s_body_of (&m, ZH_ERROR, &body) == 0) {
            char text[512];
            s_error_text (&body, text, sizeof text);
            fprintf (stderr, PROGRAM ": the broker at %s refused ATTACH: %s\n", s->endpoint, text);
            result = body.code == ZH_ERR_SHUTTING_DOWN ? EXIT_NO_BROKER : EXIT_FAILED;
        } else if (command == ZH_BYE) {
            fprintf (stderr, PROGRAM ": the broker at %s said BYE before BOOTSTRAP\n", s->endpoint);
            s->got_bye = true;
            result = EXIT_NO_BROKER;
        }
        s_message_close (&m);
        if (result >= 0) return result;
    }
}

//  --- the request ---

//  Send request (a packed op map) to the agent, answered at reply.
static int
s_send_op (session_t *s, msgpack_sbuffer *request, const char *reply, int64_t seq)
{
    msgpack_sbuffer meta;
    msgpack_sbuffer_init (&meta);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &meta, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    zh_pack_kv_str (&pk, "reply", reply);
    zh_pack_kv_int (&pk, "seq", seq);
    size_t dest_len = strlen (s->agent_port), src_len = strlen (s->src);
    size_t size = zh_head_size (dest_len, src_len, meta.size, request->size);
    uint8_t *head = malloc (size);
    long written =
        head ? zh_head_write (head, size, ZH_SEND, ZH_TTL_DEFAULT,
                              ZH_FLAG_INLINE | ZH_FLAG_RETURN_UNDELIVERABLE, s->agent_port,
                              dest_len, s->src, src_len, (const uint8_t *)meta.data, meta.size,
                              (const uint8_t *)request->data, request->size)
             : -1;
    int rc = written < 0 ? -1 : zmq_send (s->sock, head, (size_t)written, 0);
    s->last_sent = zclock_mono ();
    free (head);
    msgpack_sbuffer_destroy (&meta);
    if (rc < 0)
        fprintf (stderr, PROGRAM ": could not send the request: %s\n",
                 written < 0 ? "it does not fit in a head" : zmq_strerror (errno));
    return rc < 0 ? EXIT_FAILED : 0;
}

static int
s_send_request (session_t *s)
{
    msgpack_sbuffer request;
    msgpack_sbuffer_init (&request);
    s_pack_request (&request, s->opts);
    int rc = s_send_op (s, &request, s->reply, 1);
    msgpack_sbuffer_destroy (&request);
    return rc;
}

//  logs -f: a watch at reply2 first, so that the proc's end is seen
//  (its last lines come before it: the broker drains a proc's pipes
//  before it reports its end).
static int
s_send_watch2 (session_t *s)
{
    msgpack_sbuffer request;
    msgpack_sbuffer_init (&request);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &request, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 1);
    zh_pack_kv_str (&pk, "op", "watch");
    int rc = s_send_op (s, &request, s->reply2, 2);
    msgpack_sbuffer_destroy (&request);
    return rc;
}

//  Decode and print the agent's answer (the first payload part of a SEND
//  to our reply port). Returns the exit code.
static int
s_handle_answer (session_t *s, const message_t *m, const zh_head_t *head)
{
    const char *part = NULL;
    size_t len = 0;
    if (head->hdr.flags & ZH_FLAG_INLINE) {
        part = (const char *)head->inline_part;
        len = head->inline_len;
    } else if (m->count > 1) {
        part = (const char *)zmq_msg_data ((zmq_msg_t *)&m->frames[1]);
        len = zmq_msg_size ((zmq_msg_t *)&m->frames[1]);
    }
    //  Bytes from the wire reach msgpack-c only through the guard.
    msgpack_zone zone;
    msgpack_object root;
    int rc = EXIT_FAILED;
    if (!msgpack_zone_init (&zone, 4096)) return EXIT_FAILED;
    if (!part || zh_msgpack_unpack ((const uint8_t *)part, len, &zone, &root) != 0 ||
        root.type != MSGPACK_OBJECT_MAP)
        fprintf (stderr, PROGRAM ": %s: the answer is not a msgpack map\n", s->opts->cmd->word);
    else {
        const msgpack_object *answer = &root;
        const msgpack_object *ok = zh_map_get (answer, "ok");
        bool success = ok && ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean;
        if (s->opts->json) {
            s_json (stdout, answer);
            fputc ('\n', stdout);
        }
        if (success && !s->opts->json) s_print_ok (s->opts, answer);
        if (success && s->opts->cmd->command == CMD_LOGS) {
            if (s->opts->json) s_print_lines (s->opts, answer);
            const msgpack_object *f = zh_map_get (answer, "following");
            s->following = f && f->type == MSGPACK_OBJECT_BOOLEAN && f->via.boolean;
        }
        if (!success) s_report_answer_error (s->opts, answer);
        rc = success ? EXIT_OK : EXIT_FAILED;
    }
    msgpack_zone_destroy (&zone);
    return rc;
}

//  Our request came back undeliverable: print the root cause.
static int
s_handle_return (session_t *s, const zh_head_t *head)
{
    zh_return_meta_t rm;
    zh_error_t err;
    char code[64] = "RETURN", message[1024] = "the request came back undeliverable";
    if (zh_return_meta_decode (&rm, head->meta, head->meta_len, &err) == 0 &&
        rm.failure_count > 0) {
        const zh_failure_t *root = &rm.failures[0];
        s_copy_span (code, sizeof code, root->code);
        snprintf (message, sizeof message, "%.*s (at %.*s)", (int)root->reason.len,
                  root->reason.ptr, (int)root->at.len, root->at.ptr);
    }
    s_report_failure (s->opts, code, message);
    return EXIT_FAILED;
}

//  One message while waiting for the answer: -1 to go on waiting, else
//  the exit code.
static int
s_handle_message (session_t *s, const message_t *m)
{
    int command = s_command_of (m);
    zh_body_t body;
    zh_head_t head;
    zh_error_t err;
    const uint8_t *data = (const uint8_t *)zmq_msg_data ((zmq_msg_t *)&m->frames[0]);
    size_t size = zmq_msg_size ((zmq_msg_t *)&m->frames[0]);
    if (command == ZH_SEND && zh_head_decode (&head, data, size, &err) == 0 &&
        head.dest_len == strlen (s->reply) && memcmp (head.dest, s->reply, head.dest_len) == 0)
        return s_handle_answer (s, m, &head);
    if (command == ZH_RETURN && zh_head_decode (&head, data, size, &err) == 0)
        return s_handle_return (s, &head);
    if (command == ZH_ERROR && s_body_of (m, ZH_ERROR, &body) == 0) {
        char text[512], code[16];
        s_error_text (&body, text, sizeof text);
        snprintf (code, sizeof code, "ERROR %lld", (long long)body.code);
        s_report_failure (s->opts, code, text);
        return EXIT_FAILED;
    }
    if (command == ZH_BYE) {
        s->got_bye = true;
        if (s_body_of (m, ZH_BYE, &body) == 0)
            s_copy_span (s->bye_reason, sizeof s->bye_reason, body.reason);
        if (s->opts->cmd->command == CMD_SHUTDOWN) {
            //  The broker went down before (or instead of) answering.
            if (s->opts->json)
                printf ("{\"ok\": true, \"bye\": true}\n");
            else
                printf ("shutdown: the broker closed the connection (%s)\n", s->bye_reason);
            return EXIT_OK;
        }
        s_report_failure (s->opts, "BYE", *s->bye_reason ? s->bye_reason : "the broker left");
        return EXIT_FAILED;
    }
    return -1; //  anything else is not ours: ignore it
}

static int
s_await_answer (session_t *s, int64_t wait_ms)
{
    int64_t deadline = wait_ms < 0 ? -1 : zclock_mono () + wait_ms;
    message_t m;
    while (true) {
        int rc = s_wait (s, &m, deadline);
        if (rc < 0) {
            fprintf (stderr, PROGRAM ": %s: receive failed: %s\n", s->opts->cmd->word,
                     zmq_strerror (errno));
            return EXIT_FAILED;
        }
        if (rc == 0) {
            char text[160];
            snprintf (text, sizeof text, "no answer from the broker within %lldms",
                      (long long)wait_ms);
            s_report_failure (s->opts, "TIMEOUT", text);
            return EXIT_FAILED;
        }
        int result = s_handle_message (s, &m);
        s_message_close (&m);
        if (result >= 0) return result;
    }
}

//  BYE, then wait (bounded) for the broker's BYE (§7).
static void
s_close (session_t *s)
{
    if (s->got_bye) return;
    if (s_send_reason (s, ZH_BYE, "done") != 0) return;
    int64_t bound = s->heartbeat_ms > 0 ? 3 * s->heartbeat_ms : BYE_WAIT_MAX_MS;
    if (bound > BYE_WAIT_MAX_MS) bound = BYE_WAIT_MAX_MS;
    int64_t deadline = zclock_mono () + bound;
    message_t m;
    while (s_wait (s, &m, deadline) > 0) {
        int command = s_command_of (&m);
        s_message_close (&m);
        if (command == ZH_BYE) return;
    }
}

//  A SEND of the agent's after the first answer: an event. Returns -1
//  to go on, else the exit code.
static int
s_handle_event (session_t *s, const message_t *m)
{
    int command = s_command_of (m);
    zh_head_t head;
    zh_error_t err;
    zh_body_t body;
    const uint8_t *data = (const uint8_t *)zmq_msg_data ((zmq_msg_t *)&m->frames[0]);
    size_t size = zmq_msg_size ((zmq_msg_t *)&m->frames[0]);
    if (command == ZH_BYE) {
        s->got_bye = true;
        if (s_body_of (m, ZH_BYE, &body) == 0)
            s_copy_span (s->bye_reason, sizeof s->bye_reason, body.reason);
        s_report_failure (s->opts, "BYE", *s->bye_reason ? s->bye_reason : "the broker left");
        return EXIT_FAILED;
    }
    if (command == ZH_ERROR && s_body_of (m, ZH_ERROR, &body) == 0) {
        char text[512];
        s_error_text (&body, text, sizeof text);
        s_report_failure (s->opts, "ERROR", text);
        return EXIT_FAILED;
    }
    if (command != ZH_SEND || zh_head_decode (&head, data, size, &err) != 0 ||
        !(head.hdr.flags & ZH_FLAG_INLINE))
        return -1;
    bool main_port =
        head.dest_len == strlen (s->reply) && memcmp (head.dest, s->reply, head.dest_len) == 0;
    bool watch2 =
        head.dest_len == strlen (s->reply2) && memcmp (head.dest, s->reply2, head.dest_len) == 0;
    if (!main_port && !watch2) return -1;
    msgpack_zone zone;
    msgpack_object event;
    if (!msgpack_zone_init (&zone, 4096)) return EXIT_FAILED;
    int rc = -1;
    if (zh_msgpack_unpack (head.inline_part, head.inline_len, &zone, &event) == 0 &&
        event.type == MSGPACK_OBJECT_MAP) {
        char name[ZH_LABEL_MAX + 1], to[32];
        if (watch2) {
            //  logs -f: the proc ended, and its last lines came before.
            TEXT (zh_map_get (&event, "name"), name);
            TEXT (zh_map_get (&event, "to"), to);
            if (strcmp (name, s->opts->name) == 0 &&
                (!strcmp (to, "stopped") || !strcmp (to, "killed") || !strcmp (to, "failed")))
                rc = EXIT_OK;
        } else if (s->opts->cmd->command == CMD_LOGS)
            s_print_line (s->opts, &event);
        else if (s->opts->json) {
            s_json (stdout, &event);
            fputc ('\n', stdout);
        } else
            s_print_event (&event);
        fflush (stdout);
    }
    msgpack_zone_destroy (&zone);
    return rc;
}

//  watch and logs -f: events until the end, BYE, or an interrupt.
static int
s_stream (session_t *s)
{
    message_t m;
    while (true) {
        int rc = s_wait (s, &m, -1);
        if (rc == -3) return EXIT_OK; //  interrupted: the user ends the stream
        if (rc < 0) {
            fprintf (stderr, PROGRAM ": %s: receive failed: %s\n", s->opts->cmd->word,
                     zmq_strerror (errno));
            return EXIT_FAILED;
        }
        if (rc == 0) continue;
        int result = s_handle_event (s, &m);
        s_message_close (&m);
        if (result >= 0) return result;
    }
}

static int
s_session_run (session_t *s)
{
    int rc = s_open_socket (s);
    if (rc) return rc;
    int64_t attach_ms = s->opts->timeout_ms >= 0 ? s->opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    rc = s_attach (s, attach_ms);
    zh_handshake_destroy (&s->watch);
    if (rc) return rc;
    command_t c = s->opts->cmd->command;
    bool follow = c == CMD_LOGS && s->opts->follow;
    if (c == CMD_WATCH || follow) {
        struct sigaction sa;
        memset (&sa, 0, sizeof sa);
        sa.sa_handler = s_on_interrupt; //  no SA_RESTART: the poll returns
        sigaction (SIGINT, &sa, NULL);
        sigaction (SIGTERM, &sa, NULL);
    }
    if (follow && (rc = s_send_watch2 (s)) != 0) return rc;
    rc = s_send_request (s);
    if (rc) return rc;
    rc = s_await_answer (s, s_answer_wait_ms (s->opts));
    fflush (stdout);
    if (rc == EXIT_OK && (c == CMD_WATCH || (follow && s->following))) rc = s_stream (s);
    s_close (s);
    return rc;
}

static int
s_talk (const options_t *o)
{
    session_t s;
    memset (&s, 0, sizeof s);
    s.opts = o;
    s.dir_fd = -1;
    char dir_buf[PATH_MAX];
    char path[PATH_MAX + 16];
    if (o->connect)
        snprintf (s.endpoint, sizeof s.endpoint, "%s", o->connect);
    else {
        s.runtime_dir =
            o->runtime_dir ? o->runtime_dir : s_default_runtime_dir (dir_buf, sizeof dir_buf);
        snprintf (path, sizeof path, "%s/control", s.runtime_dir);
        snprintf (s.endpoint, sizeof s.endpoint, "ipc://%s", path);
    }
    int rc = 0;
    if (s.runtime_dir) {
        bool present = false;
        rc = s_check_runtime_dir (&s, &present);
        if (rc == 0) rc = s_probe_control (&s, path, present);
    }
    if (rc == 0) rc = s_session_run (&s);
    zh_handshake_destroy (&s.watch); //  before the context ends: it has a socket
    if (s.sock) {
        int linger = 0;
        if (rc == EXIT_NO_BROKER) zmq_setsockopt (s.sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close (s.sock);
    }
    if (s.ctx) zmq_ctx_term (s.ctx);
    if (s.dir_fd >= 0) close (s.dir_fd); //  after the context: it may still dial
    fflush (stdout);
    return rc;
}

//  ---------------------------------------------------------------------
//  keygen: a CURVE certificate pair with zcert

static int
s_keygen (const options_t *o)
{
    const char *dir = o->out_dir ? o->out_dir : ".";
    char public_path[PATH_MAX], secret_path[PATH_MAX + 16];
    snprintf (public_path, sizeof public_path, "%s/%s.key", dir, o->name);
    snprintf (secret_path, sizeof secret_path, "%s_secret", public_path);
    struct stat st;
    if (stat (dir, &st) != 0 || !S_ISDIR (st.st_mode)) {
        fprintf (stderr, PROGRAM ": keygen: '%s' is not a directory\n", dir);
        return EXIT_FAILED;
    }
    if (!o->force && (stat (public_path, &st) == 0 || stat (secret_path, &st) == 0)) {
        fprintf (stderr, PROGRAM ": keygen: %s or %s exists; remove it or pass --force\n",
                 public_path, secret_path);
        return EXIT_FAILED;
    }
    zcert_t *cert = zcert_new ();
    if (!cert) {
        fprintf (stderr, PROGRAM ": keygen: cannot make a certificate\n");
        return EXIT_FAILED;
    }
    zcert_set_meta (cert, "name", "%s", o->name);
    if (o->endpoint) zcert_set_meta (cert, "endpoint", "%s", o->endpoint);
    mode_t old_mask = umask (077); //  the secret is for our user only
    int rc = zcert_save_secret (cert, secret_path);
    umask (old_mask);
    if (rc == 0) rc = zcert_save_public (cert, public_path);
    if (rc != 0)
        fprintf (stderr, PROGRAM ": keygen: cannot write %s: %s\n",
                 rc == 0 ? public_path : secret_path, strerror (errno));
    else if (o->json) {
        printf ("{\"ok\": true, \"public\": ");
        s_json_string (stdout, public_path, strlen (public_path));
        printf (", \"secret\": ");
        s_json_string (stdout, secret_path, strlen (secret_path));
        printf (", \"public_key\": ");
        s_json_string (stdout, zcert_public_txt (cert), strlen (zcert_public_txt (cert)));
        printf ("}\n");
    } else
        printf ("public key  %s\nsecret key  %s\n(public key %s)\n", public_path, secret_path,
                zcert_public_txt (cert));
    zcert_destroy (&cert);
    return rc == 0 ? EXIT_OK : EXIT_FAILED;
}

int
main (int argc, char **argv)
{
    options_t opts;
    int rc = s_parse (&opts, argc, argv);
    if (rc >= 0) return rc;
    if (opts.cmd->command == CMD_KEYGEN) return s_keygen (&opts);
    return s_talk (&opts);
}
