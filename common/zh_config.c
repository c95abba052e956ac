/*  zh_config.c — the broker's configuration: durations, shell words,
    command-line flags, the ZHOST_* environment and the ZPL config file.

    Where it sits: zhost-broker's main() calls zh_config_load once at start
    and hands the zh_config_t to the broker; nothing else in zhost reads
    argv or the environment. Pure code: no sockets, no processes.

    One table, s_options below, describes every option: its long flag, its
    environment variable, its ZPL key (always the flag name), the kind of
    value, the default, the help sentence and the field it sets. The
    parser, zh_config_new's defaults, --help and zh_config_print all walk
    that table, so they cannot drift apart.

    Sources are applied lowest first, each overwriting the one before:

        defaults  <  --config FILE (ZPL)  <  ZHOST_* environment  <  flags

    CF-1  A list option (frontend, advertise, spawn) takes its values from
          the highest source that gives it any: the first value a source
          gives empties the list, later values from that source append.
    CF-2  An empty environment variable counts as unset. ZHOST_FRONTEND and
          ZHOST_ADVERTISE hold one endpoint or several separated by commas;
          there is no ZHOST_SPAWN.

    The config file is ZPL as czmq's zconfig reads it. Keys sit at the top
    level and are named like the flags; a list option repeats its key, and
    each spawn is one "NAME=COMMAND" value, exactly as --spawn takes it:

        frontend = "tcp://0.0.0.0:7100"
        frontend = "ipc:///run/zhost/frontend"
        heartbeat = 2s
        max-msg-bytes = 64MiB
        log-level = debug
        spawn = "worker=python3 worker.py --id 1"
        spawn = "trainer=./trainer --lr 0.1"

    ZPL limits (zconfig's, not ours): a value cannot hold a line break, a
    quoted value cannot hold its own quote character (there are no
    escapes), and lines are cut at 1024 bytes.
*/
#include "zh_config.h"

#include <czmq.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

//  err->exit_status of every zh_config_load failure: the exit status of a
//  usage error, as docs/broker.md asks ("a bad flag value: ... exit 2").
#define ZH_CONFIG_USAGE 2

//  A usage error: exit status 2, no ZHP code.
static int __attribute__ ((format (printf, 3, 4)))
s_usage (zh_error_t *err, size_t offset, const char *format, ...)
{
    if (err) {
        char reason[ZH_ERROR_REASON_MAX];
        va_list args;
        va_start (args, format);
        vsnprintf (reason, sizeof reason, format, args);
        va_end (args);
        zh_error_exit (err, ZH_CONFIG_USAGE, "%s", reason);
        err->offset = offset;
    }
    return -1;
}

#define MS_PER_S        1000LL
#define MS_PER_M        (60 * MS_PER_S)
#define MS_PER_H        (60 * MS_PER_M)
#define KIB             1024LL
#define MIB             (1024 * KIB)
#define GIB             (1024 * MIB)
#define ZPL_LINE_MAX    1024 //  zconfig cuts longer lines
#define CONFIG_FILE_MAX (1024 * 1024)

//  Enough of a value to recognise it in a message: quoted, cut at 48 bytes
#define EXCERPT_MAX 64

static const char *
s_excerpt (const char *value, char *buf, size_t size)
{
    size_t len = strlen (value);
    if (len > 48)
        snprintf (buf, size, "'%.45s...'", value);
    else
        snprintf (buf, size, "'%s'", value);
    return buf;
}

//  --------------------------------------------------------------------------
//  Durations: digits then a unit (ms, s, m, h); bare "0" is the one number
//  without a unit.

static int
s_duration_refuse (zh_error_t *err, const char *text, size_t offset, const char *why)
{
    char shown[EXCERPT_MAX];
    return zh_error_set (err, ZH_ERR_MALFORMED, offset, "%s is not a duration (%s)",
                         s_excerpt (text, shown, sizeof shown), why);
}

//  Milliseconds per unit, or 0 if the text is not a unit
static int64_t
s_duration_unit (const char *unit)
{
    if (streq (unit, "ms")) return 1;
    if (streq (unit, "s")) return MS_PER_S;
    if (streq (unit, "m")) return MS_PER_M;
    if (streq (unit, "h")) return MS_PER_H;
    return 0;
}

//  Parse leading decimal digits into *value; returns the count of digits,
//  or -1 on overflow.
static int
s_parse_digits (const char *text, int64_t *value)
{
    int64_t result = 0;
    int count = 0;
    while (isdigit ((unsigned char)text[count])) {
        int digit = text[count] - '0';
        if (result > (INT64_MAX - digit) / 10) return -1;
        result = result * 10 + digit;
        count++;
    }
    *value = result;
    return count;
}

int
zh_duration_parse (const char *text, int64_t *ms, zh_error_t *err)
{
    if (!text || !*text) return s_duration_refuse (err, text ? text : "", 0, "empty");
    if (text[0] == '-') return s_duration_refuse (err, text, 0, "negative");
    size_t space = strcspn (text, " \t\r\n");
    if (text[space]) return s_duration_refuse (err, text, space, "no spaces allowed");
    int64_t number;
    int digits = s_parse_digits (text, &number);
    if (digits < 0) return s_duration_refuse (err, text, 0, "too large");
    if (digits == 0)
        return s_duration_refuse (err, text, 0, "must start with a whole number, e.g. 30s");
    const char *unit = text + digits;
    if (*unit == '.' || *unit == ',')
        return s_duration_refuse (err, text, digits,
                                  "no fractions: use a smaller unit, e.g. 1500ms");
    if (*unit == '\0') {
        if (number != 0)
            return s_duration_refuse (err, text, digits, "a unit is required: ms, s, m or h");
        *ms = 0;
        return 0;
    }
    int64_t scale = s_duration_unit (unit);
    if (scale == 0) return s_duration_refuse (err, text, digits, "unit must be ms, s, m or h");
    if (number > INT64_MAX / scale) return s_duration_refuse (err, text, 0, "too large");
    *ms = number * scale;
    return 0;
}

const char *
zh_duration_format (int64_t ms, char *buf, size_t size)
{
    long long value = (long long)ms;
    if (ms == 0)
        snprintf (buf, size, "0");
    else if (ms % MS_PER_H == 0)
        snprintf (buf, size, "%lldh", value / MS_PER_H);
    else if (ms % MS_PER_M == 0)
        snprintf (buf, size, "%lldm", value / MS_PER_M);
    else if (ms % MS_PER_S == 0)
        snprintf (buf, size, "%llds", value / MS_PER_S);
    else
        snprintf (buf, size, "%lldms", value);
    return buf;
}

//  --------------------------------------------------------------------------
//  Sizes (bytes, or K/M/G, KiB/MiB/GiB: powers of 1024) and whole numbers

static int
s_size_parse (const char *text, int64_t *bytes, zh_error_t *err)
{
    char shown[EXCERPT_MAX];
    int64_t number;
    int digits = s_parse_digits (text, &number);
    int64_t scale = 0;
    if (digits > 0) {
        const char *unit = text + digits;
        if (*unit == '\0')
            scale = 1;
        else if (streq (unit, "K") || streq (unit, "KiB"))
            scale = KIB;
        else if (streq (unit, "M") || streq (unit, "MiB"))
            scale = MIB;
        else if (streq (unit, "G") || streq (unit, "GiB"))
            scale = GIB;
    }
    if (digits < 0 || (scale && number > INT64_MAX / scale))
        return zh_error_set (err, ZH_ERR_MALFORMED, 0, "%s is not a size (too large)",
                             s_excerpt (text, shown, sizeof shown));
    if (scale == 0)
        return zh_error_set (err, ZH_ERR_MALFORMED, 0,
                             "%s is not a size (bytes, or a whole number with K, M, G, KiB, "
                             "MiB or GiB)",
                             s_excerpt (text, shown, sizeof shown));
    *bytes = number * scale;
    return 0;
}

static const char *
s_size_format (int64_t bytes, char *buf, size_t size)
{
    long long value = (long long)bytes;
    if (bytes != 0 && bytes % GIB == 0)
        snprintf (buf, size, "%lldGiB", value / GIB);
    else if (bytes != 0 && bytes % MIB == 0)
        snprintf (buf, size, "%lldMiB", value / MIB);
    else if (bytes != 0 && bytes % KIB == 0)
        snprintf (buf, size, "%lldKiB", value / KIB);
    else
        snprintf (buf, size, "%lld", value);
    return buf;
}

static int
s_int_parse (const char *text, int64_t *value, zh_error_t *err)
{
    bool negative = text[0] == '-';
    int64_t number;
    int digits = s_parse_digits (text + negative, &number);
    if (digits <= 0 || text[negative + digits] != '\0') {
        char shown[EXCERPT_MAX];
        return zh_error_set (err, ZH_ERR_MALFORMED, 0, "%s is not a whole number",
                             s_excerpt (text, shown, sizeof shown));
    }
    *value = negative ? -number : number;
    return 0;
}

//  --------------------------------------------------------------------------
//  Shell words (POSIX rules for quotes and backslashes; nothing expands,
//  so $, `, *, |, ; and # are ordinary characters here)

typedef struct {
    char **words; //  NULL-terminated
    int count;
    int room;
    char *word; //  the word being built
    size_t length;
    bool in_word; //  true once anything, even '', started a word
    bool oom;     //  an allocation failed: the split fails as a whole
} words_t;

static void
s_word_add (words_t *self, char c)
{
    char *word = self->oom ? NULL : (char *)realloc (self->word, self->length + 2);
    if (!word) {
        self->oom = true;
        return;
    }
    self->word = word;
    self->word[self->length++] = c;
    self->word[self->length] = '\0';
    self->in_word = true;
}

static void
s_word_end (words_t *self)
{
    if (!self->in_word || self->oom) return;
    if (self->count + 2 > self->room) {
        int room = self->room ? self->room * 2 : 8;
        char **words = (char **)realloc (self->words, (size_t)room * sizeof (char *));
        if (!words) {
            self->oom = true;
            return;
        }
        self->words = words;
        self->room = room;
    }
    char *word = self->word ? self->word : strdup ("");
    if (!word) {
        self->oom = true;
        return;
    }
    self->words[self->count++] = word;
    self->words[self->count] = NULL;
    self->word = NULL;
    self->length = 0;
    self->in_word = false;
}

//  Single quotes: everything literal up to the next '. Returns the index
//  after the closing quote, or -1 if there is none.
static ssize_t
s_split_single (words_t *self, const char *text, size_t i)
{
    self->in_word = true;
    for (i++; text[i] && text[i] != '\''; i++)
        s_word_add (self, text[i]);
    return text[i] ? (ssize_t)i + 1 : -1;
}

//  Double quotes: backslash escapes only \ " $ ` and newline (which it
//  removes). Returns the index after the closing quote, or -1.
static ssize_t
s_split_double (words_t *self, const char *text, size_t i)
{
    self->in_word = true;
    for (i++; text[i] && text[i] != '"'; i++) {
        if (text[i] == '\\' && text[i + 1] && strchr ("\\\"$`\n", text[i + 1])) {
            if (text[++i] != '\n') s_word_add (self, text[i]);
        } else
            s_word_add (self, text[i]);
    }
    return text[i] ? (ssize_t)i + 1 : -1;
}

static void
s_words_destroy (words_t *self)
{
    zh_argv_free (&self->words);
    free (self->word);
}

char **
zh_shell_split (const char *command, int *argc, zh_error_t *err)
{
    words_t split = {0};
    size_t i = 0;
    while (command[i]) {
        char c = command[i];
        ssize_t next = (ssize_t)i + 1;
        if (c == ' ' || c == '\t' || c == '\n')
            s_word_end (&split);
        else if (c == '\'')
            next = s_split_single (&split, command, i);
        else if (c == '"')
            next = s_split_double (&split, command, i);
        else if (c == '\\') {
            if (command[i + 1] == '\0') {
                s_words_destroy (&split);
                zh_error_set (err, ZH_ERR_MALFORMED, i, "trailing backslash at %zu", i);
                return NULL;
            }
            if (command[i + 1] != '\n') //  backslash-newline joins lines
                s_word_add (&split, command[i + 1]);
            next = (ssize_t)i + 2;
        } else
            s_word_add (&split, c);
        if (next < 0) {
            s_words_destroy (&split);
            zh_error_set (err, ZH_ERR_MALFORMED, i, "unterminated %s quote (opened at %zu)",
                          c == '"' ? "double" : "single", i);
            return NULL;
        }
        i = (size_t)next;
    }
    s_word_end (&split);
    if (split.oom) {
        s_words_destroy (&split);
        zh_error_set (err, 0, 0, "out of memory");
        return NULL;
    }
    if (split.count == 0) {
        s_words_destroy (&split);
        zh_error_set (err, ZH_ERR_MALFORMED, 0, "empty command (no words)");
        return NULL;
    }
    if (argc) *argc = split.count;
    return split.words;
}

void
zh_argv_free (char ***argv_p)
{
    if (argv_p && *argv_p) {
        for (char **word = *argv_p; *word; word++)
            free (*word);
        free (*argv_p);
        *argv_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  The option table

typedef enum {
    KIND_STRING,    //  char *: non-empty text (a path)
    KIND_ENDPOINTS, //  char *[]: transport://address, one per value
    KIND_DURATION,  //  int64_t milliseconds
    KIND_INT,       //  int64_t
    KIND_SIZE,      //  int64_t bytes
    KIND_SPAWNS,    //  zh_spawn_spec_t[]: NAME=COMMAND
    KIND_CHOICE,    //  char *: one of the row's choices
    KIND_FLAG       //  bool: a flag that takes no value
} option_kind_t;

//  Where an option may be set
#define FROM_FLAG 1
#define FROM_ENV  2
#define FROM_FILE 4
#define FROM_ALL  (FROM_FLAG | FROM_ENV | FROM_FILE)

typedef struct {
    const char *name; //  long flag without "--", and the ZPL key
    const char *env;  //  ZHOST_* variable, NULL if none
    const char *arg;  //  placeholder shown by --help; NULL for KIND_FLAG
    option_kind_t kind;
    int from;            //  FROM_* bits
    const char *defval;  //  default, parsed like any value; NULL = none
    const char *defnote; //  --help's default when defval cannot say it
    const char *help;    //  one sentence for --help
    size_t field;        //  offset of the zh_config_t field it sets
    size_t count_field;  //  lists: offset of the count
    int64_t min, max;    //  numbers: the accepted range
    const char *choices; //  KIND_CHOICE: "a|b|c"
    //  KIND_STRING: checks the value's form; NULL = any non-empty text
    int (*check) (const char *value, zh_error_t *why);
} option_t;

static int s_check_cpus (const char *value, zh_error_t *why);
static int s_check_metrics (const char *value, zh_error_t *why);

#define FIELD(f)   offsetof (zh_config_t, f)
#define LIST(f, n) .field = FIELD (f), .count_field = FIELD (n)
#define DAY_MS     (24 * MS_PER_H)
#define LOG_LEVELS "debug|info|warn|error|off"

static const option_t s_options[] = {
    {.name = "frontend",
     .env = "ZHOST_FRONTEND",
     .arg = "ENDPOINT",
     .kind = KIND_ENDPOINTS,
     .from = FROM_ALL,
     .defval = "tcp://127.0.0.1:7100",
     LIST (frontends, frontend_count),
     .help = "Bind the public frontend here; repeat for several (env: comma-separated)."},
    {.name = "advertise",
     .env = "ZHOST_ADVERTISE",
     .arg = "ENDPOINT",
     .kind = KIND_ENDPOINTS,
     .from = FROM_ALL,
     .defnote = "the frontend endpoints as bound",
     LIST (advertise, advertise_count),
     .help = "Endpoint other machines dial to reach this broker; repeat for several."},
    {.name = "runtime-dir",
     .env = "ZHOST_RUNTIME_DIR",
     .arg = "DIR",
     .kind = KIND_STRING,
     .from = FROM_ALL,
     .defnote = "$XDG_RUNTIME_DIR/zhost or /tmp/zhost-<uid>",
     .field = FIELD (runtime_dir),
     .help = "Directory (mode 0700) of the backend and control sockets and broker.pid."},
    {.name = "heartbeat",
     .env = "ZHOST_HEARTBEAT",
     .arg = "DURATION",
     .kind = KIND_DURATION,
     .from = FROM_ALL,
     .defval = "1s",
     .field = FIELD (heartbeat_ms),
     .min = 1,
     .max = DAY_MS,
     .help = "PING a connection the broker has sent nothing to for this long."},
    {.name = "liveness",
     .env = "ZHOST_LIVENESS",
     .arg = "N",
     .kind = KIND_INT,
     .from = FROM_ALL,
     .defval = "3",
     .field = FIELD (liveness),
     .min = 1,
     .max = 1000,
     .help = "Heartbeats of silence before a client or peer is dropped."},
    {.name = "delivery-timeout",
     .env = "ZHOST_DELIVERY_TIMEOUT",
     .arg = "DURATION",
     .kind = KIND_DURATION,
     .from = FROM_ALL,
     .defval = "30s",
     .field = FIELD (delivery_timeout_ms),
     .min = 1,
     .max = DAY_MS,
     .help = "How long a message may wait for delivery."},
    {.name = "ready-timeout",
     .env = "ZHOST_READY_TIMEOUT",
     .arg = "DURATION",
     .kind = KIND_DURATION,
     .from = FROM_ALL,
     .defval = "30s",
     .field = FIELD (ready_timeout_ms),
     .min = 0,
     .max = DAY_MS,
     .help = "How long a spawned proc has to send READY (0 = forever)."},
    {.name = "terminate-timeout",
     .env = "ZHOST_TERMINATE_TIMEOUT",
     .arg = "DURATION",
     .kind = KIND_DURATION,
     .from = FROM_ALL,
     .defval = "10s",
     .field = FIELD (terminate_timeout_ms),
     .min = 0,
     .max = DAY_MS,
     .help = "Wait after STOP, then after SIGTERM, before the next step of a terminate."},
    {.name = "linger",
     .env = "ZHOST_LINGER",
     .arg = "DURATION",
     .kind = KIND_DURATION,
     .from = FROM_ALL,
     .defval = "2s",
     .field = FIELD (linger_ms),
     .min = 0,
     .max = DAY_MS,
     .help = "At shutdown, flush queued messages for at most this long."},
    {.name = "max-in-flight",
     .env = "ZHOST_MAX_IN_FLIGHT",
     .arg = "N",
     .kind = KIND_INT,
     .from = FROM_ALL,
     .defval = "16",
     .field = FIELD (max_in_flight),
     .min = 1,
     .max = 65536,
     .help = "Procs a bulk terminate stops at once."},
    {.name = "max-msg-bytes",
     .env = "ZHOST_MAX_MSG_BYTES",
     .arg = "SIZE",
     .kind = KIND_SIZE,
     .from = FROM_ALL,
     .defval = "16MiB",
     .field = FIELD (max_msg_bytes),
     .min = 1024,
     .max = GIB,
     .help = "Largest message accepted, in bytes (K, M, G suffixes allowed)."},
    {.name = "batch-max-bytes",
     .env = "ZHOST_BATCH_MAX_BYTES",
     .arg = "SIZE",
     .kind = KIND_SIZE,
     .from = FROM_ALL,
     .defval = "256KiB",
     .field = FIELD (batch_max_bytes),
     .min = 0,
     .max = GIB,
     .help = "Largest BATCH frame taken or sent (docs/protocol.md §14), at most --max-msg-bytes; "
             "0 turns batching off."},
    {.name = "hwm",
     .env = "ZHOST_HWM",
     .arg = "N",
     .kind = KIND_INT,
     .from = FROM_ALL,
     .defval = "10000",
     .field = FIELD (hwm),
     .min = 1,
     .max = 100000000,
     .help = "High-water mark: messages queued per connection before OVERLOADED."},
    {.name = "max-peers",
     .env = "ZHOST_MAX_PEERS",
     .arg = "N",
     .kind = KIND_INT,
     .from = FROM_ALL,
     .defval = "1024",
     .field = FIELD (max_peers),
     .min = 1,
     .max = 16384,
     .help = "Links to other brokers at once; a link down and unused for the delivery timeout "
             "is forgotten to make room."},
    {.name = "ttl",
     .env = "ZHOST_TTL",
     .arg = "N",
     .kind = KIND_INT,
     .from = FROM_ALL,
     .defval = "64",
     .field = FIELD (ttl),
     .min = 1,
     .max = 255,
     .help = "ttl the broker writes in RETURNs and agent replies."},
    {.name = "spawn",
     .arg = "NAME=COMMAND",
     .kind = KIND_SPAWNS,
     .from = FROM_FLAG | FROM_FILE,
     LIST (spawns, spawn_count),
     .help = "Start a proc with the broker; COMMAND is split as a shell would, but no "
             "shell runs. Repeatable."},
    {.name = "curve-secret",
     .env = "ZHOST_CURVE_SECRET",
     .arg = "FILE",
     .kind = KIND_STRING,
     .from = FROM_ALL,
     .field = FIELD (curve_secret),
     .help = "The broker's secret zcert certificate (NAME.key_secret, as zhost-ctl keygen "
             "writes it); the frontend then requires CURVE."},
    {.name = "curve-allow",
     .env = "ZHOST_CURVE_ALLOW",
     .arg = "DIR",
     .kind = KIND_STRING,
     .from = FROM_ALL,
     .field = FIELD (curve_allow),
     .help = "Directory of the zcert public certificates of the clients allowed to connect."},
    {.name = "curve-admin",
     .env = "ZHOST_CURVE_ADMIN",
     .arg = "DIR",
     .kind = KIND_STRING,
     .from = FROM_ALL,
     .field = FIELD (curve_admin),
     .help = "Directory of the zcert public certificates of admin clients (they may connect "
             "and run admin operations on the frontend)."},
    {.name = "curve-peers",
     .env = "ZHOST_CURVE_PEERS",
     .arg = "DIR",
     .kind = KIND_STRING,
     .from = FROM_ALL,
     .field = FIELD (curve_peers),
     .help = "Directory of the other brokers' zcert public certificates, each with metadata "
             "endpoint (zhost-ctl keygen NAME --endpoint E): links dial them with CURVE and "
             "the frontend accepts HELLO only from their keys."},
    {.name = "metrics",
     .env = "ZHOST_METRICS",
     .arg = "ADDR",
     .kind = KIND_STRING,
     .from = FROM_ALL,
     .defnote = "off",
     .field = FIELD (metrics),
     .check = s_check_metrics,
     .help = "Serve Prometheus metrics at http://ADDR/metrics and health at /healthz. ADDR is "
             "PORT (on 127.0.0.1), HOST:PORT or [IPV6]:PORT; 0.0.0.0:PORT opens it to the "
             "network (no authentication: keep it on a trusted one)."},
    {.name = "cpu",
     .env = "ZHOST_CPU",
     .arg = "LIST",
     .kind = KIND_STRING,
     .from = FROM_ALL,
     .defnote = "none: where the scheduler puts them",
     .field = FIELD (cpus),
     .check = s_check_cpus,
     .help = "Run the broker's loop and libzmq's threads on these CPUs only (e.g. 1 or "
             "0,2-3); spawned procs keep the CPUs the broker started with."},
    {.name = "config",
     .env = "ZHOST_CONFIG",
     .arg = "FILE",
     .kind = KIND_STRING,
     .from = FROM_FLAG | FROM_ENV,
     .field = FIELD (config_file),
     .help = "Read settings from this ZPL file (below flags and the environment)."},
    {.name = "log-level",
     .env = "ZHOST_LOG_LEVEL",
     .arg = "LEVEL",
     .kind = KIND_CHOICE,
     .from = FROM_ALL,
     .defval = "info",
     .field = FIELD (log_level),
     .choices = LOG_LEVELS,
     .help = "Least severe log lines shown: debug, info, warn, error or off."},
    {.name = "help",
     .kind = KIND_FLAG,
     .from = FROM_FLAG,
     .field = FIELD (help),
     .help = "Print this help and exit."},
    {.name = "version",
     .kind = KIND_FLAG,
     .from = FROM_FLAG,
     .field = FIELD (version),
     .help = "Print the version and exit."},
};

#define OPTION_COUNT (sizeof s_options / sizeof s_options[0])
_Static_assert(OPTION_COUNT <= ZH_CONFIG_OPTIONS_MAX, "raise ZH_CONFIG_OPTIONS_MAX");

static const option_t *
s_option_find (const char *name, size_t length)
{
    for (size_t i = 0; i < OPTION_COUNT; i++)
        if (strlen (s_options[i].name) == length && memcmp (s_options[i].name, name, length) == 0)
            return &s_options[i];
    return NULL;
}

//  The field an option sets, typed
#define FIELD_OF(self, opt, type) ((type *)((char *)(self) + (opt)->field))
#define COUNT_OF(self, opt)       ((size_t *)((char *)(self) + (opt)->count_field))

//  --------------------------------------------------------------------------
//  Setting one value of one option. Parsers below fill `why` with a reason
//  that s_option_set prefixes with where the value came from.

static int
s_set_string (zh_config_t *self, const option_t *opt, const char *value, zh_error_t *why)
{
    if (opt->check && opt->check (value, why) != 0) return -1;
    char **field = FIELD_OF (self, opt, char *);
    free (*field);
    *field = strdup (value);
    return 0;
}

static int
s_set_choice (zh_config_t *self, const option_t *opt, const char *value, zh_error_t *why)
{
    size_t length = strlen (value);
    const char *choice = opt->choices;
    while (*choice) {
        size_t choice_length = strcspn (choice, "|");
        if (choice_length == length && memcmp (choice, value, length) == 0)
            return s_set_string (self, opt, value, why);
        choice += choice_length + (choice[choice_length] == '|');
    }
    char shown[EXCERPT_MAX];
    return zh_error_set (why, ZH_ERR_MALFORMED, 0, "%s is not one of %s",
                         s_excerpt (value, shown, sizeof shown), opt->choices);
}

//  A number in the row's unit, for range messages
static const char *
s_number_format (const option_t *opt, int64_t value, char *buf, size_t size)
{
    if (opt->kind == KIND_DURATION) return zh_duration_format (value, buf, size);
    if (opt->kind == KIND_SIZE) return s_size_format (value, buf, size);
    snprintf (buf, size, "%lld", (long long)value);
    return buf;
}

static int
s_set_number (zh_config_t *self, const option_t *opt, const char *value, zh_error_t *why)
{
    int64_t number;
    int rc = opt->kind == KIND_DURATION ? zh_duration_parse (value, &number, why)
             : opt->kind == KIND_SIZE   ? s_size_parse (value, &number, why)
                                        : s_int_parse (value, &number, why);
    if (rc) return rc;
    if (number < opt->min || number > opt->max) {
        char shown[EXCERPT_MAX], low[32], high[32];
        return zh_error_set (why, ZH_ERR_MALFORMED, 0, "%s is out of range (%s to %s)",
                             s_excerpt (value, shown, sizeof shown),
                             s_number_format (opt, opt->min, low, sizeof low),
                             s_number_format (opt, opt->max, high, sizeof high));
    }
    *FIELD_OF (self, opt, int64_t) = number;
    return 0;
}

//  One CPU number at *p (moved past it). 0, or -1 with err.
static int
s_cpu_number (const char *text, const char **p, long *cpu, zh_error_t *err)
{
    if (!isdigit ((unsigned char)**p))
        return zh_error_set (err, ZH_ERR_MALFORMED, (size_t)(*p - text),
                             "'%s' is not a CPU list (write N, N-M or a comma list of them, "
                             "e.g. 0,2-3)",
                             text);
    char *stop;
    errno = 0;
    *cpu = strtol (*p, &stop, 10);
    if (errno || *cpu >= CPU_SETSIZE)
        return zh_error_set (err, ZH_ERR_MALFORMED, (size_t)(*p - text),
                             "'%s': CPU %.*s is beyond %d", text, (int)(stop - *p), *p,
                             CPU_SETSIZE - 1);
    *p = stop;
    return 0;
}

//  A CPU list as taskset(1) and cpuset(7) write it: N or N-M items,
//  comma-separated, every number below CPU_SETSIZE.
int
zh_cpu_list_parse (const char *text, cpu_set_t *set, zh_error_t *err)
{
    CPU_ZERO (set);
    if (!text || !*text) return zh_error_set (err, ZH_ERR_MALFORMED, 0, "empty CPU list");
    const char *p = text;
    while (true) {
        long first, last;
        if (s_cpu_number (text, &p, &first, err) != 0) return -1;
        last = first;
        if (*p == '-') {
            p++;
            if (s_cpu_number (text, &p, &last, err) != 0) return -1;
        }
        if (last < first)
            return zh_error_set (err, ZH_ERR_MALFORMED, (size_t)(p - text),
                                 "'%s': range %ld-%ld runs backwards", text, first, last);
        for (long cpu = first; cpu <= last; cpu++)
            CPU_SET ((int)cpu, set);
        if (*p == 0) return 0;
        if (*p != ',')
            return zh_error_set (err, ZH_ERR_MALFORMED, (size_t)(p - text),
                                 "'%s' is not a CPU list (unexpected '%c')", text, *p);
        p++;
    }
}

char *
zh_cpu_list_format (const cpu_set_t *set, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET (cpu, set)) continue;
        int last = cpu;
        while (last + 1 < CPU_SETSIZE && CPU_ISSET (last + 1, set))
            last++;
        int n = last > cpu
                    ? snprintf (buf + used, size - used, "%s%d-%d", used ? "," : "", cpu, last)
                    : snprintf (buf + used, size - used, "%s%d", used ? "," : "", cpu);
        if (n < 0 || (size_t)n >= size - used) break; //  truncated: keep what fits
        used += (size_t)n;
        cpu = last;
    }
    return buf;
}

static int
s_check_cpus (const char *value, zh_error_t *why)
{
    cpu_set_t set;
    return zh_cpu_list_parse (value, &set, why);
}

int
zh_hostport_split (const char *addr, char *host, size_t host_size, char *port, size_t port_size,
                   zh_error_t *why)
{
    const char *colon = strrchr (addr, ':');
    const char *h = "127.0.0.1", *p = addr;
    size_t hlen = strlen (h);
    if (colon) {
        h = addr;
        hlen = (size_t)(colon - addr);
        p = colon + 1;
        if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']')
            h++, hlen -= 2;
        else if (memchr (h, ':', hlen))
            hlen = 0; //  a bare IPv6 address needs brackets
        if (hlen == 0)
            return zh_error_set (why, ZH_ERR_MALFORMED, 0,
                                 "'%.80s' is not PORT, HOST:PORT or [IPV6]:PORT", addr);
    }
    size_t digits = strspn (p, "0123456789");
    if (digits == 0 || digits > 5 || p[digits] || atol (p) > 65535)
        return zh_error_set (why, ZH_ERR_MALFORMED, 0,
                             "'%.80s': the port must be a number from 0 to 65535", addr);
    if (hlen >= host_size || digits >= port_size)
        return zh_error_set (why, ZH_ERR_MALFORMED, 0, "'%.80s': the host is too long", addr);
    memcpy (host, h, hlen);
    host[hlen] = 0;
    if (strcmp (host, "*") == 0) snprintf (host, host_size, "0.0.0.0");
    memcpy (port, p, digits + 1);
    return 0;
}

//  --metrics: PORT, HOST:PORT or [V6]:PORT (the broker resolves HOST when it starts).
static int
s_check_metrics (const char *value, zh_error_t *why)
{
    char host[ZH_HOST_MAX + 1], port[8];
    return zh_hostport_split (value, host, sizeof host, port, sizeof port, why);
}

//  CF-1: the first value a source gives a list empties it
static void
s_list_clear (zh_config_t *self, const option_t *opt)
{
    size_t *count = COUNT_OF (self, opt);
    for (size_t i = 0; i < *count; i++) {
        if (opt->kind == KIND_SPAWNS) {
            zh_spawn_spec_t *spawn = &FIELD_OF (self, opt, zh_spawn_spec_t)[i];
            free (spawn->name);
            free (spawn->command);
            spawn->name = spawn->command = NULL;
        } else {
            char **item = &FIELD_OF (self, opt, char *)[i];
            free (*item);
            *item = NULL;
        }
    }
    *count = 0;
}

//  transport://address, with no blanks, quotes or commas
static int
s_check_endpoint (const char *value, zh_error_t *why)
{
    char shown[EXCERPT_MAX];
    const char *scheme_end = strstr (value, "://");
    bool scheme_ok = scheme_end && scheme_end > value;
    for (const char *c = value; scheme_ok && c < scheme_end; c++)
        scheme_ok = isalnum ((unsigned char)*c) || *c == '+';
    if (!scheme_ok || scheme_end[3] == '\0')
        return zh_error_set (why, ZH_ERR_MALFORMED, 0,
                             "%s is not an endpoint (write transport://address, e.g. "
                             "tcp://127.0.0.1:7100)",
                             s_excerpt (value, shown, sizeof shown));
    for (const char *c = value; *c; c++)
        if (isspace ((unsigned char)*c) || iscntrl ((unsigned char)*c) || strchr ("\"',", *c))
            return zh_error_set (why, ZH_ERR_MALFORMED, (size_t)(c - value),
                                 "%s is not an endpoint (no blanks, quotes or commas; give "
                                 "one endpoint per value)",
                                 s_excerpt (value, shown, sizeof shown));
    return 0;
}

static int
s_add_endpoint (zh_config_t *self, const option_t *opt, const char *value, zh_error_t *why)
{
    if (s_check_endpoint (value, why)) return -1;
    size_t *count = COUNT_OF (self, opt);
    FIELD_OF (self, opt, char *)[(*count)++] = strdup (value);
    return 0;
}

//  NAME=COMMAND: split at the first '='; both parts non-empty, COMMAND
//  splits into words, NAME not already spawned by this source.
static int
s_add_spawn (zh_config_t *self, const option_t *opt, const char *value, zh_error_t *why)
{
    char shown[EXCERPT_MAX];
    const char *equals = strchr (value, '=');
    if (!equals)
        return zh_error_set (why, ZH_ERR_MALFORMED, 0, "%s is not NAME=COMMAND (no '=')",
                             s_excerpt (value, shown, sizeof shown));
    if (equals == value)
        return zh_error_set (why, ZH_ERR_MALFORMED, 0, "%s has an empty NAME",
                             s_excerpt (value, shown, sizeof shown));
    size_t name_length = (size_t)(equals - value);
    zh_error_t split_err;
    char **argv = zh_shell_split (equals + 1, NULL, &split_err);
    if (!argv)
        return zh_error_set (why, ZH_ERR_MALFORMED, name_length + 1 + split_err.offset,
                             "%s: COMMAND: %s", s_excerpt (value, shown, sizeof shown),
                             split_err.reason);
    zh_argv_free (&argv);
    size_t *count = COUNT_OF (self, opt);
    zh_spawn_spec_t *spawns = FIELD_OF (self, opt, zh_spawn_spec_t);
    for (size_t i = 0; i < *count; i++)
        if (strlen (spawns[i].name) == name_length &&
            memcmp (spawns[i].name, value, name_length) == 0)
            return zh_error_set (why, ZH_ERR_MALFORMED, 0, "%s: proc '%s' is already spawned",
                                 s_excerpt (value, shown, sizeof shown), spawns[i].name);
    spawns[*count].name = strndup (value, name_length);
    spawns[*count].command = strdup (equals + 1);
    (*count)++;
    return 0;
}

static int
s_add_to_list (zh_config_t *self, const option_t *opt, const char *value, bool *touched,
               zh_error_t *why)
{
    if (!*touched) {
        s_list_clear (self, opt);
        *touched = true;
    }
    if (*COUNT_OF (self, opt) == ZH_CONFIG_LIST_MAX)
        return zh_error_set (why, ZH_ERR_MALFORMED, 0, "more than %d values", ZH_CONFIG_LIST_MAX);
    return opt->kind == KIND_SPAWNS ? s_add_spawn (self, opt, value, why)
                                    : s_add_endpoint (self, opt, value, why);
}

//  Set one value of opt; `where` names its source ("--ttl", "ZHOST_TTL",
//  "zhost.cfg:ttl") in the error. `touched` is this source's CF-1 mark for
//  the option.
static int
s_option_set (zh_config_t *self, const option_t *opt, const char *value, const char *where,
              bool *touched, zh_error_t *err)
{
    zh_error_t why;
    zh_error_clear (&why);
    int rc = 0;
    if (opt->kind == KIND_FLAG)
        *FIELD_OF (self, opt, bool) = true;
    else if (!value || !*value)
        rc = zh_error_set (&why, ZH_ERR_MALFORMED, 0, "empty value (expected %s)", opt->arg);
    else if (opt->kind == KIND_STRING)
        rc = s_set_string (self, opt, value, &why);
    else if (opt->kind == KIND_CHOICE)
        rc = s_set_choice (self, opt, value, &why);
    else if (opt->kind == KIND_ENDPOINTS || opt->kind == KIND_SPAWNS)
        rc = s_add_to_list (self, opt, value, touched, &why);
    else
        rc = s_set_number (self, opt, value, &why);
    if (rc) return s_usage (err, why.offset, "%s: %s", where, why.reason);
    return 0;
}

//  --------------------------------------------------------------------------
//  Constructor and destructor

zh_config_t *
zh_config_new (void)
{
    zh_config_t *self = (zh_config_t *)calloc (1, sizeof (zh_config_t));
    assert (self);
    bool touched[OPTION_COUNT] = {false};
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const option_t *opt = &s_options[i];
        if (opt->defval) {
            int rc = s_option_set (self, opt, opt->defval, "default", &touched[i], NULL);
            assert (rc == 0); //  the defaults are ours: a failure is a bug
            (void)rc;
        }
    }
    const char *xdg = getenv ("XDG_RUNTIME_DIR");
    if (xdg && *xdg)
        self->runtime_dir = zsys_sprintf ("%s/zhost", xdg);
    else
        self->runtime_dir = zsys_sprintf ("/tmp/zhost-%u", (unsigned)getuid ());
    return self;
}

void
zh_config_destroy (zh_config_t **self_p)
{
    assert (self_p);
    zh_config_t *self = *self_p;
    if (!self) return;
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const option_t *opt = &s_options[i];
        if (opt->kind == KIND_ENDPOINTS || opt->kind == KIND_SPAWNS)
            s_list_clear (self, opt);
        else if (opt->kind == KIND_STRING || opt->kind == KIND_CHOICE)
            free (*FIELD_OF (self, opt, char *));
    }
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Sources: the config file, the environment, the command line

#define ZPL_ITEMS_MAX 512 //  top-level items whose line number an error can give

//  The line numbers of the top-level items of ZPL text, in order: a line
//  that is not blank, not a comment and not indented starts one (zconfig
//  keeps that order; it does not keep line numbers). Returns how many.
static size_t
s_item_lines (const char *text, size_t size, int *lines, size_t max)
{
    size_t count = 0;
    int line = 1;
    for (size_t i = 0; i < size && count < max; line++) {
        char c = text[i];
        if (c != ' ' && c != '\t' && c != '#' && c != '\n' && c != '\r') lines[count++] = line;
        while (i < size && text[i] != '\n')
            i++;
        i++;
    }
    return count;
}

//  Apply every top-level `key = value` of a ZPL file; an error names the
//  file, the item's line (lines[i] for the i-th item) and the key.
static int
s_apply_tree (zh_config_t *self, zconfig_t *root, const char *path, const int *lines,
              size_t line_count, zh_error_t *err)
{
    bool touched[OPTION_COUNT] = {false};
    size_t index = 0;
    for (zconfig_t *item = zconfig_child (root); item; item = zconfig_next (item), index++) {
        const char *key = zconfig_name (item);
        char where[180];
        if (index < line_count)
            snprintf (where, sizeof where, "%.100s:%d:%s", path, lines[index], key);
        else
            snprintf (where, sizeof where, "%.100s:%s", path, key);
        const option_t *opt = s_option_find (key, strlen (key));
        if (!opt) return s_usage (err, 0, "%s: unknown key (see --help)", where);
        if (!(opt->from & FROM_FILE))
            return s_usage (err, 0, "%s: not allowed in a config file", where);
        if (zconfig_child (item))
            return s_usage (err, 0,
                            "%s: a section is not allowed; write one '%s = %s' line per "
                            "value",
                            where, key, opt->arg);
        if (s_option_set (self, opt, zconfig_value (item), where, &touched[opt - s_options], err))
            return -1;
        self->sources[opt - s_options] = ZH_SOURCE_FILE;
    }
    return 0;
}

static int
s_apply_file (zh_config_t *self, const char *path, zh_error_t *err)
{
    struct stat info;
    if (stat (path, &info) != 0 || access (path, R_OK) != 0)
        return s_usage (err, 0, "config file '%.100s': %s", path, strerror (errno));
    if (S_ISDIR (info.st_mode))
        return s_usage (err, 0, "config file '%.100s': is a directory", path);
    if (info.st_size == 0) return 0; //  zconfig refuses an empty file; it sets nothing
    //  zconfig_load leaks its zfile_t when the text is not valid ZPL
    //  (czmq 4.2), so read the file ourselves and parse the chunk.
    zchunk_t *text = zchunk_slurp (path, CONFIG_FILE_MAX + 1);
    if (!text || zchunk_size (text) > CONFIG_FILE_MAX) {
        zchunk_destroy (&text);
        return s_usage (err, 0, "config file '%.100s': cannot read it whole (over %d bytes?)", path,
                        CONFIG_FILE_MAX);
    }
    int lines[ZPL_ITEMS_MAX];
    size_t line_count =
        s_item_lines ((const char *)zchunk_data (text), zchunk_size (text), lines, ZPL_ITEMS_MAX);
    zconfig_t *root = zconfig_chunk_load (text);
    zchunk_destroy (&text);
    if (!root)
        return s_usage (err, 0, "config file '%.100s': not valid ZPL (zconfig logs the line)",
                        path);
    int rc = s_apply_tree (self, root, path, lines, line_count, err);
    zconfig_destroy (&root);
    return rc;
}

//  The value of NAME in envp, like getenv; NULL if unset or empty (CF-2)
static const char *
s_env_lookup (char **envp, const char *name)
{
    size_t length = strlen (name);
    for (; envp && *envp; envp++)
        if (strncmp (*envp, name, length) == 0 && (*envp)[length] == '=')
            return (*envp)[length + 1] ? *envp + length + 1 : NULL;
    return NULL;
}

//  A comma-separated endpoint list from one variable
static int
s_apply_env_list (zh_config_t *self, const option_t *opt, const char *value, bool *touched,
                  zh_error_t *err)
{
    char *copy = strdup (value);
    int rc = 0;
    char *item = copy;
    while (rc == 0) {
        char *comma = strchr (item, ',');
        if (comma) *comma = '\0';
        if (*item == '\0') {
            char shown[EXCERPT_MAX];
            rc = s_usage (err, 0, "%s: empty endpoint in %s", opt->env,
                          s_excerpt (value, shown, sizeof shown));
        } else
            rc = s_option_set (self, opt, item, opt->env, touched, err);
        if (!comma) break;
        item = comma + 1;
    }
    free (copy);
    return rc;
}

static int
s_apply_env (zh_config_t *self, char **envp, zh_error_t *err)
{
    bool touched[OPTION_COUNT] = {false};
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const option_t *opt = &s_options[i];
        const char *value = opt->env ? s_env_lookup (envp, opt->env) : NULL;
        int rc = 0;
        if (!value) continue;
        if (opt->kind == KIND_ENDPOINTS)
            rc = s_apply_env_list (self, opt, value, &touched[i], err);
        else
            rc = s_option_set (self, opt, value, opt->env, &touched[i], err);
        if (rc) return rc;
        self->sources[i] = ZH_SOURCE_ENV;
    }
    return 0;
}

//  One flag of the command line, with its value (NULL for KIND_FLAG)
typedef struct {
    const option_t *opt;
    const char *value;
} flag_t;

//  Check the shape of argv (known flags, values present, no positional
//  arguments) before any value is used, so that --config is known first.
static int
s_scan_flags (int argc, char **argv, flag_t *flags, size_t *count, zh_error_t *err)
{
    char shown[EXCERPT_MAX];
    *count = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || streq (arg, "--") || streq (arg, "-"))
            return s_usage (err, 0, "unexpected argument %s (only flags are taken; see --help)",
                            s_excerpt (arg, shown, sizeof shown));
        const char *name = arg + 2;
        const char *equals = strchr (name, '=');
        size_t length = equals ? (size_t)(equals - name) : strlen (name);
        const option_t *opt = arg[1] == '-' ? s_option_find (name, length) : NULL;
        if (!opt || !(opt->from & FROM_FLAG))
            return s_usage (err, 0, "unknown flag '%.*s' (see --help)",
                            (int)(equals ? (size_t)(equals - arg) : strlen (arg)), arg);
        const char *value = NULL;
        if (opt->kind == KIND_FLAG) {
            if (equals)
                return s_usage (err, 0, "--%s takes no value, got %s", opt->name,
                                s_excerpt (equals + 1, shown, sizeof shown));
        } else if (equals)
            value = equals + 1;
        else if (i + 1 < argc && strncmp (argv[i + 1], "--", 2) != 0)
            value = argv[++i];
        else
            return s_usage (err, 0, "--%s: missing value (--%s %s)", opt->name, opt->name,
                            opt->arg);
        flags[(*count)++] = (flag_t){opt, value};
    }
    return 0;
}

static int
s_apply_flags (zh_config_t *self, flag_t *flags, size_t count, zh_error_t *err)
{
    bool touched[OPTION_COUNT] = {false};
    for (size_t i = 0; i < count; i++) {
        const option_t *opt = flags[i].opt;
        char where[64];
        snprintf (where, sizeof where, "--%s", opt->name);
        if (s_option_set (self, opt, flags[i].value, where, &touched[opt - s_options], err))
            return -1;
        self->sources[opt - s_options] = ZH_SOURCE_FLAG;
    }
    return 0;
}

//  The config file named by the last --config, else by ZHOST_CONFIG
static const char *
s_config_path (flag_t *flags, size_t count, char **envp)
{
    const char *path = NULL;
    for (size_t i = 0; i < count; i++)
        if (streq (flags[i].opt->name, "config")) path = flags[i].value;
    return path ? path : s_env_lookup (envp, "ZHOST_CONFIG");
}

int
zh_config_load (zh_config_t *self, int argc, char **argv, char **envp, zh_error_t *err)
{
    assert (self);
    zh_error_clear (err);
    flag_t *flags = (flag_t *)calloc (argc > 0 ? (size_t)argc : 1, sizeof (flag_t));
    assert (flags);
    size_t count;
    int rc = s_scan_flags (argc, argv, flags, &count, err);
    const char *path = rc == 0 ? s_config_path (flags, count, envp) : NULL;
    if (rc == 0 && path && *path) rc = s_apply_file (self, path, err);
    if (rc == 0) rc = s_apply_env (self, envp, err);
    if (rc == 0) rc = s_apply_flags (self, flags, count, err);
    free (flags);
    return rc;
}

//  --------------------------------------------------------------------------
//  --help, generated from the table

static void
s_help_option (FILE *out, const option_t *opt)
{
    fprintf (out, "  --%s%s%s\n", opt->name, opt->arg ? " " : "", opt->arg ? opt->arg : "");
    fprintf (out, "      %s\n", opt->help);
    if (opt->kind == KIND_FLAG) return;
    const char *defval = opt->defnote ? opt->defnote : opt->defval ? opt->defval : "none";
    if (opt->env)
        fprintf (out, "      env %s, default %s\n", opt->env, defval);
    else
        fprintf (out, "      no environment variable, default %s\n", defval);
}

void
zh_config_help (FILE *out, const char *program)
{
    const char *name = program ? program : "zhost-broker";
    fprintf (out, "Usage: %s [OPTION]...\n", name);
    fprintf (out, "The zhost broker: spawns this machine's procs and routes their messages.\n\n");
    fprintf (out, "Options (--flag value or --flag=value):\n");
    for (size_t i = 0; i < OPTION_COUNT; i++)
        s_help_option (out, &s_options[i]);
    fprintf (out,
             "\nDURATION is a whole number with a unit: 500ms, 30s, 2m, 1h (or 0).\n"
             "SIZE is bytes, or a whole number with K, M, G (powers of 1024) or KiB, MiB, GiB.\n"
             "\nFlags win over ZHOST_* variables, which win over the --config file, which wins\n"
             "over defaults. A list (frontend, advertise, spawn) takes all its values from\n"
             "the highest source that sets it. The config file is ZPL: one `key = value`\n"
             "line per setting, keys named like the flags, a list key repeated:\n"
             "    heartbeat = 2s\n"
             "    frontend = \"tcp://*:7100\"\n"
             "    spawn = \"worker=python3 worker.py --id 1\"\n"
             "    spawn = \"trainer=./trainer\"\n");
}

//  --------------------------------------------------------------------------
//  zh_config_print: the effective configuration as ZPL

//  Print `key = "value"` (or 'value'); -1 if zconfig could not read it back
static int
s_print_value (FILE *out, const char *key, const char *value)
{
    char quote = strchr (value, '"') ? '\'' : '"';
    if (strchr (value, quote) || strpbrk (value, "\r\n") ||
        strlen (key) + strlen (value) + 5 > ZPL_LINE_MAX)
        return -1;
    fprintf (out, "%s = %c%s%c\n", key, quote, value, quote);
    return 0;
}

static void
s_print_unwritable (FILE *out, const char *key)
{
    fprintf (out,
             "#   %s: value not shown: ZPL cannot hold it (line break, both quote "
             "characters, or over %d bytes)\n",
             key, ZPL_LINE_MAX);
}

//  A shell word written with backslashes and without the character
//  `avoid`; false if the word holds it or a line break.
static bool
s_shell_quote (zchunk_t *text, const char *word, char avoid)
{
    if (*word == '\0') {
        zchunk_extend (text, avoid == '"' ? "''" : "\"\"", 2);
        return true;
    }
    for (const char *c = word; *c; c++) {
        if (*c == avoid || *c == '\n' || *c == '\r') return false;
        if (!isalnum ((unsigned char)*c) && !strchr ("_-./:=@%+,^", *c))
            zchunk_extend (text, "\\", 1);
        zchunk_extend (text, c, 1);
    }
    return true;
}

//  A spawn whose command holds both quote characters: write its words
//  again without one of them, e.g. `python3 -c 'print("x")'` becomes
//  `python3 -c print\(\"x\"\)`, which splits into the same words.
static char *
s_spawn_rewrite (const zh_spawn_spec_t *spawn, char avoid)
{
    char **words = zh_shell_split (spawn->command, NULL, NULL);
    if (!words || strchr (spawn->name, avoid)) {
        zh_argv_free (&words);
        return NULL;
    }
    zchunk_t *text = zchunk_new (spawn->name, strlen (spawn->name));
    zchunk_extend (text, "=", 1);
    bool ok = true;
    for (char **word = words; ok && *word; word++) {
        if (word != words) zchunk_extend (text, " ", 1);
        ok = s_shell_quote (text, *word, avoid);
    }
    char *result = ok ? strndup ((char *)zchunk_data (text), zchunk_size (text)) : NULL;
    zchunk_destroy (&text);
    zh_argv_free (&words);
    return result;
}

static void
s_print_spawn (FILE *out, const zh_spawn_spec_t *spawn)
{
    char *value = zsys_sprintf ("%s=%s", spawn->name, spawn->command);
    int rc = s_print_value (out, "spawn", value);
    for (const char *avoid = "\"'"; rc && *avoid; avoid++) {
        char *rewritten = s_spawn_rewrite (spawn, *avoid);
        if (rewritten) rc = s_print_value (out, "spawn", rewritten);
        free (rewritten);
    }
    if (rc) s_print_unwritable (out, "spawn");
    zstr_free (&value);
}

static void
s_print_option (const zh_config_t *self, const option_t *opt, FILE *out)
{
    char text[64];
    if (opt->kind == KIND_ENDPOINTS) {
        for (size_t i = 0; i < *COUNT_OF (self, opt); i++)
            if (s_print_value (out, opt->name, FIELD_OF (self, opt, char *const)[i]))
                s_print_unwritable (out, opt->name);
    } else if (opt->kind == KIND_SPAWNS) {
        for (size_t i = 0; i < *COUNT_OF (self, opt); i++)
            s_print_spawn (out, &FIELD_OF (self, opt, const zh_spawn_spec_t)[i]);
    } else if (opt->kind == KIND_STRING || opt->kind == KIND_CHOICE) {
        const char *value = *FIELD_OF (self, opt, char *const);
        if (value && s_print_value (out, opt->name, value)) s_print_unwritable (out, opt->name);
    } else if (opt->kind != KIND_FLAG)
        fprintf (out, "%s = %s\n", opt->name,
                 s_number_format (opt, *FIELD_OF (self, opt, const int64_t), text, sizeof text));
}

const char *
zh_source_name (zh_source_t source)
{
    static const char *names[] = {"default", "file", "env", "flag"};
    return source <= ZH_SOURCE_FLAG ? names[source] : "default";
}

void
zh_config_each (const zh_config_t *self, zh_config_setting_fn *fn, void *arg)
{
    char text[64];
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const option_t *opt = &s_options[i];
        zh_source_t source = (zh_source_t)self->sources[i];
        if (!(opt->from & FROM_FILE)) continue;
        if (opt->kind == KIND_ENDPOINTS || opt->kind == KIND_SPAWNS) {
            size_t n = *COUNT_OF (self, opt);
            if (n == 0) fn (arg, opt->name, "", source);
            for (size_t j = 0; j < n; j++) {
                if (opt->kind == KIND_ENDPOINTS) {
                    fn (arg, opt->name, FIELD_OF (self, opt, char *const)[j], source);
                    continue;
                }
                const zh_spawn_spec_t *spawn = &FIELD_OF (self, opt, const zh_spawn_spec_t)[j];
                char *value = zsys_sprintf ("%s=%s", spawn->name, spawn->command);
                fn (arg, opt->name, value ? value : "", source);
                zstr_free (&value);
            }
        } else if (opt->kind == KIND_STRING || opt->kind == KIND_CHOICE) {
            const char *value = *FIELD_OF (self, opt, char *const);
            fn (arg, opt->name, value ? value : "", source);
        } else if (opt->kind != KIND_FLAG)
            fn (arg, opt->name,
                s_number_format (opt, *FIELD_OF (self, opt, const int64_t), text, sizeof text),
                source);
    }
}

void
zh_config_print (const zh_config_t *self, FILE *out)
{
    assert (self);
    fprintf (out, "#   zhost-broker effective configuration (ZPL; keys are the flag names)\n");
    if (self->config_file && !strpbrk (self->config_file, "\r\n"))
        fprintf (out, "#   read from %s\n", self->config_file);
    for (size_t i = 0; i < OPTION_COUNT; i++)
        if (s_options[i].from & FROM_FILE) s_print_option (self, &s_options[i], out);
}

//  ---------------------------------------------------------------------
//  Reload (SIGHUP): what changed, and taking the reloadable part

static const char *s_reloadable[] = {"log-level", "curve-allow", "curve-admin", "curve-peers"};

bool
zh_config_reloadable (const char *key)
{
    for (size_t i = 0; i < sizeof s_reloadable / sizeof s_reloadable[0]; i++)
        if (strcmp (key, s_reloadable[i]) == 0) return true;
    return false;
}

typedef struct {
    const char *key; //  the option (static text)
    char *value;     //  its values joined by ", "
} s_setting_t;

typedef struct {
    s_setting_t items[ZH_CONFIG_OPTIONS_MAX]; //  one per option, in order
    size_t count;                             //  items used
} s_settings_t;

static void
s_collect (void *arg, const char *key, const char *value, zh_source_t source)
{
    (void)source;
    s_settings_t *all = (s_settings_t *)arg;
    if (all->count && strcmp (all->items[all->count - 1].key, key) == 0) {
        char *joined = zsys_sprintf ("%s, %s", all->items[all->count - 1].value, value);
        if (joined) {
            zstr_free (&all->items[all->count - 1].value);
            all->items[all->count - 1].value = joined;
        }
        return;
    }
    if (all->count == ZH_CONFIG_OPTIONS_MAX) return;
    all->items[all->count].key = key;
    all->items[all->count].value = strdup (value);
    all->count++;
}

static void
s_settings_free (s_settings_t *all)
{
    for (size_t i = 0; i < all->count; i++)
        free (all->items[i].value);
}

void
zh_config_diff (const zh_config_t *self, const zh_config_t *fresh, zh_config_change_fn *fn,
                void *arg)
{
    s_settings_t *was = (s_settings_t *)calloc (1, sizeof (s_settings_t));
    s_settings_t *now = (s_settings_t *)calloc (1, sizeof (s_settings_t));
    if (was && now) {
        zh_config_each (self, s_collect, was);
        zh_config_each (fresh, s_collect, now);
        //  Both walk the same table in the same order.
        for (size_t i = 0; i < was->count && i < now->count; i++) {
            const char *a = was->items[i].value ? was->items[i].value : "";
            const char *b = now->items[i].value ? now->items[i].value : "";
            if (strcmp (a, b) != 0)
                fn (arg, was->items[i].key, a, b, zh_config_reloadable (was->items[i].key));
        }
    }
    if (was) s_settings_free (was);
    if (now) s_settings_free (now);
    free (was);
    free (now);
}

int
zh_config_adopt (zh_config_t *self, zh_config_t *fresh, const char *key)
{
    if (!zh_config_reloadable (key)) return -1;
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const option_t *opt = &s_options[i];
        if (strcmp (opt->name, key) != 0) continue;
        char **mine = FIELD_OF (self, opt, char *);
        char **theirs = FIELD_OF (fresh, opt, char *);
        char *swap = *mine;
        *mine = *theirs;
        *theirs = swap;
        uint8_t source = self->sources[i];
        self->sources[i] = fresh->sources[i];
        fresh->sources[i] = source;
        return 0;
    }
    return -1;
}
