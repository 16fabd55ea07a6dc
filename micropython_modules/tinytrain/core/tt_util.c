#include <stdarg.h>
#include "tt_internal.h"

uint32_t tt_crc32(uint32_t crc, const uint8_t *p, size_t n) {
    /* Bitwise: 1 KB of table would cost more flash than the check costs time. */
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

static size_t put_str(char *out, size_t pos, size_t cap, const char *s) {
    while (*s && pos + 1 < cap) {
        out[pos++] = *s++;
    }
    return pos;
}

static size_t put_uint(char *out, size_t pos, size_t cap, uint32_t v, int neg) {
    char tmp[12];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    if (neg && pos + 1 < cap) {
        out[pos++] = '-';
    }
    while (n && pos + 1 < cap) {
        out[pos++] = tmp[--n];
    }
    return pos;
}

tt_status tt_fail(tt_error *err, tt_status code, const char *fmt, ...) {
    va_list ap;
    size_t pos = 0;
    if (!err) {
        return code;
    }
    err->code = code;
    va_start(ap, fmt);
    for (const char *f = fmt; *f && pos + 1 < TT_ERR_MSG_LEN; f++) {
        if (*f != '%' || !f[1]) {
            err->msg[pos++] = *f;
            continue;
        }
        f++;
        if (*f == 'u') {
            pos = put_uint(err->msg, pos, TT_ERR_MSG_LEN, va_arg(ap, unsigned), 0);
        } else if (*f == 'd') {
            int v = va_arg(ap, int);
            pos = put_uint(err->msg, pos, TT_ERR_MSG_LEN, v < 0 ? 0u - (unsigned)v : (unsigned)v, v < 0);
        } else if (*f == 's') {
            pos = put_str(err->msg, pos, TT_ERR_MSG_LEN, va_arg(ap, const char *));
        } else {
            err->msg[pos++] = *f;
        }
    }
    va_end(ap);
    err->msg[pos] = 0;
    return code;
}

const char *tt_status_name(tt_status s) {
    static const char *const names[] = {
        "ok", "truncated", "bad magic", "version", "crc", "alignment", "header",
        "section", "tensor", "layer", "shape", "blob", "quantisation", "permutation",
        "op", "arena", "argument", "state", "params", "no memory",
    };
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}
