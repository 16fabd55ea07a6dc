/*
 * The trained-parameter file (docs/format.md, "Trained-parameter file"):
 * "TTPS", u16 version 1, u16 0, u32 crc32 of the model file, u32 steps,
 * u32 n, the arena's first n (= persist_size) bytes, u32 crc32 of all before.
 * The one implementation: the MicroPython binding, the simulator and the
 * stream receiver all write and check the file through these functions.
 */
#include <string.h>
#include "tt_internal.h"

#define PARAMS_VERSION 1u

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void header_of(const tt_trainer *t, uint8_t *h) {
    memcpy(h, "TTPS", 4);
    h[4] = (uint8_t)PARAMS_VERSION;
    h[5] = h[6] = h[7] = 0;
    wr32(h + 8, t->model.hdr->crc32);
    wr32(h + 12, t->steps);
    wr32(h + 16, t->model.hdr->persist_size);
}

uint32_t tt_params_file_size(const tt_trainer *t) {
    return TT_PARAMS_OVERHEAD + t->model.hdr->persist_size;
}

size_t tt_params_file_read(const tt_trainer *t, uint32_t off, uint8_t *out, size_t len) {
    uint8_t h[TT_PARAMS_HEADER_BYTES], tail[4];
    const uint32_t n = t->model.hdr->persist_size, size = n + TT_PARAMS_OVERHEAD;
    size_t done = 0;
    header_of(t, h);
    if (off + len > size || off + len < off) { /* the rest of the file at most */
        len = off < size ? size - off : 0u;
    }
    if (off + len > TT_PARAMS_HEADER_BYTES + n) { /* the checksum is asked for */
        wr32(tail, tt_crc32(tt_crc32(0, h, TT_PARAMS_HEADER_BYTES), t->arena, n));
    }
    while (done < len) {
        const uint32_t at = off + (uint32_t)done;
        size_t k;
        if (at < TT_PARAMS_HEADER_BYTES) {
            k = TT_PARAMS_HEADER_BYTES - at;
            k = k < len - done ? k : len - done;
            memcpy(out + done, h + at, k);
        } else if (at < TT_PARAMS_HEADER_BYTES + n) {
            k = TT_PARAMS_HEADER_BYTES + n - at;
            k = k < len - done ? k : len - done;
            memcpy(out + done, t->arena + (at - TT_PARAMS_HEADER_BYTES), k);
        } else {
            k = len - done; /* within the last 4 bytes */
            memcpy(out + done, tail + (at - TT_PARAMS_HEADER_BYTES - n), k);
        }
        done += k;
    }
    return done;
}

tt_status tt_params_check(const uint8_t *b, size_t len, tt_error *err) {
    uint32_t version, n;
    if (len < TT_PARAMS_OVERHEAD || memcmp(b, "TTPS", 4) != 0) {
        return tt_fail(err, TT_E_PARAMS, "not a tinytrain parameter file");
    }
    version = (uint32_t)b[4] | (uint32_t)b[5] << 8;
    n = rd32(b + 16);
    if (version != PARAMS_VERSION) {
        return tt_fail(err, TT_E_PARAMS, "parameter file version %u, expected %u", version, PARAMS_VERSION);
    }
    if ((uint64_t)len != (uint64_t)n + TT_PARAMS_OVERHEAD) {
        return tt_fail(err, TT_E_PARAMS, "parameter file is %u bytes, its header says %u", (uint32_t)len,
                       (uint32_t)(n + TT_PARAMS_OVERHEAD));
    }
    if (tt_crc32(0, b, len - 4) != rd32(b + len - 4)) {
        return tt_fail(err, TT_E_PARAMS, "parameter file checksum mismatch: file is damaged");
    }
    return TT_OK;
}

tt_status tt_params_check_model(const uint8_t *b, size_t len, uint32_t model_crc, uint32_t param_bytes,
                                tt_error *err) {
    tt_status s = tt_params_check(b, len, err);
    if (s != TT_OK) {
        return s;
    }
    if (rd32(b + 8) != model_crc) {
        return tt_fail(err, TT_E_PARAMS, "these parameters belong to another model (model CRC differs)");
    }
    if (rd32(b + 16) != param_bytes) {
        return tt_fail(err, TT_E_PARAMS, "parameter file holds %u bytes, this model trains %u", rd32(b + 16),
                       param_bytes);
    }
    return TT_OK;
}

/* Ends err's message with suffix (cut to fit), so a range error says which
   bytes broke it: the same words come from the model file at open. */
static void append_to_message(tt_error *err, const char *suffix) {
    size_t pos = 0;
    if (!err) {
        return;
    }
    while (pos + 1 < TT_ERR_MSG_LEN && err->msg[pos]) {
        pos++;
    }
    while (pos + 1 < TT_ERR_MSG_LEN && *suffix) {
        err->msg[pos++] = *suffix++;
    }
    err->msg[pos] = 0;
}

tt_status tt_params_load(tt_trainer *t, const uint8_t *b, size_t len, tt_error *err) {
    const uint32_t n = t->model.hdr->persist_size;
    tt_status s = tt_params_check_model(b, len, t->model.hdr->crc32, n, err);
    if (s != TT_OK) {
        return s;
    }
    /* the file's CRC proves only that it is whole: its values must meet the
       ranges the model's own parameters were checked against at open */
    s = tt_model_check_params(&t->model, b + TT_PARAMS_HEADER_BYTES, n, err);
    if (s != TT_OK) {
        append_to_message(err, " in the parameter file");
        return s;
    }
    memcpy(t->arena, b + TT_PARAMS_HEADER_BYTES, n);
    t->steps = rd32(b + 12);
    return TT_OK;
}
