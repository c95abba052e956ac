/*  zh_error.h — error values shared by every zhost module.

    Where it sits: every parser and codec in common/ reports failure through
    a zh_error_t, so that the broker can turn it into the ERROR frame of
    PROTOCOL.md §7 (code + reason) and the log line that goes with it, and
    so that tests can assert on the code and on where the input went wrong.

    Two vocabularies live here:
    - ZH_ERR_*: the numeric ERROR codes of ZHP/1 §7 (answered on a
      connection when a frame or command is refused);
    - zh_rc_t: the RETURN codes of §5 (written as strings in RETURN meta).
*/
#ifndef ZH_ERROR_H
#define ZH_ERROR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  ERROR codes (PROTOCOL.md §7)
enum {
    ZH_ERR_NONE = 0,
    ZH_ERR_MALFORMED = 400,
    ZH_ERR_HANDSHAKE = 401,
    ZH_ERR_FORBIDDEN = 403,
    ZH_ERR_UNKNOWN_COMMAND = 404,
    ZH_ERR_TOO_LARGE = 413,
    ZH_ERR_VERSION = 426,
    ZH_ERR_SHUTTING_DOWN = 503
};

//  RETURN codes (PROTOCOL.md §5); zh_rc_name gives the wire string.
typedef enum {
    ZH_RC_NO_SUCH_PROC = 0,
    ZH_RC_PROC_GONE,
    ZH_RC_NO_SUCH_ACTOR,
    ZH_RC_NO_SUCH_PORT,
    ZH_RC_HOST_UNREACHABLE,
    ZH_RC_TTL_EXPIRED,
    ZH_RC_OVERLOADED,
    ZH_RC_TOO_LARGE,
    ZH_RC_SHUTDOWN,
    ZH_RC_COUNT
} zh_rc_t;

#define ZH_ERROR_REASON_MAX 200

//  A refused input: the ERROR code it maps to, the byte offset in the
//  input where it went wrong (0 when not meaningful) and a sentence that
//  says what is wrong, e.g. "label: '_' at 0 must be a letter".
typedef struct {
    int code;
    size_t offset;
    char reason[ZH_ERROR_REASON_MAX];
} zh_error_t;

//  Fill err (if not NULL) and return -1, so parsers can write
//  `return zh_error_set (err, 400, i, "…", …);`.
int zh_error_set (zh_error_t *err, int code, size_t offset, const char *format, ...)
    __attribute__ ((format (printf, 4, 5)));

//  Clear err to "no error".
void zh_error_clear (zh_error_t *err);

//  Short name of an ERROR code ("malformed", "handshake required", …);
//  "unknown" for a code not in §7.
const char *zh_error_code_name (int code);

//  Wire string of a RETURN code ("NO_SUCH_PROC", …); NULL if out of range.
const char *zh_rc_name (zh_rc_t rc);

//  Parse a RETURN code string (not NUL-terminated); -1 if unknown.
int zh_rc_parse (const char *text, size_t len);

#ifdef __cplusplus
}
#endif
#endif
