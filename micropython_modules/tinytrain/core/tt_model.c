/*
 * Model file reader: every offset, size, shape and index is checked here,
 * once, so the kernels can trust the records.
 */
#include <string.h>
#include "tt_model_check.h"

#define MAX_SHIFT 62u
#define BIAS_LIMIT ((int64_t)1 << 30)
/* int64 gradient sums of int32 gradients times |w| <= 127 or |x - zero| <= 255
   stay below 2^63 with fewer than 2^23 terms. */
#define MAX_INT64_TERMS ((uint64_t)1 << 23)

typedef tt_checker checker;

static int is_finite_nonneg(float f) {
    return f == f && f >= 0.0f && f <= 3.0e38f;
}

/* [off, off + n * elem) inside the blob, aligned to `align`. */
static int blob_ok(const checker *c, uint32_t off, uint64_t n, uint32_t elem, uint32_t align) {
    return off != TT_NO_OFFSET && off % align == 0 && (uint64_t)off + n * elem <= c->h->blob_size;
}

/* [off, off + n) inside the persistent part of the arena, aligned. */
static int persist_ok(const checker *c, uint32_t off, uint64_t n, uint32_t align) {
    return off != TT_NO_OFFSET && off % align == 0 && (uint64_t)off + n <= c->h->persist_size;
}

static tt_status check_header(tt_model *m, const uint8_t *buf, size_t len, tt_error *err) {
    const tt_header_rec *h = (const tt_header_rec *)(const void *)buf;
    uint64_t end;
    if (!buf || len < TT_HEADER_SIZE) {
        return tt_fail(err, TT_E_TRUNCATED, "model is %u bytes, shorter than the %u-byte header",
                       (unsigned)(buf ? len : 0), TT_HEADER_SIZE);
    }
    if ((uintptr_t)buf % 4u) {
        return tt_fail(err, TT_E_ALIGN, "model buffer is not 4-byte aligned (copy it into a bytearray)");
    }
    if (h->magic[0] != TT_MAGIC0 || h->magic[1] != TT_MAGIC1 || h->magic[2] != TT_MAGIC2 ||
        h->magic[3] != TT_MAGIC3) {
        return tt_fail(err, TT_E_MAGIC, "not a tinytrain model (magic is not TTRN)");
    }
    if (h->version_major != TT_VERSION_MAJOR) {
        return tt_fail(err, TT_E_VERSION, "model format version %u.%u, this core reads %u.x",
                       h->version_major, h->version_minor, TT_VERSION_MAJOR);
    }
    if (h->file_size < TT_HEADER_SIZE || h->file_size > len) {
        return tt_fail(err, TT_E_TRUNCATED, "header says %u bytes, buffer has %u", h->file_size,
                       (unsigned)len);
    }
    if (h->file_size != len) {
        return tt_fail(err, TT_E_HEADER, "file_size %u, but %u bytes given (trailing bytes)", h->file_size,
                       (unsigned)len);
    }
    if (tt_crc32(0, buf + 16, h->file_size - 16u) != h->crc32) {
        return tt_fail(err, TT_E_CRC, "CRC mismatch: model file is damaged");
    }
    if (h->header_size != TT_HEADER_SIZE) {
        return tt_fail(err, TT_E_HEADER, "header_size %u, expected %u", h->header_size, TT_HEADER_SIZE);
    }
#define SECTION(name, off, n, elem)                                                              \
    end = (uint64_t)(off) + (uint64_t)(n) * (elem);                                              \
    if ((off) < TT_HEADER_SIZE || (off) % 4u || end > h->file_size) {                            \
        return tt_fail(err, TT_E_SECTION, name " section [%u, +%u) lies outside the file of %u", \
                       (unsigned)(off), (unsigned)((uint64_t)(n) * (elem)), h->file_size);      \
    }
    SECTION("tensor", h->tensors_off, h->n_tensors, sizeof(tt_tensor_rec));
    SECTION("layer", h->layers_off, h->n_layers, sizeof(tt_layer_rec));
    SECTION("op", h->ops_off, h->n_ops, sizeof(tt_op_rec));
    SECTION("blob", h->blob_off, h->blob_size, 1u);
#undef SECTION
    if (h->n_tensors == 0 || h->n_tensors >= TT_NONE || h->n_layers == 0 || h->n_layers >= TT_NONE) {
        return tt_fail(err, TT_E_HEADER, "counts out of range: %u tensors, %u layers", h->n_tensors,
                       h->n_layers);
    }
    if (h->n_fwd_ops == 0 || h->n_fwd_ops > h->n_ops) {
        return tt_fail(err, TT_E_HEADER, "%u forward ops of %u", h->n_fwd_ops, h->n_ops);
    }
    if (h->input_tensor >= h->n_tensors || h->logits_tensor >= h->n_tensors) {
        return tt_fail(err, TT_E_HEADER, "input tensor %u or logits tensor %u not among %u",
                       h->input_tensor, h->logits_tensor, h->n_tensors);
    }
    if (h->input_tensor == h->logits_tensor) {
        /* the logits outlive the forward pass; the input's bytes do not */
        return tt_fail(err, TT_E_HEADER, "logits_tensor %u is the input tensor", h->logits_tensor);
    }
    if (h->loss_kind > TT_LOSS_MSE) {
        return tt_fail(err, TT_E_HEADER, "unknown loss kind %u", h->loss_kind);
    }
    if (h->persist_size > h->arena_size) {
        return tt_fail(err, TT_E_HEADER, "persistent size %u exceeds arena size %u", h->persist_size,
                       h->arena_size);
    }
    if (!is_finite_nonneg(h->lr)) {
        return tt_fail(err, TT_E_HEADER, "learning rate is negative or not finite");
    }
    m->base = buf;
    m->size = h->file_size;
    m->hdr = h;
    m->tensors = (const tt_tensor_rec *)(const void *)(buf + h->tensors_off);
    m->layers = (const tt_layer_rec *)(const void *)(buf + h->layers_off);
    m->ops = (const tt_op_rec *)(const void *)(buf + h->ops_off);
    m->blob = buf + h->blob_off;
    return TT_OK;
}

static tt_status check_tensors(const checker *c) {
    const tt_header_rec *h = c->h;
    for (uint32_t i = 0; i < h->n_tensors; i++) {
        const tt_tensor_rec *t = &c->m->tensors[i];
        uint64_t n = (uint64_t)t->h * t->w * t->c, want;
        if (t->kind < TT_T_ACT || t->kind > TT_T_SAVED) {
            return tt_fail(c->err, TT_E_TENSOR, "tensor %u: unknown kind %u", i, t->kind);
        }
        if (n == 0) {
            return tt_fail(c->err, TT_E_TENSOR, "tensor %u: empty shape", i);
        }
        want = t->kind == TT_T_GRAD ? 4u + 2u * n : t->kind == TT_T_MASK ? (n + 7u) / 8u : n;
        if (t->size != want) {
            return tt_fail(c->err, TT_E_TENSOR, "tensor %u: size %u, its shape needs %u", i, t->size,
                           (unsigned)want);
        }
        if (t->flags & ~TT_TF_STREAMED) {
            return tt_fail(c->err, TT_E_TENSOR, "tensor %u: unknown flags", i);
        }
        if (t->flags & TT_TF_STREAMED) {
            /* no storage: only a fused op's kernels see it, through its ring or row */
            if (t->kind != TT_T_ACT || i == h->input_tensor || i == h->logits_tensor ||
                t->arena_off != TT_NO_OFFSET) {
                return tt_fail(c->err, TT_E_TENSOR, "tensor %u: a streamed tensor must be an inner activation "
                               "without arena storage", i);
            }
        }
        /* Stored tensors, the input among them, lie in the working part of
           the arena, after the trained parameters. */
        if (!(t->flags & TT_TF_STREAMED) &&
            (t->arena_off % 4u || (uint64_t)t->arena_off + t->size > h->arena_size ||
             t->arena_off < h->persist_size)) {
            return tt_fail(c->err, TT_E_ARENA, "tensor %u: [%u, +%u) outside the arena's working part [%u, %u)",
                           i, t->arena_off, t->size, h->persist_size, h->arena_size);
        }
        if (t->kind == TT_T_ACT || t->kind == TT_T_SAVED) {
            if (t->zero < -128 || t->zero > 127 || !(t->scale > 0.0f) || !is_finite_nonneg(t->scale)) {
                return tt_fail(c->err, TT_E_QUANT, "tensor %u: scale or zero point out of range", i);
            }
        }
    }
    /* The input slot: a stored activation (above: past the trained
       parameters), which the caller writes between steps. */
    if (c->m->tensors[h->input_tensor].kind != TT_T_ACT) {
        return tt_fail(c->err, TT_E_TENSOR, "input tensor %u is not an activation", h->input_tensor);
    }
    return TT_OK;
}

static tt_status check_requant_arrays(const checker *c, uint32_t li, const tt_layer_rec *L, uint32_t n) {
    const int32_t *mult = TT_BLOB(c->m, int32_t, L->mult_off);
    const int8_t *shift = TT_BLOB(c->m, int8_t, L->shift_off);
    for (uint32_t i = 0; i < n; i++) {
        if (mult[i] < 0 || shift[i] < 1 || (uint32_t)shift[i] > MAX_SHIFT) {
            return tt_fail(c->err, TT_E_QUANT, "layer %u channel %u: multiplier %d shift %d out of range",
                           li, i, mult[i], shift[i]);
        }
    }
    return TT_OK;
}

/* The trained channels come first, both parts ascending, together a permutation. */
static tt_status check_perm(const checker *c, uint32_t li, const tt_layer_rec *L, uint32_t n) {
    const uint16_t *p;
    uint32_t a, b, na = L->n_train;
    if (L->perm_off == TT_NO_OFFSET) {
        return L->n_train ? tt_fail(c->err, TT_E_PERM, "layer %u: trained channels without a channel order", li)
                          : TT_OK;
    }
    if (!blob_ok(c, L->perm_off, n, 2u, 2u)) {
        return tt_fail(c->err, TT_E_BLOB, "layer %u: channel order outside the blob", li);
    }
    p = TT_BLOB(c->m, uint16_t, L->perm_off);
    for (uint32_t i = 0; i < n; i++) {
        if (p[i] >= n || (i != 0 && i != na && p[i] <= p[i - 1])) {
            return tt_fail(c->err, TT_E_PERM, "layer %u: channel order entry %u invalid", li, i);
        }
    }
    /* Two ascending runs are disjoint iff merging them never meets a tie. */
    for (a = 0, b = na; a < na && b < n;) {
        if (p[a] == p[b]) {
            return tt_fail(c->err, TT_E_PERM, "layer %u: channel %u listed twice", li, p[a]);
        }
        if (p[a] < p[b]) {
            a++;
        } else {
            b++;
        }
    }
    return TT_OK;
}

static tt_status check_conv(const checker *c, uint32_t li, const tt_layer_rec *L) {
    const tt_tensor_rec *in = &c->m->tensors[L->in], *out = &c->m->tensors[L->out];
    int dw = L->kind == TT_L_DWCONV;
    uint32_t cin = in->c, cout = out->c, kk = (uint32_t)L->kh * L->kw;
    uint64_t per_out = dw ? kk : (uint64_t)kk * cin, nw = cout * per_out;
    uint32_t perm_n = dw ? cout : cin, wmax;
    int64_t bmax = 0;
    tt_status s;
    if (!L->kh || !L->kw || !L->stride || L->pad_top >= L->kh || L->pad_left >= L->kw) {
        return tt_fail(c->err, TT_E_LAYER, "layer %u: kernel %ux%u stride %u pad %u,%u invalid", li,
                       L->kh, L->kw, L->stride, L->pad_top, L->pad_left);
    }
    if (dw && cin != cout) {
        return tt_fail(c->err, TT_E_SHAPE, "layer %u: depthwise with %u in and %u out channels", li, cin, cout);
    }
    /* Every output window must start inside the padded input. */
    if ((uint32_t)(out->h - 1) * L->stride >= (uint32_t)in->h + L->pad_top ||
        (uint32_t)(out->w - 1) * L->stride >= (uint32_t)in->w + L->pad_left) {
        return tt_fail(c->err, TT_E_SHAPE, "layer %u: output %ux%u does not follow from input %ux%u", li,
                       out->h, out->w, in->h, in->w);
    }
    if (!blob_ok(c, L->w_off, nw, 1u, 1u) || !blob_ok(c, L->b_off, cout, 4u, 4u) ||
        !blob_ok(c, L->mult_off, cout, 4u, 4u) || !blob_ok(c, L->shift_off, cout, 1u, 1u)) {
        return tt_fail(c->err, TT_E_BLOB, "layer %u: weights, biases or multipliers outside the blob", li);
    }
    if ((s = check_requant_arrays(c, li, L, cout)) != TT_OK) {
        return s;
    }
    if (L->n_train > perm_n) {
        return tt_fail(c->err, TT_E_LAYER, "layer %u: %u trained channels of %u", li, L->n_train, perm_n);
    }
    if ((s = check_perm(c, li, L, perm_n)) != TT_OK) {
        return s;
    }
    /* int16 bias changes (format 2.2) belong to trained biases only */
    if ((L->flags & TT_LF_BIAS16) && !(L->flags & TT_LF_TRAIN_BIAS)) {
        return tt_fail(c->err, TT_E_LAYER, "layer %u: int16 bias changes without trained biases", li);
    }
    /* int32 accumulators cannot overflow: |b| + 255 * 127 * terms < 2^31,
       which holds for the values checked here: weights in [-127, 127] (the
       update clamps trained ones there too), trained biases within +-2^30
       (where their update saturates) from the start, or (TT_LF_BIAS16) the
       file's bias plus an int16 change. */
    for (uint64_t i = 0; i < nw; i++) {
        if (TT_BLOB(c->m, int8_t, L->w_off)[i] < -127) {
            return tt_fail(c->err, TT_E_QUANT, "layer %u: weight %u is -128, weights lie in [-127, 127]", li,
                           (unsigned)i);
        }
    }
    for (uint32_t i = 0; i < cout; i++) {
        int64_t b = TT_BLOB(c->m, int32_t, L->b_off)[i];
        b = b < 0 ? -b : b;
        if ((L->flags & TT_LF_TRAIN_BIAS) && b > BIAS_LIMIT) {
            return tt_fail(c->err, TT_E_QUANT, "layer %u: trained bias %u beyond +-2^30", li, i);
        }
        bmax = b > bmax ? b : bmax;
    }
    if (L->flags & TT_LF_BIAS16) {
        bmax += 32768; /* the change saturates at the int16 limits */
    } else if (L->flags & TT_LF_TRAIN_BIAS) {
        bmax = BIAS_LIMIT; /* trained biases saturate there */
    }
    wmax = 255u * 127u;
    if (bmax + (int64_t)wmax * per_out >= ((int64_t)1 << 31)) {
        return tt_fail(c->err, TT_E_LAYER, "layer %u: %u terms per output could overflow int32", li,
                       (unsigned)per_out);
    }
    if (L->gscale_off != TT_NO_OFFSET) {
        if (!blob_ok(c, L->gscale_off, cout, 4u, 4u) || !(L->wscale_max > 0.0f) ||
            !is_finite_nonneg(L->wscale_max)) {
            return tt_fail(c->err, TT_E_BLOB, "layer %u: gradient scales invalid", li);
        }
        for (uint32_t i = 0; i < cout; i++) {
            if (TT_BLOB(c->m, int32_t, L->gscale_off)[i] < 0) {
                return tt_fail(c->err, TT_E_QUANT, "layer %u: negative gradient scale", li);
            }
        }
    }
    if ((L->gscale_off != TT_NO_OFFSET && (dw ? kk : (uint64_t)kk * cout) >= MAX_INT64_TERMS) ||
        ((L->n_train || (L->flags & TT_LF_TRAIN_BIAS)) && (uint64_t)out->h * out->w >= MAX_INT64_TERMS)) {
        return tt_fail(c->err, TT_E_SHAPE, "layer %u: gradient sums of this size could overflow int64", li);
    }
    if (L->wscale_off != TT_NO_OFFSET && !blob_ok(c, L->wscale_off, cout, 4u, 4u)) {
        return tt_fail(c->err, TT_E_BLOB, "layer %u: weight scales outside the blob", li);
    }
    if (!is_finite_nonneg(L->lr_scale)) {
        return tt_fail(c->err, TT_E_LAYER, "layer %u: learning-rate scale invalid", li);
    }
    if (L->n_train) {
        uint64_t nt = (uint64_t)L->n_train * kk * (dw ? 1u : cout);
        if (!persist_ok(c, L->w_arena, nt, 1u) ||
            ((L->flags & TT_LF_RESIDUE) && !persist_ok(c, L->wres_arena, nt, 1u))) {
            return tt_fail(c->err, TT_E_ARENA, "layer %u: trained weights outside the parameter area", li);
        }
        if (!blob_ok(c, L->qas_w_off, cout, 4u, 4u)) {
            return tt_fail(c->err, TT_E_BLOB, "layer %u: weight update factors outside the blob", li);
        }
        for (uint32_t i = 0; i < cout; i++) {
            if (!is_finite_nonneg(TT_BLOB(c->m, float, L->qas_w_off)[i])) {
                return tt_fail(c->err, TT_E_QUANT, "layer %u: weight update factor %u not finite", li, i);
            }
        }
    }
    if (L->flags & TT_LF_TRAIN_BIAS) {
        if (!persist_ok(c, L->b_arena, (uint64_t)tt_bias_bytes(L) * cout, tt_bias_bytes(L))) {
            return tt_fail(c->err, TT_E_ARENA, "layer %u: trained biases outside the parameter area", li);
        }
        if (!blob_ok(c, L->qas_b_off, cout, 4u, 4u)) {
            return tt_fail(c->err, TT_E_BLOB, "layer %u: bias update factors outside the blob", li);
        }
        for (uint32_t i = 0; i < cout; i++) {
            if (!is_finite_nonneg(TT_BLOB(c->m, float, L->qas_b_off)[i])) {
                return tt_fail(c->err, TT_E_QUANT, "layer %u: bias update factor %u not finite", li, i);
            }
        }
    }
    return TT_OK;
}

/* A windowed pool or an activation table (format 2.1): what tt_pool2d.c and
   tt_lut.c assume. No parameters to train. */
static tt_status check_pool_or_table(const checker *c, uint32_t li, const tt_layer_rec *L) {
    const tt_tensor_rec *in = &c->m->tensors[L->in], *out = &c->m->tensors[L->out];
    const uint32_t kk = (uint32_t)L->kh * L->kw;
    if (L->n_train || (L->flags & TT_LF_TRAIN_BIAS)) {
        return tt_fail(c->err, TT_E_LAYER, "layer %u: this kind has no parameters to train", li);
    }
    if (L->kind == TT_L_LUT) {
        if (in->h != out->h || in->w != out->w || in->c != out->c) {
            return tt_fail(c->err, TT_E_SHAPE, "layer %u: table output must be shaped like its input", li);
        }
        if (!blob_ok(c, L->w_off, 256u, 1u, 1u) || !blob_ok(c, L->gscale_off, 256u, 2u, 2u)) {
            return tt_fail(c->err, TT_E_BLOB, "layer %u: table or derivative table outside the blob", li);
        }
        if (L->shift > MAX_SHIFT) {
            return tt_fail(c->err, TT_E_QUANT, "layer %u: derivative shift %u above %u", li, L->shift, MAX_SHIFT);
        }
        return TT_OK;
    }
    /* Every window starts inside the padded input and, the padding being
       below the kernel, covers at least one input element. */
    if (!L->kh || !L->kw || !L->stride || L->pad_top >= L->kh || L->pad_left >= L->kw) {
        return tt_fail(c->err, TT_E_LAYER, "layer %u: kernel %ux%u stride %u pad %u,%u invalid", li, L->kh,
                       L->kw, L->stride, L->pad_top, L->pad_left);
    }
    if (out->c != in->c || (uint32_t)(out->h - 1) * L->stride >= (uint32_t)in->h + L->pad_top ||
        (uint32_t)(out->w - 1) * L->stride >= (uint32_t)in->w + L->pad_left) {
        return tt_fail(c->err, TT_E_SHAPE, "layer %u: output %ux%ux%u does not follow from input %ux%ux%u", li,
                       out->h, out->w, out->c, in->h, in->w, in->c);
    }
    if (L->kind == TT_L_MAXPOOL) {
        /* the output is the largest input element itself */
        if (in->zero != out->zero || memcmp(&in->scale, &out->scale, sizeof(float)) != 0) {
            return tt_fail(c->err, TT_E_QUANT, "layer %u: max pool input and output quantised differently", li);
        }
        return TT_OK;
    }
    /* average: one requantisation per count of covered elements, sums of at
       most 255 * 255 * 255 < 2^31 */
    if (!blob_ok(c, L->mult_off, kk, 4u, 4u) || !blob_ok(c, L->shift_off, kk, 1u, 1u)) {
        return tt_fail(c->err, TT_E_BLOB, "layer %u: pool multipliers outside the blob", li);
    }
    return check_requant_arrays(c, li, L, kk);
}

/* A layer's tensor field: an activation (or none where the kind has no such
   operand); the output is never the network input, which is the caller's. */
static tt_status check_layer_ref(const checker *c, uint32_t li, const char *field, uint32_t id, int used,
                                 int written) {
    if (!used) {
        return id == TT_NONE ? TT_OK
                             : tt_fail(c->err, TT_E_LAYER, "layer %u %s: %u, this kind takes none", li, field, id);
    }
    if (id >= c->h->n_tensors) {
        return tt_fail(c->err, TT_E_LAYER, "layer %u %s: tensor %u not among %u", li, field, id, c->h->n_tensors);
    }
    if (c->m->tensors[id].kind != TT_T_ACT) {
        return tt_fail(c->err, TT_E_LAYER, "layer %u %s: tensor %u is a %s, needs an activation", li, field, id,
                       tt_tensor_kind_name[c->m->tensors[id].kind]);
    }
    if (written && id == c->h->input_tensor) {
        return tt_fail(c->err, TT_E_LAYER, "layer %u %s: tensor %u is the network input", li, field, id);
    }
    return TT_OK;
}

static tt_status check_layers(const checker *c) {
    for (uint32_t li = 0; li < c->h->n_layers; li++) {
        const tt_layer_rec *L = &c->m->layers[li];
        const tt_tensor_rec *in, *out;
        tt_status s;
        if ((s = check_layer_ref(c, li, "in", L->in, 1, 0)) != TT_OK ||
            (s = check_layer_ref(c, li, "in2", L->in2, L->kind == TT_L_ADD, 0)) != TT_OK ||
            (s = check_layer_ref(c, li, "out", L->out, 1, 1)) != TT_OK) {
            return s;
        }
        if (L->in == L->out || L->in2 == L->out) {
            return tt_fail(c->err, TT_E_LAYER, "layer %u out: tensor %u is also its input", li, L->out);
        }
        if (L->act_min < -128 || L->act_max > 127 || L->act_min > L->act_max) {
            return tt_fail(c->err, TT_E_QUANT, "layer %u: clamp [%d, %d] invalid", li, L->act_min, L->act_max);
        }
        if (L->flags & ~(TT_LF_TRAIN_BIAS | TT_LF_RESIDUE | (L->kind == TT_L_AVGPOOL2D ? TT_LF_COUNT_PAD : 0u) |
                         (L->kind == TT_L_CONV || L->kind == TT_L_DWCONV ? TT_LF_BIAS16 : 0u))) {
            return tt_fail(c->err, TT_E_LAYER, "layer %u: unknown flags", li);
        }
        in = &c->m->tensors[L->in];
        out = &c->m->tensors[L->out];
        switch (L->kind) {
        case TT_L_CONV:
        case TT_L_DWCONV:
            if ((s = check_conv(c, li, L)) != TT_OK) {
                return s;
            }
            break;
        case TT_L_ADD:
            if (!tt_same_numel(c, L->in, L->out) ||
                !tt_same_numel(c, L->in2, L->out) || in->c != out->c || c->m->tensors[L->in2].c != out->c) {
                return tt_fail(c->err, TT_E_SHAPE, "layer %u: add operands do not match its output", li);
            }
            /* same requantisation checks as the pool */
            /* fall through */
        case TT_L_AVGPOOL:
            if (L->kind == TT_L_AVGPOOL && (out->h != 1 || out->w != 1 || out->c != in->c)) {
                return tt_fail(c->err, TT_E_SHAPE, "layer %u: pool output must be 1x1x%u", li, in->c);
            }
            /* the pool sums h*w terms of |x - zero| <= 255 in int32 */
            if (L->kind == TT_L_AVGPOOL && 255u * (uint64_t)in->h * in->w >= ((uint64_t)1 << 31)) {
                return tt_fail(c->err, TT_E_SHAPE, "layer %u: pool of %ux%u could overflow int32", li, in->h, in->w);
            }
            if (L->mult_a < 0 || L->mult_b < 0 || L->shift < 1 || L->shift > MAX_SHIFT) {
                return tt_fail(c->err, TT_E_QUANT, "layer %u: multiplier or shift out of range", li);
            }
            if (L->n_train || (L->flags & TT_LF_TRAIN_BIAS)) {
                return tt_fail(c->err, TT_E_LAYER, "layer %u: this kind has no parameters to train", li);
            }
            break;
        case TT_L_MAXPOOL:
        case TT_L_AVGPOOL2D:
        case TT_L_LUT:
            if ((s = check_pool_or_table(c, li, L)) != TT_OK) {
                return s;
            }
            break;
        default:
            return tt_fail(c->err, TT_E_LAYER, "layer %u: unknown kind %u", li, L->kind);
        }
    }
    return TT_OK;
}

/* Trained parameter range k (0 weights, 1 their fraction bits, 2 biases) of a
   layer the reader has checked; length 0 where the layer has none. */
static uint32_t param_range(const checker *c, const tt_layer_rec *L, uint32_t k, uint32_t *off) {
    const uint32_t cout = c->m->tensors[L->out].c, kk = (uint32_t)L->kh * L->kw;
    const uint32_t nw = L->n_train * kk * (L->kind == TT_L_DWCONV ? 1u : cout);
    if (L->kind > TT_L_DWCONV) {
        return 0;
    }
    *off = k == 0 ? L->w_arena : k == 1 ? L->wres_arena : L->b_arena;
    return k == 0 ? nw : k == 1 ? ((L->flags & TT_LF_RESIDUE) ? nw : 0u)
                               : ((L->flags & TT_LF_TRAIN_BIAS) ? tt_bias_bytes(L) * cout : 0u);
}

/* Each trained parameter has its own bytes: one update must not change another. */
static tt_status check_params_disjoint(const checker *c) {
    static const char *const what[3] = {"weights", "weight fractions", "biases"};
    const uint32_t n = c->h->n_layers;
    for (uint32_t a = 0; a < 3u * n; a++) {
        uint32_t oa = 0, na = param_range(c, &c->m->layers[a / 3u], a % 3u, &oa);
        for (uint32_t b = a + 1u; b < 3u * n && na; b++) {
            uint32_t ob = 0, nb = param_range(c, &c->m->layers[b / 3u], b % 3u, &ob);
            if (tt_overlap(oa, na, ob, nb)) {
                return tt_fail(c->err, TT_E_ARENA, "layer %u trained %s and layer %u trained %s share bytes",
                               a / 3u, what[a % 3u], b / 3u, what[b % 3u]);
            }
        }
    }
    return TT_OK;
}

static tt_status check_output(const checker *c) {
    const tt_header_rec *h = c->h;
    const tt_tensor_rec *lg = &c->m->tensors[h->logits_tensor];
    if (lg->kind != TT_T_ACT || tt_numel(lg) != h->n_classes || h->n_classes == 0) {
        return tt_fail(c->err, TT_E_HEADER, "logits tensor has %u elements, header says %u classes",
                       tt_numel(lg), h->n_classes);
    }
    if (h->loss_kind == TT_LOSS_SOFTMAX_CE) {
        const uint32_t *tab;
        if (!blob_ok(c, h->exp_table_off, 256u, 4u, 4u)) {
            return tt_fail(c->err, TT_E_BLOB, "softmax table outside the blob");
        }
        tab = TT_BLOB(c->m, uint32_t, h->exp_table_off);
        if (tab[0] == 0) {
            return tt_fail(c->err, TT_E_QUANT, "softmax table starts at zero");
        }
        for (uint32_t i = 0; i < 256u; i++) {
            if (tab[i] > (1u << 30) || (i && tab[i] > tab[i - 1])) {
                return tt_fail(c->err, TT_E_QUANT, "softmax table entry %u out of range", i);
            }
        }
    }
    return TT_OK;
}

tt_status tt_model_open(tt_model *m, const uint8_t *buf, size_t len, tt_error *err) {
    checker c;
    tt_status s;
    memset(m, 0, sizeof(*m));
    if ((s = check_header(m, buf, len, err)) != TT_OK) {
        memset(m, 0, sizeof(*m));
        return s;
    }
    c.m = m;
    c.h = m->hdr;
    c.err = err;
    if ((s = check_tensors(&c)) != TT_OK || (s = check_layers(&c)) != TT_OK ||
        (s = check_params_disjoint(&c)) != TT_OK ||
        (s = tt_check_ops(&c)) != TT_OK || (s = check_output(&c)) != TT_OK) {
        memset(m, 0, sizeof(*m));
        return s;
    }
    tt_model_find_cut(m);
    if (err) {
        err->code = TT_OK;
        err->msg[0] = 0;
    }
    return TT_OK;
}

tt_status tt_model_check_params(const tt_model *m, const uint8_t *params, size_t len, tt_error *err) {
    checker c;
    if (!m || !m->hdr) {
        return tt_fail(err, TT_E_STATE, "model was not opened");
    }
    if (!params || len != m->hdr->persist_size) {
        return tt_fail(err, TT_E_PARAMS, "%u bytes of parameters, this model trains %u",
                       (unsigned)(params ? len : 0), m->hdr->persist_size);
    }
    c.m = m;
    c.h = m->hdr;
    c.err = err;
    /* The same value ranges as the model's own initial parameters (the
       int32 accumulator bounds rest on them); training keeps them there. */
    for (uint32_t li = 0; li < m->hdr->n_layers; li++) {
        const tt_layer_rec *L = &m->layers[li];
        uint32_t off = 0, n = param_range(&c, L, 0, &off);
        for (uint32_t i = 0; i < n; i++) {
            if ((int8_t)params[off + i] < -127) {
                return tt_fail(err, TT_E_PARAMS, "layer %u: trained weight %u is -128", li, i);
            }
        }
        /* an int16 change (TT_LF_BIAS16) is within its limits by its type */
        n = (L->flags & TT_LF_BIAS16) ? 0u : param_range(&c, L, 2, &off) / 4u;
        for (uint32_t i = 0; i < n; i++) {
            int32_t b;
            memcpy(&b, params + off + 4u * i, 4);
            if (b < -BIAS_LIMIT || b > BIAS_LIMIT) {
                return tt_fail(err, TT_E_PARAMS, "layer %u: trained bias %u beyond +-2^30", li, i);
            }
        }
    }
    return TT_OK;
}

uint32_t tt_model_arena_bytes(const tt_model *m) {
    return m->hdr ? m->hdr->arena_size : 0u;
}

uint32_t tt_model_input_bytes(const tt_model *m) {
    return m->hdr ? tt_numel(&m->tensors[m->hdr->input_tensor]) : 0u;
}
