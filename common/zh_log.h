/*  zh_log.h — one line per event, key=value fields, to stderr.

    Where it sits: every module logs through here. A line looks like

        2026-11-28T03:22:29.123Z info attach proc=remote<3xZ9kLmN> lang=python

    i.e. timestamp (UTC, ms), level, event name, then key=value fields.
    Values holding spaces, quotes, '=' or control characters are written
    double-quoted with C escapes, so every line splits cleanly on spaces.
*/
#ifndef ZH_LOG_H
#define ZH_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ZH_LOG_DEBUG = 0,
    ZH_LOG_INFO,
    ZH_LOG_WARN,
    ZH_LOG_ERROR,
    ZH_LOG_OFF
} zh_log_level_t;

//  Parse "debug" | "info" | "warn" | "error" | "off". 0 or -1.
int zh_log_level_parse (const char *text, zh_log_level_t *level);
const char *zh_log_level_name (zh_log_level_t level);

void zh_log_set_level (zh_log_level_t level);
zh_log_level_t zh_log_get_level (void);
static inline bool zh_log_enabled (zh_log_level_t level);

//  Redirect output (default stderr); tests pass a memstream.
void zh_log_set_stream (FILE *stream);

//  Log one event. fields is a printf format for the key=value part,
//  e.g. zh_log (ZH_LOG_INFO, "attach", "proc=%s pid=%d", id, pid).
//  Use zh_log_quote for values that may need quoting.
void zh_log (zh_log_level_t level, const char *event, const char *fields, ...)
    __attribute__ ((format (printf, 3, 4)));

//  Write value (len bytes, not NUL-terminated) into buf as a log value:
//  as it is when safe, else double-quoted with escapes; always
//  NUL-terminated, truncated with "…" marker if buf is too small. Returns
//  buf so it can be used inline in a zh_log argument list.
const char *zh_log_quote (char *buf, size_t size, const char *value, size_t len);

#define zh_debug(event, ...)                                                                       \
    do {                                                                                           \
        if (zh_log_enabled (ZH_LOG_DEBUG)) zh_log (ZH_LOG_DEBUG, event, __VA_ARGS__);              \
    } while (0)
#define zh_info(event, ...) zh_log (ZH_LOG_INFO, event, __VA_ARGS__)
#define zh_warn(event, ...) zh_log (ZH_LOG_WARN, event, __VA_ARGS__)
#define zh_err(event, ...)  zh_log (ZH_LOG_ERROR, event, __VA_ARGS__)

extern zh_log_level_t zh_log_level_current;
static inline bool
zh_log_enabled (zh_log_level_t level)
{
    return level >= zh_log_level_current;
}

#ifdef __cplusplus
}
#endif
#endif
