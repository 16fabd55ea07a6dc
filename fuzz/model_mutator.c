/*
 * Structure-aware mutator for model files. Bit flips rarely reach the
 * reader's later rules (a flip fails the CRC, a fixed CRC still leaves a
 * random tensor id or offset that an early check refuses), so most
 * mutations rewrite one whole field with a value near a boundary: a tensor
 * id to none, the input, the logits, another tensor or one past the last;
 * an offset to the arena's or blob's end, the parameter area's edge or
 * another record's offset; a shape, count, kind or float to its limits;
 * constant data to the values behind the overflow bounds. Then the file
 * size and CRC are made right again (mostly), so the mutation meets the
 * rules behind the checksum.
 */
#include <stddef.h>
#include <string.h>
#include "tt_core.h"

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

typedef struct {
    uint8_t *d;
    size_t size, max_size;
    uint32_t rng;
} mut;

static uint32_t rnd(mut *m) {
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 17;
    m->rng ^= m->rng << 5;
    return m->rng;
}

static uint32_t below(mut *m, uint32_t n) {
    return n ? rnd(m) % n : 0u;
}

static uint32_t get32(const mut *m, size_t off) {
    uint32_t v = 0;
    if (off + 4u <= m->size) {
        memcpy(&v, m->d + off, 4);
    }
    return v;
}

static uint16_t get16(const mut *m, size_t off) {
    uint16_t v = 0;
    if (off + 2u <= m->size) {
        memcpy(&v, m->d + off, 2);
    }
    return v;
}

static void put32(mut *m, size_t off, uint32_t v) {
    if (off + 4u <= m->size) {
        memcpy(m->d + off, &v, 4);
    }
}

static void put16(mut *m, size_t off, uint16_t v) {
    if (off + 2u <= m->size) {
        memcpy(m->d + off, &v, 2);
    }
}

static void put8(mut *m, size_t off, uint8_t v) {
    if (off < m->size) {
        m->d[off] = v;
    }
}

#define HDR(field) offsetof(tt_header_rec, field)
#define TREC(field) offsetof(tt_tensor_rec, field)
#define LREC(field) offsetof(tt_layer_rec, field)

/* File offset of record i of a section, or 0 when it is not inside the data. */
static size_t record(const mut *m, size_t count_at, size_t off_at, size_t rec_size, uint32_t i) {
    const uint32_t n = get32(m, count_at), off = get32(m, off_at);
    uint64_t at = (uint64_t)off + (uint64_t)i * rec_size;
    if (i >= n || at < TT_HEADER_SIZE || at + rec_size > m->size) {
        return 0;
    }
    return (size_t)at;
}

static size_t tensor_at(const mut *m, uint32_t i) {
    return record(m, HDR(n_tensors), HDR(tensors_off), sizeof(tt_tensor_rec), i);
}

static size_t layer_at(const mut *m, uint32_t i) {
    return record(m, HDR(n_layers), HDR(layers_off), sizeof(tt_layer_rec), i);
}

static size_t op_at(const mut *m, uint32_t i) {
    return record(m, HDR(n_ops), HDR(ops_off), sizeof(tt_op_rec), i);
}

/* A tensor id a role check must judge. */
static uint16_t pick_id(mut *m) {
    const uint32_t n = get32(m, HDR(n_tensors));
    switch (below(m, 7)) {
    case 0: return TT_NONE;
    case 1: return get16(m, HDR(input_tensor));
    case 2: return get16(m, HDR(logits_tensor));
    case 3: return (uint16_t)n;
    case 4: { /* the id another op slot holds: aliasing */
        size_t o = op_at(m, below(m, get32(m, HDR(n_ops))));
        return o ? get16(m, o + 4u + 2u * below(m, 6)) : TT_NONE;
    }
    default: return (uint16_t)below(m, n);
    }
}

/* An arena offset near a boundary of the plan. */
static uint32_t pick_arena_off(mut *m, uint32_t size) {
    const uint32_t arena = get32(m, HDR(arena_size)), persist = get32(m, HDR(persist_size));
    size_t other = tensor_at(m, below(m, get32(m, HDR(n_tensors))));
    uint32_t o = other ? get32(m, other + TREC(arena_off)) : 0u;
    switch (below(m, 9)) {
    case 0: return arena - size;
    case 1: return arena - size + 4u;
    case 2: return arena;
    case 3: return 0;
    case 4: return persist >= 4u ? persist - 4u : 0u;
    case 5: return o;
    case 6: return o + 4u;
    case 7: return TT_NO_OFFSET;
    default: return persist;
    }
}

/* A blob offset near the blob's end or shared with another field. */
static uint32_t pick_blob_off(mut *m, uint32_t elem) {
    const uint32_t blob = get32(m, HDR(blob_size));
    size_t L = layer_at(m, below(m, get32(m, HDR(n_layers))));
    switch (below(m, 6)) {
    case 0: return blob - elem;
    case 1: return blob;
    case 2: return TT_NO_OFFSET;
    case 3: return L ? get32(m, L + LREC(w_off) + 4u * below(m, 9)) : 0u;
    case 4: return (blob - elem * (1u + below(m, 64))) & ~3u;
    default: return below(m, blob + 1u) & ~3u;
    }
}

static uint32_t pick_float_bits(mut *m) {
    static const uint32_t bits[] = {0x7FC00000u, 0x7F800000u, 0xFF800000u, 0x00000000u, 0x80000000u,
                                    0xBF800000u, 0x7F7FFFFFu, 0x00000001u, 0x3F800000u};
    return bits[below(m, sizeof(bits) / sizeof(bits[0]))];
}

static uint32_t pick_int(mut *m) {
    static const uint32_t vals[] = {0u, 1u, 0xFFFFFFFFu, 0x7FFFFFFFu, 0x80000000u, 0x40000000u, 0x40000001u,
                                    0xC0000000u, 0xBFFFFFFFu, 62u, 63u, 0xFFFFu, 0x10000u};
    return vals[below(m, sizeof(vals) / sizeof(vals[0]))];
}

/* Keep the tensor's size consistent with its kind and shape, so the
   mutation gets past the size check to the rules behind it. */
static void fix_tensor_size(mut *m, size_t t) {
    const uint64_t n = (uint64_t)get16(m, t + TREC(h)) * get16(m, t + TREC(w)) * get16(m, t + TREC(c));
    const uint8_t kind = t + TREC(kind) < m->size ? m->d[t + TREC(kind)] : 0;
    const uint64_t size = kind == TT_T_GRAD ? 4u + 4u * n : kind == TT_T_MASK ? (n + 7u) / 8u : n;
    put32(m, t + TREC(size), (uint32_t)size);
}

static void mutate_tensor(mut *m) {
    const size_t t = tensor_at(m, below(m, get32(m, HDR(n_tensors))));
    static const size_t dims[] = {TREC(h), TREC(w), TREC(c)};
    if (!t) {
        return;
    }
    switch (below(m, 6)) {
    case 0:
    case 1:
        put32(m, t + TREC(arena_off), pick_arena_off(m, get32(m, t + TREC(size))));
        break;
    case 2: {
        const size_t d = t + dims[below(m, 3)];
        const uint16_t v = get16(m, d);
        static const int16_t deltas[] = {1, -1, 2, 0};
        put16(m, d, below(m, 4) == 0 ? (uint16_t)(below(m, 2) ? 0xFFFFu : 0u)
                                      : (uint16_t)(v + deltas[below(m, 4)]));
        fix_tensor_size(m, t);
        break;
    }
    case 3:
        put8(m, t + TREC(kind), (uint8_t)below(m, 6));
        fix_tensor_size(m, t);
        break;
    case 4:
        put8(m, t + TREC(flags), (uint8_t)below(m, 4));
        break;
    default:
        if (below(m, 2)) {
            put32(m, t + TREC(scale), pick_float_bits(m));
        } else {
            put32(m, t + TREC(zero), (uint32_t)(int32_t)((int32_t)below(m, 600) - 300));
        }
        break;
    }
}

static void mutate_layer(mut *m) {
    const size_t L = layer_at(m, below(m, get32(m, HDR(n_layers))));
    static const size_t blob_fields[] = {LREC(w_off), LREC(b_off), LREC(mult_off), LREC(shift_off),
                                         LREC(gscale_off), LREC(perm_off), LREC(qas_w_off),
                                         LREC(qas_b_off), LREC(wscale_off)};
    static const size_t arena_fields[] = {LREC(w_arena), LREC(wres_arena), LREC(b_arena)};
    static const size_t ids[] = {LREC(in), LREC(in2), LREC(out)};
    if (!L) {
        return;
    }
    switch (below(m, 8)) {
    case 0:
    case 1:
        put16(m, L + ids[below(m, 3)], pick_id(m));
        break;
    case 2:
        put32(m, L + blob_fields[below(m, 9)], pick_blob_off(m, 1u + 3u * below(m, 2)));
        break;
    case 3: {
        const uint32_t persist = get32(m, HDR(persist_size));
        size_t other = layer_at(m, below(m, get32(m, HDR(n_layers))));
        const uint32_t vals[] = {persist - 4u, persist, other ? get32(m, other + arena_fields[below(m, 3)]) : 0u,
                                 TT_NO_OFFSET, 0u};
        put32(m, L + arena_fields[below(m, 3)], vals[below(m, 5)]);
        break;
    }
    case 4: { /* one byte field: kind, kh, kw, stride, pads, flags */
        const size_t f = below(m, 7);
        const uint8_t v = m->d[L + f];
        const uint8_t vals[] = {0u, 1u, 2u, 4u, 255u, (uint8_t)(v + 1u), (uint8_t)(v - 1u),
                                (uint8_t)(v ^ TT_LF_BIAS16)}; /* for flags: the other bias width */
        put8(m, L + f, vals[below(m, 8)]);
        break;
    }
    case 5: {
        const uint16_t nt = get16(m, L + LREC(n_train));
        const uint16_t vals[] = {0u, (uint16_t)(nt + 1u), (uint16_t)(nt - 1u), 0xFFFFu};
        put16(m, L + LREC(n_train), vals[below(m, 4)]);
        break;
    }
    case 6: {
        const size_t f[] = {LREC(act_min), LREC(act_max)};
        const int16_t vals[] = {-129, -128, 127, 128, 0};
        put16(m, L + f[below(m, 2)], (uint16_t)vals[below(m, 5)]);
        break;
    }
    default: {
        const size_t f[] = {LREC(mult_a), LREC(mult_b), LREC(shift), LREC(wscale_max), LREC(lr_scale)};
        const uint32_t k = below(m, 5);
        put32(m, L + f[k], k >= 3u ? pick_float_bits(m) : pick_int(m));
        break;
    }
    }
}

static void mutate_op(mut *m) {
    const uint32_t n = get32(m, HDR(n_ops));
    const size_t o = op_at(m, below(m, n));
    if (!o) {
        return;
    }
    switch (below(m, 6)) {
    case 0:
        put8(m, o, (uint8_t)below(m, 7));
        break;
    case 1: {
        const uint32_t nl = get32(m, HDR(n_layers));
        const uint16_t vals[] = {TT_NONE, (uint16_t)nl, (uint16_t)below(m, nl)};
        put16(m, o + 2u, vals[below(m, 3)]);
        break;
    }
    case 2: { /* a copy of another op: a duplicate writer or reader */
        const size_t p = op_at(m, below(m, n));
        if (p) {
            memmove(m->d + o, m->d + p, sizeof(tt_op_rec));
        }
        break;
    }
    default:
        put16(m, o + 4u + 2u * below(m, 6), pick_id(m));
        break;
    }
}

static void mutate_header(mut *m) {
    switch (below(m, 6)) {
    case 0:
        put16(m, HDR(input_tensor) + 2u * below(m, 2), pick_id(m));
        break;
    case 1: {
        const size_t f[] = {HDR(n_tensors), HDR(n_layers), HDR(n_ops), HDR(n_fwd_ops)};
        const size_t at = f[below(m, 4)];
        put32(m, at, get32(m, at) + (below(m, 2) ? 1u : 0xFFFFFFFFu));
        break;
    }
    case 2: {
        const size_t at = below(m, 2) ? HDR(arena_size) : HDR(persist_size);
        const uint32_t vals[] = {get32(m, at) + 4u, get32(m, at) - 4u, get32(m, HDR(arena_size)),
                                 get32(m, HDR(persist_size)), 0u, 0xFFFFFFFCu};
        put32(m, at, vals[below(m, 6)]);
        break;
    }
    case 3:
        put32(m, HDR(lr), pick_float_bits(m));
        break;
    case 4: {
        const size_t f[] = {HDR(n_classes), HDR(loss_kind)};
        if (below(m, 2)) {
            put16(m, f[0], (uint16_t)(get16(m, f[0]) + (below(m, 2) ? 1u : 0xFFFFu)));
        } else {
            put8(m, f[1], (uint8_t)below(m, 3));
        }
        break;
    }
    default:
        put32(m, HDR(exp_table_off), pick_blob_off(m, 4u));
        break;
    }
}

/* Constant data at a field's offset: the values behind the overflow bounds. */
static void mutate_blob(mut *m) {
    const size_t L = layer_at(m, below(m, get32(m, HDR(n_layers))));
    const uint32_t blob_off = get32(m, HDR(blob_off));
    static const size_t f[] = {LREC(w_off), LREC(b_off), LREC(mult_off), LREC(shift_off), LREC(gscale_off),
                               LREC(perm_off), LREC(qas_w_off), LREC(qas_b_off)};
    size_t at;
    uint32_t k;
    if (!L) {
        return;
    }
    k = below(m, 8);
    at = (size_t)blob_off + get32(m, L + f[k]) + 4u * below(m, 4);
    switch (k) {
    case 0: /* weights of -128 */
        if (at < m->size) {
            memset(m->d + at, 0x80, m->size - at < 64u ? m->size - at : 64u);
        }
        break;
    case 3:
        put8(m, at, (uint8_t)pick_int(m));
        break;
    case 5:
        put16(m, at, (uint16_t)pick_int(m));
        break;
    case 6:
    case 7:
        put32(m, at, pick_float_bits(m));
        break;
    default:
        put32(m, at, pick_int(m));
        break;
    }
}

static void fix_size_and_crc(mut *m) {
    if (m->size < TT_HEADER_SIZE) {
        return;
    }
    if (below(m, 16)) {
        put32(m, HDR(file_size), (uint32_t)m->size);
    }
    if (below(m, 32)) {
        const uint32_t fs = get32(m, HDR(file_size));
        if (fs >= 16u && fs <= m->size) {
            put32(m, HDR(crc32), tt_crc32(0, m->d + 16, fs - 16u));
        }
    }
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    mut m;
    const uint32_t rounds = 1u + (seed >> 8) % 3u;
    m.d = data;
    m.size = size;
    m.max_size = max_size;
    m.rng = seed * 2654435761u + 1u;
    if (size < TT_HEADER_SIZE || memcmp(data, "TTRN", 4) != 0 || below(&m, 10) == 0) {
        m.size = LLVMFuzzerMutate(data, size, max_size);
        if (below(&m, 2)) {
            fix_size_and_crc(&m);
        }
        return m.size;
    }
    for (uint32_t r = 0; r < rounds; r++) {
        switch (below(&m, 12)) {
        case 0:
        case 1:
        case 2:
            mutate_op(&m);
            break;
        case 3:
        case 4:
            mutate_layer(&m);
            break;
        case 5:
        case 6:
            mutate_tensor(&m);
            break;
        case 7:
            mutate_header(&m);
            break;
        case 8:
            mutate_blob(&m);
            break;
        case 9: /* trailing bytes or a cut */
            if (below(&m, 2) && m.size + 4u <= max_size) {
                memset(m.d + m.size, 0, 4);
                m.size += 4u;
            } else if (m.size > TT_HEADER_SIZE + 4u) {
                m.size -= 4u;
            }
            break;
        default:
            m.size = LLVMFuzzerMutate(m.d, m.size, max_size);
            break;
        }
    }
    fix_size_and_crc(&m);
    return m.size;
}
