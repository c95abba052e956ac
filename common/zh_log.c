/*  zh_log.c — one line per event, key=value fields, to stderr (zh_log.h).

    Where it sits: the leaf every module logs through (broker state
    changes, refused frames, proc output forwarded by the process
    manager). A line is

        2026-11-28T03:22:29.123Z info attach proc=remote<3xZ9kLmN> lang=python

    built whole in a stack buffer and written with one fwrite, so lines
    from several threads never interleave (stdio locks the stream per
    call). A line longer than the buffer is cut and ends in "…".
*/
#include "zh_log.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define LINE_MAX_BYTES 4096
#define ELLIPSIS       "\xe2\x80\xa6" //  "…" in UTF-8
#define ELLIPSIS_LEN   3

zh_log_level_t zh_log_level_current = ZH_LOG_INFO;
static FILE *log_stream = NULL; //  NULL means stderr

static const char *level_names[] = {
    [ZH_LOG_DEBUG] = "debug", [ZH_LOG_INFO] = "info", [ZH_LOG_WARN] = "warn",
    [ZH_LOG_ERROR] = "error", [ZH_LOG_OFF] = "off",
};

//  ---------------------------------------------------------------------
//  Levels and stream

int
zh_log_level_parse (const char *text, zh_log_level_t *level)
{
    if (text == NULL) return -1;
    for (int i = ZH_LOG_DEBUG; i <= ZH_LOG_OFF; i++)
        if (strcmp (text, level_names[i]) == 0) {
            *level = (zh_log_level_t)i;
            return 0;
        }
    return -1;
}

const char *
zh_log_level_name (zh_log_level_t level)
{
    if ((int)level < ZH_LOG_DEBUG || level > ZH_LOG_OFF) return "unknown";
    return level_names[level];
}

void
zh_log_set_level (zh_log_level_t level)
{
    zh_log_level_current = level;
}

zh_log_level_t
zh_log_get_level (void)
{
    return zh_log_level_current;
}

void
zh_log_set_stream (FILE *stream)
{
    log_stream = stream;
}

//  ---------------------------------------------------------------------
//  Lines

//  "2026-11-28T03:22:29.123Z" into buf; returns its length.
static size_t
format_timestamp (char *buf, size_t size)
{
    struct timespec now;
    struct tm utc;
    clock_gettime (CLOCK_REALTIME, &now);
    gmtime_r (&now.tv_sec, &utc);
    size_t n = strftime (buf, size, "%Y-%m-%dT%H:%M:%S", &utc);
    int m = snprintf (buf + n, size - n, ".%03ldZ", now.tv_nsec / 1000000L);
    return n + (size_t)m;
}

void
zh_log (zh_log_level_t level, const char *event, const char *fields, ...)
{
    if ((int)level < ZH_LOG_DEBUG || level >= ZH_LOG_OFF || !zh_log_enabled (level)) return;

    //  Room for the line, the newline, and "…" if it has to be cut.
    char line[LINE_MAX_BYTES];
    size_t body_max = sizeof line - ELLIPSIS_LEN - 1;
    size_t len = format_timestamp (line, body_max);
    int n =
        snprintf (line + len, body_max - len, " %s %s", level_names[level], event ? event : "-");
    len += (size_t)n;

    if (len < body_max && fields && *fields) {
        line[len++] = ' ';
        va_list args;
        va_start (args, fields);
        n = vsnprintf (line + len, body_max - len, fields, args);
        va_end (args);
        if (n > 0)
            len += (size_t)n;
        else
            len--; //  no fields after all: drop the space
    }
    if (len >= body_max) {
        //  Cut: snprintf left body_max - 1 bytes and a NUL; mark the cut.
        len = body_max - 1;
        memcpy (line + len, ELLIPSIS, ELLIPSIS_LEN);
        len += ELLIPSIS_LEN;
    }
    line[len++] = '\n';

    FILE *stream = log_stream ? log_stream : stderr;
    fwrite (line, 1, len, stream);
    fflush (stream);
}

//  ---------------------------------------------------------------------
//  Quoting values

//  A byte that may stand in an unquoted value: printable ASCII other than
//  space, '"', '=' and '\'.
static bool
is_plain (unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '=' && c != '\\';
}

//  The text of byte c inside a quoted value, into out (>= 5 bytes);
//  returns its length.
static size_t
escape_byte (unsigned char c, char *out)
{
    switch (c) {
    case '"':
        memcpy (out, "\\\"", 2);
        return 2;
    case '\\':
        memcpy (out, "\\\\", 2);
        return 2;
    case '\n':
        memcpy (out, "\\n", 2);
        return 2;
    case '\r':
        memcpy (out, "\\r", 2);
        return 2;
    case '\t':
        memcpy (out, "\\t", 2);
        return 2;
    default:
        if (c >= 0x20 && c < 0x7f) {
            out[0] = (char)c;
            return 1;
        }
        snprintf (out, 5, "\\x%02x", c);
        return 4;
    }
}

static bool
needs_quotes (const char *value, size_t len)
{
    if (len == 0) return true;
    for (size_t i = 0; i < len; i++)
        if (!is_plain ((unsigned char)value[i])) return true;
    return false;
}

//  Bytes needed to write the whole value (without the NUL).
static size_t
quoted_length (const char *value, size_t len, bool quoted)
{
    if (!quoted) return len;
    size_t total = 2;
    char unit[5];
    for (size_t i = 0; i < len; i++)
        total += escape_byte ((unsigned char)value[i], unit);
    return total;
}

const char *
zh_log_quote (char *buf, size_t size, const char *value, size_t len)
{
    if (buf == NULL || size == 0) return "";
    if (value == NULL) len = 0;
    bool quoted = needs_quotes (value, len);
    bool cut = quoted_length (value, len, quoted) + 1 > size;

    //  Bytes available for the value's own text: the rest is for quotes,
    //  the "…" marker and the NUL.
    size_t overhead = 1 + (quoted ? 2 : 0) + (cut ? ELLIPSIS_LEN : 0);
    if (size < overhead) {
        buf[0] = '\0';
        return buf;
    }
    size_t room = size - overhead;
    size_t out = 0;
    if (quoted) buf[out++] = '"';
    for (size_t i = 0; i < len; i++) {
        char unit[5];
        size_t n = quoted ? escape_byte ((unsigned char)value[i], unit) : 1;
        if (!quoted) unit[0] = value[i];
        if (out - (quoted ? 1 : 0) + n > room) break;
        memcpy (buf + out, unit, n);
        out += n;
    }
    if (cut) {
        memcpy (buf + out, ELLIPSIS, ELLIPSIS_LEN);
        out += ELLIPSIS_LEN;
    }
    if (quoted) buf[out++] = '"';
    buf[out] = '\0';
    return buf;
}
