/*  zh_error.h — error values shared by every zhost module.

    Where it sits: every parser and codec in common/ reports failure through
    a zh_error_t, so that the broker can turn it into the ERROR frame of
    docs/protocol.md §7 (code + reason) and the log line that goes with it, and
    so that tests can assert on the code and on where the input went wrong.

    Vocabularies, each in a field of its own (never parsed back out of a
    reason sentence):
    - ZH_ERR_*: the numeric ERROR codes of ZHP/1 (docs/protocol.md §7,
      answered on a connection when a frame or command is refused): `code`;
    - the host agent's error words (§8: "INVALID_NAME", "SPAWN_FAILED",
      …): `word`;
    - the exit status a program should end with (1 start-up failure, 2
      usage or configuration error): `exit_status`;
    - zh_rc_t: the RETURN codes of §5 (written as strings in RETURN meta).
*/
#ifndef ZH_ERROR_H
#define ZH_ERROR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  ERROR codes (docs/protocol.md §7)
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

//  RETURN codes (docs/protocol.md §5); zh_rc_name gives the wire string.
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

//  A failure: a sentence that says what is wrong, e.g. "label: '_' at 0
//  must be a letter", and what kind of failure it is.
typedef struct {
    int code;                         //  the ZHP ERROR code it maps to (ZH_ERR_*), or 0
    const char *word;                 //  the agent error word (static string), or NULL
    int exit_status;                  //  the exit status it calls for, or 0
    size_t offset;                    //  byte offset in the input where it went wrong
    char reason[ZH_ERROR_REASON_MAX]; //  the sentence
} zh_error_t;

//  Fill err (if not NULL) with a ZHP ERROR code and return -1, so parsers
//  can write `return zh_error_set (err, ZH_ERR_MALFORMED, i, "…", …);`.
int zh_error_set (zh_error_t *err, int code, size_t offset, const char *format, ...)
    __attribute__ ((format (printf, 4, 5)));

//  Fill err with an agent error word (code 0) and return -1.
int zh_error_word (zh_error_t *err, const char *word, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

//  Fill err with an exit status (code 0) and return -1.
int zh_error_exit (zh_error_t *err, int exit_status, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

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
