/*  fuzz_addr.c — libFuzzer target for the address parser (common/zh_addr.c).

    Where it sits: zh_addr_parse reads the dest and src of every SEND the
    broker receives, i.e. bytes from any peer. This target feeds it raw
    bytes (exactly size of them, no NUL after) and checks:

    - nothing crashes or reads past the input (ASan/UBSan);
    - a refusal is code 400 at an offset inside the input, with a reason;
    - ADDR-1: an accepted address prints back to exactly the input bytes,
      and so do an accepted id and an accepted uid58;
    - every span of a parsed address lies inside the input.

    The same bytes also go to zh_id_parse, zh_label_check,
    zh_endpoint_check and zh_uid58_decode. Any broken check aborts.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zh_addr.h"

static void
check (bool ok, const char *what)
{
    if (!ok) {
        fprintf (stderr, "fuzz_addr: %s\n", what);
        abort ();
    }
}

static void
check_refusal (const zh_error_t *err, size_t size)
{
    check (err->code == 400, "refusal code is not 400");
    check (err->offset <= size, "refusal offset past the input");
    check (err->reason[0] != '\0', "refusal without a reason");
}

static bool
span_inside (zh_span_t span, const char *text, size_t size)
{
    return span.len == 0 || (span.ptr >= text && span.ptr + span.len <= text + size);
}

static void
fuzz_address (const char *text, size_t size)
{
    zh_addr_t addr;
    zh_error_t err;
    zh_error_clear (&err);
    if (zh_addr_parse (&addr, text, size, &err) != 0) {
        check_refusal (&err, size);
        return;
    }
    char out[ZH_ADDR_MAX + 1];
    int n = zh_addr_format (&addr, out, sizeof out);
    check (n >= 0 && (size_t)n == size, "ADDR-1: format length differs from input");
    check (memcmp (out, text, size) == 0, "ADDR-1: format bytes differ from input");
    check (span_inside (addr.proc.text, text, size) && span_inside (addr.endpoint, text, size) &&
               span_inside (addr.actor.text, text, size),
           "span outside the input");
    check (zh_addr_equal (&addr, &addr) && zh_addr_same_proc (&addr, &addr),
           "address not equal to itself");
    check (zh_endpoint_check (addr.endpoint.ptr, addr.endpoint.len, NULL) == 0,
           "parsed endpoint fails zh_endpoint_check");
}

static void
fuzz_id (const char *text, size_t size)
{
    zh_id_t id;
    zh_error_t err;
    zh_error_clear (&err);
    if (zh_id_parse (&id, text, size, &err) != 0) {
        check_refusal (&err, size);
        return;
    }
    char label[ZH_LABEL_MAX + 1];
    check (id.label.len <= ZH_LABEL_MAX, "label longer than its bound");
    memcpy (label, id.label.ptr ? id.label.ptr : "", id.label.len);
    label[id.label.len] = '\0';
    char out[ZH_ID_MAX + 1];
    int n = zh_id_format (out, sizeof out, id.label.len ? label : NULL, id.has_uid, id.uid);
    check (n >= 0 && (size_t)n == size && memcmp (out, text, size) == 0,
           "ADDR-1: id does not print back to its input");
    if (id.label.len)
        check (zh_label_check (id.label.ptr, id.label.len, NULL) == 0,
               "parsed label fails zh_label_check");
}

static void
fuzz_uid58 (const char *text, size_t size)
{
    uint64_t value;
    zh_error_t err;
    zh_error_clear (&err);
    if (zh_uid58_decode (text, size, &value, &err) != 0) {
        check_refusal (&err, size);
        return;
    }
    char out[ZH_UID58_MAX + 1];
    size_t n = zh_uid58_encode (value, out);
    check (n == size && memcmp (out, text, size) == 0,
           "ADDR-1: uid58 does not print back to its input");
}

static void
fuzz_single_checks (const char *text, size_t size)
{
    zh_error_t err;
    zh_error_clear (&err);
    if (zh_endpoint_check (text, size, &err) != 0) check_refusal (&err, size);
    zh_error_clear (&err);
    if (zh_label_check (text, size, &err) != 0) check_refusal (&err, size);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    //  A heap copy of exactly size bytes: any read past it is an ASan error.
    char *text = malloc (size ? size : 1);
    if (text == NULL) return 0;
    if (size) memcpy (text, data, size);
    fuzz_address (text, size);
    fuzz_id (text, size);
    fuzz_uid58 (text, size);
    fuzz_single_checks (text, size);
    free (text);
    return 0;
}
