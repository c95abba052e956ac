/*  zh_error.c — error values shared by every zhost module (see zh_error.h).

    Where it sits: the leaf of common/. Parsers fill a zh_error_t; the
    broker copies code and reason into the ERROR frame it answers with.
*/
#include "zh_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *rc_names[ZH_RC_COUNT] = {
    [ZH_RC_NO_SUCH_PROC] = "NO_SUCH_PROC",
    [ZH_RC_PROC_GONE] = "PROC_GONE",
    [ZH_RC_NO_SUCH_ACTOR] = "NO_SUCH_ACTOR",
    [ZH_RC_NO_SUCH_PORT] = "NO_SUCH_PORT",
    [ZH_RC_HOST_UNREACHABLE] = "HOST_UNREACHABLE",
    [ZH_RC_TTL_EXPIRED] = "TTL_EXPIRED",
    [ZH_RC_OVERLOADED] = "OVERLOADED",
    [ZH_RC_TOO_LARGE] = "TOO_LARGE",
    [ZH_RC_SHUTDOWN] = "SHUTDOWN",
};

static void
s_fill (zh_error_t *err, int code, const char *word, int exit_status, size_t offset,
        const char *format, va_list args)
{
    err->code = code;
    err->word = word;
    err->exit_status = exit_status;
    err->offset = offset;
    vsnprintf (err->reason, sizeof err->reason, format, args);
}

int
zh_error_set (zh_error_t *err, int code, size_t offset, const char *format, ...)
{
    if (err) {
        va_list args;
        va_start (args, format);
        s_fill (err, code, NULL, 0, offset, format, args);
        va_end (args);
    }
    return -1;
}

int
zh_error_word (zh_error_t *err, const char *word, const char *format, ...)
{
    if (err) {
        va_list args;
        va_start (args, format);
        s_fill (err, 0, word, 0, 0, format, args);
        va_end (args);
    }
    return -1;
}

int
zh_error_exit (zh_error_t *err, int exit_status, const char *format, ...)
{
    if (err) {
        va_list args;
        va_start (args, format);
        s_fill (err, 0, NULL, exit_status, 0, format, args);
        va_end (args);
    }
    return -1;
}

void
zh_error_clear (zh_error_t *err)
{
    if (err) {
        err->code = ZH_ERR_NONE;
        err->word = NULL;
        err->exit_status = 0;
        err->offset = 0;
        err->reason[0] = '\0';
    }
}

const char *
zh_error_code_name (int code)
{
    switch (code) {
    case ZH_ERR_NONE:
        return "ok";
    case ZH_ERR_MALFORMED:
        return "malformed";
    case ZH_ERR_HANDSHAKE:
        return "handshake required";
    case ZH_ERR_FORBIDDEN:
        return "forbidden";
    case ZH_ERR_UNKNOWN_COMMAND:
        return "unknown command";
    case ZH_ERR_TOO_LARGE:
        return "too large";
    case ZH_ERR_VERSION:
        return "unsupported version";
    case ZH_ERR_SHUTTING_DOWN:
        return "shutting down";
    default:
        return "unknown";
    }
}

const char *
zh_rc_name (zh_rc_t rc)
{
    if ((int)rc < 0 || rc >= ZH_RC_COUNT) return NULL;
    return rc_names[rc];
}

int
zh_rc_parse (const char *text, size_t len)
{
    for (int i = 0; i < ZH_RC_COUNT; i++)
        if (strlen (rc_names[i]) == len && memcmp (rc_names[i], text, len) == 0) return i;
    return -1;
}
