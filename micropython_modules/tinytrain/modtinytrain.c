/*
 * tinytrain for MicroPython: the `tinytrain` module and its Trainer class.
 *
 * The same API as the host simulator (host_tools/tinytrain/trainer.py):
 *
 *     t = tinytrain.Trainer(model, lr=None, arena_size=None)
 *     loss = t.step(x, label)           # float; label: int (MSE: int8 targets)
 *     t.step(x, label, out=buf)         # writes the loss to buf[0], returns None
 *     cls = t.predict(x); q = t.logits(x); acc = t.evaluate(xs, labels)
 *     buf = t.input()                   # the input slot in the arena (int8 memoryview)
 *     t.step(label); t.predict()        # on the slot as filled (refill before each call)
 *     f = t.features(x, out=None)       # the frozen prefix's output (the cut), kept by the caller
 *     t.step_features(f, label); t.predict_features(f); t.feature_bytes()
 *     t.params(); t.save(path); t.load(path or the file's bytes); t.info()
 *     t.set_lr(lr)                      # the rate of the following steps (a schedule)
 *
 * Built two ways from this one file:
 *  - into the firmware (user C module): the arena is one static .bss array of
 *    MICROPY_TINYTRAIN_ARENA_SIZE bytes. Only one Trainer owns it at a time:
 *    each new Trainer takes it over and every older Trainer then raises
 *    RuntimeError. Ownership is an epoch number, not a pointer to the owner,
 *    so no C static refers to a GC object (nothing to register as a root
 *    pointer) and nothing stale survives a soft reset.
 *  - as a dynamic native module (.mpy, MICROPY_ENABLE_DYNRUNTIME): a natmod
 *    cannot have static .bss, so each Trainer allocates its arena on the GC
 *    heap, sized to the model's plan.
 *
 * step() allocates nothing on the GC heap except, when it returns the loss as
 * a float, that float object itself (every port built with
 * MICROPY_OBJ_REPR_A, i.e. unix, qemu and stm32, boxes floats: 16 bytes on a
 * 32-bit port). With out=array('f', [0]) it returns None and allocates
 * nothing at all (tests run it under micropython.heap_lock()).
 */
#include <stdarg.h>
#include <string.h>

#if MICROPY_ENABLE_DYNRUNTIME
#include "py/dynruntime.h"
#else
#include "py/runtime.h"
#include "py/binary.h"
#endif
#include "py/mperrno.h"
#include "py/objarray.h"

#include "tt_core.h"

#ifndef BYTEARRAY_TYPECODE
#define BYTEARRAY_TYPECODE 1
#endif

#define TT_CANARY 0xA5u
#define TT_MSG_LEN 160
#define TT_LR_LIMIT 3.0e38f // the core's bound on a learning rate (a float32)

#if !MICROPY_ENABLE_DYNRUNTIME
#ifndef MICROPY_TINYTRAIN_ARENA_SIZE
#define MICROPY_TINYTRAIN_ARENA_SIZE (160 * 1024)
#endif
// The training arena. uint32_t for 4-byte alignment, which the core requires.
static uint32_t tinytrain_arena[(MICROPY_TINYTRAIN_ARENA_SIZE + 3) / 4];
// Incremented by every Trainer that takes the arena over; a Trainer owns the
// arena while its own epoch is the current one.
static uint32_t tinytrain_epoch;
#define TT_TYPE_OBJ (&tinytrain_trainer_type)
#else
#define TT_TYPE_OBJ ((const mp_obj_type_t *)&tinytrain_trainer_type)
#endif

typedef struct _tinytrain_trainer_obj_t {
    mp_obj_base_t base;
    mp_obj_t model_obj;   // the buffer the model is read from in place (kept alive)
    uint8_t *arena;       // static arena, or (natmod) a GC block owned by this object
    uint32_t epoch;
    uint32_t need;        // bytes of arena the model's plan needs
    uint32_t input_bytes;
    uint32_t n_classes;
    uint32_t loss_kind;
    mp_obj_t input_view;  // int8 memoryview of the input slot, made once: input() allocates nothing
    mp_obj_t features_view; // the same of the cut (None without a frozen prefix)
    tt_model model;
    tt_trainer tr;
} tinytrain_trainer_obj_t;

#if MICROPY_ENABLE_DYNRUNTIME
mp_obj_full_type_t tinytrain_trainer_type;
#else
extern const mp_obj_type_t tinytrain_trainer_type;
#endif

/******************************************************************************/
// Messages and exceptions (formatted here so the natmod, which has no
// mp_raise_msg_varg, raises the very same text).

typedef struct {
    char buf[TT_MSG_LEN];
    size_t len;
} tt_msg_t;

static void msg_put(tt_msg_t *m, const char *s, size_t n) {
    while (n-- && *s && m->len + 1 < TT_MSG_LEN) {
        m->buf[m->len++] = *s++;
    }
    m->buf[m->len] = 0;
}

static void msg_uint(tt_msg_t *m, uint32_t v, int neg) {
    char tmp[11];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    if (neg) {
        msg_put(m, "-", 1);
    }
    while (n) {
        msg_put(m, &tmp[--n], 1);
    }
}

// printf subset: %u (uint32_t), %d (int32_t), %s (C string).
static void msg_vformat(tt_msg_t *m, const char *fmt, va_list ap) {
    for (const char *f = fmt; *f; f++) {
        if (*f != '%' || !f[1]) {
            msg_put(m, f, 1);
            continue;
        }
        f++;
        if (*f == 'u') {
            msg_uint(m, va_arg(ap, uint32_t), 0);
        } else if (*f == 'd') {
            int32_t v = va_arg(ap, int32_t);
            msg_uint(m, v < 0 ? 0u - (uint32_t)v : (uint32_t)v, v < 0);
        } else if (*f == 's') {
            const char *s = va_arg(ap, const char *);
            msg_put(m, s, (size_t)-1);
        } else {
            msg_put(m, f, 1);
        }
    }
}

static MP_NORETURN void raise_msg(const mp_obj_type_t *type, const char *fmt, ...) {
    tt_msg_t m;
    va_list ap;
    m.len = 0;
    m.buf[0] = 0;
    va_start(ap, fmt);
    msg_vformat(&m, fmt, ap);
    va_end(ap);
    nlr_raise(mp_obj_new_exception_arg1(type, mp_obj_new_str(m.buf, m.len)));
}

#if MICROPY_ENABLE_DYNRUNTIME
#define EXC_TYPE(name) ((const mp_obj_type_t *)MP_OBJ_TO_PTR(mp_load_global(MP_QSTR_##name)))
#else
#define EXC_TYPE(name) (&mp_type_##name)
#endif

// type(o).__name__ as a C string (the object returned is kept alive by the
// caller's stack until the exception is raised).
static const char *type_name(mp_obj_t o) {
    #if MICROPY_ENABLE_DYNRUNTIME
    mp_obj_t name = mp_load_attr(MP_OBJ_FROM_PTR(mp_obj_get_type(o)), MP_QSTR___name__);
    return (const char *)mp_obj_str_get_str(name);
    #else
    return mp_obj_get_type_str(o);
    #endif
}

// The simulator's short status names (host_tools/tinytrain/_native.py STATUS).
static const char *status_name(tt_status s) {
    switch (s) {
        case TT_OK: return "ok";
        case TT_E_TRUNCATED: return "truncated";
        case TT_E_MAGIC: return "magic";
        case TT_E_VERSION: return "version";
        case TT_E_CRC: return "crc";
        case TT_E_ALIGN: return "align";
        case TT_E_HEADER: return "header";
        case TT_E_SECTION: return "section";
        case TT_E_TENSOR: return "tensor";
        case TT_E_LAYER: return "layer";
        case TT_E_SHAPE: return "shape";
        case TT_E_BLOB: return "blob";
        case TT_E_QUANT: return "quant";
        case TT_E_PERM: return "perm";
        case TT_E_OP: return "op";
        case TT_E_ARENA: return "arena";
        case TT_E_ARG: return "arg";
        case TT_E_STATE: return "state";
        case TT_E_PARAMS: return "params";
        case TT_E_NOMEM: return "nomem";
        default: return "unknown";
    }
}

// A core error: "<core message> (<status>)"; MemoryError for a too-small arena.
static MP_NORETURN void raise_status(tt_status s, const tt_error *err) {
    if (s == TT_E_NOMEM) {
        raise_msg(EXC_TYPE(MemoryError), "%s (%s)", err->msg, status_name(s));
    }
    raise_msg(EXC_TYPE(ValueError), "%s (%s)", err->msg, status_name(s));
}

/******************************************************************************/
// Helpers

static bool is_float_obj(mp_obj_t o) {
    #if MICROPY_ENABLE_DYNRUNTIME
    return MP_OBJ_FROM_PTR(mp_obj_get_type(o)) == mp_load_global(MP_QSTR_float);
    #else
    return mp_obj_is_float(o);
    #endif
}

// Argument tables. A natmod's qstrs are numbered when it is loaded, so its
// tables are filled in at run time (on the C stack: no allocation).
#if MICROPY_ENABLE_DYNRUNTIME
#define ARG_TABLE mp_arg_t
#define ARG_SPEC(name, flags) { MP_QSTR_, (flags), {.u_obj = MP_OBJ_NULL} }
#define ARG_NAME(table, i, name) ((table)[i].qst = (name))
#else
#define ARG_TABLE static const mp_arg_t
#define ARG_SPEC(name, flags) { (name), (flags), {.u_obj = MP_OBJ_NULL} }
#define ARG_NAME(table, i, name) ((void)0)
#endif

// An optional argument: None when it was not given.
static inline mp_obj_t arg_obj(const mp_arg_val_t *v) {
    return v->u_obj == MP_OBJ_NULL ? mp_const_none : v->u_obj;
}

static mp_obj_t call1(mp_obj_t fun, mp_obj_t arg) {
    return mp_call_function_n_kw(fun, 1, 0, &arg);
}

static mp_obj_t call_method(mp_obj_t obj, qstr name, size_t n_args, const mp_obj_t *args) {
    mp_obj_t fn = mp_load_attr(obj, name);
    return mp_call_function_n_kw(fn, n_args, 0, args);
}

// An input buffer of 1-byte elements (bytes, bytearray, array('b'/'B'),
// memoryview); TypeError otherwise, with the simulator's messages.
static void get_int8_buffer(mp_obj_t o, const char *what, mp_buffer_info_t *bi) {
    if (o == mp_const_none || mp_obj_is_str(o)) {
        raise_msg(EXC_TYPE(TypeError), "%s must be a buffer of int8 values (bytes, bytearray, array('b'), "
            "memoryview, numpy int8), not %s", what, type_name(o));
    }
    if (!mp_get_buffer(o, bi, MP_BUFFER_READ)) {
        raise_msg(EXC_TYPE(TypeError), "%s must be a buffer of int8 values, not %s", what, type_name(o));
    }
    if (bi->typecode != 'b' && bi->typecode != 'B' && bi->typecode != BYTEARRAY_TYPECODE) {
        char tc[2] = { (char)bi->typecode, 0 };
        raise_msg(EXC_TYPE(TypeError), "%s must hold 1-byte int8 elements, got format '%s'", what, tc);
    }
}

// The learning rate rule of the host (host_tools/tinytrain/lr_rule.py): None
// (0 here: the model's default) or a finite number > 0 that fits a float32.
static float lr_arg(mp_obj_t o) {
    if (o == mp_const_none) {
        return 0.0f;
    }
    if (mp_obj_is_bool(o) || (!mp_obj_is_int(o) && !is_float_obj(o))) {
        raise_msg(EXC_TYPE(TypeError), "lr must be a number or None, not %s", type_name(o));
    }
    mp_float_t v = mp_obj_get_float(o);
    // Compared as a float32: a double constant would make this file's .text
    // 8-byte aligned where floats are doubles, which mpy_ld mislinks (natmod/Makefile).
    float f = (float)v;
    if (!(v == v) || !(f > 0.0f) || !(f <= TT_LR_LIMIT)) {
        raise_msg(EXC_TYPE(ValueError), "lr must be a finite number > 0");
    }
    return (float)v;
}

// A class index: an int (not a bool) in [0, classes); the host's messages.
static int32_t label_arg(uint32_t n_classes, mp_obj_t label) {
    if (!mp_obj_is_int(label)) {
        raise_msg(EXC_TYPE(TypeError), "label must be an int class index, not %s", type_name(label));
    }
    if (!mp_obj_is_small_int(label) || MP_OBJ_SMALL_INT_VALUE(label) < 0
        || MP_OBJ_SMALL_INT_VALUE(label) >= (mp_int_t)n_classes) {
        mp_obj_t text = call1(MP_OBJ_FROM_PTR(&mp_type_str), label);
        raise_msg(EXC_TYPE(ValueError), "label %s outside [0, %u)", (const char *)mp_obj_str_get_str(text),
            n_classes);
    }
    return (int32_t)MP_OBJ_SMALL_INT_VALUE(label);
}

static tinytrain_trainer_obj_t *get_self(mp_obj_t self_in) {
    tinytrain_trainer_obj_t *self = MP_OBJ_TO_PTR(self_in);
    #if !MICROPY_ENABLE_DYNRUNTIME
    if (self->epoch != tinytrain_epoch) {
        raise_msg(EXC_TYPE(RuntimeError), "this Trainer no longer owns the training arena: a newer "
            "Trainer took it over (create this one again to use it)");
    }
    #endif
    return self;
}

static void check_input(tinytrain_trainer_obj_t *self, mp_obj_t x, mp_buffer_info_t *bi) {
    get_int8_buffer(x, "x", bi);
    if (bi->len != self->input_bytes) {
        raise_msg(EXC_TYPE(ValueError), "x has %u bytes, the model takes %u", (uint32_t)bi->len,
            self->input_bytes);
    }
}

// x, or NULL for None: the input slot as filled through input().
static const int8_t *input_arg(tinytrain_trainer_obj_t *self, mp_obj_t x, size_t *len) {
    mp_buffer_info_t bi;
    if (x == mp_const_none) {
        *len = 0;
        return NULL;
    }
    check_input(self, x, &bi);
    *len = bi.len;
    return (const int8_t *)bi.buf;
}

// Arena bytes [p, p + n) (the input slot, the cut) as a writable int8
// memoryview. Its items point at the arena's start (the offset field, as in
// a memoryview slice, selects the bytes), so the view keeps a natmod's
// GC-allocated arena alive. The natmod has no mp_obj_new_memoryview: it
// views a bytearray over the arena and sets the fields.
static mp_obj_t new_arena_view(tinytrain_trainer_obj_t *self, const int8_t *p, uint32_t n) {
    const size_t off = (size_t)((const uint8_t *)p - self->arena);
    #if MICROPY_ENABLE_DYNRUNTIME
    mp_obj_t view = call1(mp_load_global(MP_QSTR_memoryview), mp_obj_new_bytearray_by_ref(off + n, self->arena));
    #else
    mp_obj_t view = mp_obj_new_memoryview(BYTEARRAY_TYPECODE, off + n, self->arena);
    #endif
    mp_obj_array_t *a = MP_OBJ_TO_PTR(view);
    a->typecode = MP_OBJ_ARRAY_TYPECODE_FLAG_RW | 'b';
    a->free = off;
    a->len = n;
    return view;
}

static int32_t predict_raw(tinytrain_trainer_obj_t *self, const void *x, size_t len) {
    tt_error err;
    int32_t cls = 0;
    tt_status s = tt_trainer_predict(&self->tr, (const int8_t *)x, len, &cls, &err);
    if (s != TT_OK) {
        raise_status(s, &err);
    }
    return cls;
}

static mp_obj_t open_file(mp_obj_t path, const char *mode) {
    mp_obj_t args[2] = { path, mp_obj_new_str(mode, 2) }; // "rb" or "wb"
    return mp_call_function_n_kw(mp_load_global(MP_QSTR_open), 2, 0, args);
}

// The whole content of a file as bytes (an unbuffered read(n) into one block).
static mp_obj_t read_file(mp_obj_t path) {
    mp_obj_t f = open_file(path, "rb");
    mp_obj_t args[2] = { MP_OBJ_NEW_SMALL_INT(0), MP_OBJ_NEW_SMALL_INT(2) };
    mp_int_t n = mp_obj_get_int(call_method(f, MP_QSTR_seek, 2, args));
    mp_obj_t data;
    call_method(f, MP_QSTR_seek, 1, args);
    args[0] = mp_obj_new_int(n);
    data = call_method(f, MP_QSTR_read, 1, args);
    call_method(f, MP_QSTR_close, 0, NULL);
    return data;
}

// The model's bytes, used in place when they are immutable and 4-byte
// aligned (bytes, a read-only memoryview, a ROMFS file); otherwise copied
// once into a new bytes object, so that the buffer the core validated can
// never change under it.
static mp_obj_t model_source(mp_obj_t model, mp_buffer_info_t *bi) {
    if (mp_obj_is_str(model)) {
        mp_obj_t f = open_file(model, "rb");
        // A file in ROMFS exposes its data in place (memory-mapped flash).
        if (mp_get_buffer(f, bi, MP_BUFFER_READ) && ((uintptr_t)bi->buf & 3u) == 0) {
            return f;
        }
        call_method(f, MP_QSTR_close, 0, NULL);
        model = read_file(model);
    } else if (model == mp_const_none || !mp_get_buffer(model, bi, MP_BUFFER_READ)) {
        raise_msg(EXC_TYPE(TypeError), "model must be bytes, bytearray, memoryview or a file path, not %s",
            type_name(model));
    }
    mp_get_buffer_raise(model, bi, MP_BUFFER_READ);
    mp_buffer_info_t wr;
    if (((uintptr_t)bi->buf & 3u) != 0 || mp_get_buffer(model, &wr, MP_BUFFER_WRITE)) {
        model = mp_obj_new_bytes((const byte *)bi->buf, bi->len);
        mp_get_buffer_raise(model, bi, MP_BUFFER_READ);
    }
    return model;
}

/******************************************************************************/
// Trainer(model, lr=None, arena_size=None)

static mp_obj_t tinytrain_trainer_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw,
    const mp_obj_t *all_args) {
    enum { ARG_model, ARG_lr, ARG_arena_size };
    ARG_TABLE allowed_args[] = {
        ARG_SPEC(MP_QSTR_model, MP_ARG_REQUIRED | MP_ARG_OBJ),
        ARG_SPEC(MP_QSTR_lr, MP_ARG_OBJ),
        ARG_SPEC(MP_QSTR_arena_size, MP_ARG_OBJ),
    };
    ARG_NAME(allowed_args, ARG_model, MP_QSTR_model);
    ARG_NAME(allowed_args, ARG_lr, MP_QSTR_lr);
    ARG_NAME(allowed_args, ARG_arena_size, MP_QSTR_arena_size);
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed_args)];
    mp_arg_parse_all_kw_array(n_args, n_kw, all_args, MP_ARRAY_SIZE(allowed_args), allowed_args, args);
    mp_obj_t arena_size_obj = arg_obj(&args[ARG_arena_size]);
    // Every argument is checked before the static arena is taken from the
    // current Trainer (a refused Trainer must leave it, and what it learned).
    float lr = lr_arg(arg_obj(&args[ARG_lr])); // 0: the core takes the model's default
    if (arena_size_obj != mp_const_none && (mp_obj_is_bool(arena_size_obj) || !mp_obj_is_int(arena_size_obj))) {
        raise_msg(EXC_TYPE(TypeError), "arena_size must be an int or None, not %s", type_name(arena_size_obj));
    }

    mp_buffer_info_t bi;
    tt_error err;
    tt_status s;
    mp_obj_t model_obj = model_source(args[ARG_model].u_obj, &bi);

    tinytrain_trainer_obj_t *self = mp_obj_malloc(tinytrain_trainer_obj_t, type);
    self->model_obj = model_obj;
    self->arena = NULL;
    self->epoch = 0;
    s = tt_model_open(&self->model, (const uint8_t *)bi.buf, bi.len, &err);
    if (s != TT_OK) {
        raise_status(s, &err);
    }
    self->need = tt_model_arena_bytes(&self->model);

    // The arena the core is given: arena_size bytes if asked for (as on the
    // host), else all there is (static) or exactly what the plan needs (natmod).
    mp_int_t size;
    if (arena_size_obj == mp_const_none) {
        #if MICROPY_ENABLE_DYNRUNTIME
        size = self->need;
        #else
        size = MICROPY_TINYTRAIN_ARENA_SIZE;
        #endif
    } else {
        size = mp_obj_get_int(arena_size_obj);
        if (size < 0) {
            raise_msg(EXC_TYPE(ValueError), "arena_size must be >= 0");
        }
        #if !MICROPY_ENABLE_DYNRUNTIME
        if (size > MICROPY_TINYTRAIN_ARENA_SIZE) {
            raise_msg(EXC_TYPE(MemoryError), "arena_size %u is larger than the static arena of %u bytes",
                (uint32_t)size, (uint32_t)MICROPY_TINYTRAIN_ARENA_SIZE);
        }
        #endif
    }

    if ((uint32_t)size < self->need) {
        // Refused before the arena is touched: the current owner keeps it.
        // The core words the error (both numbers).
        static const uint32_t dummy[1] = { 0 };
        s = tt_trainer_init(&self->tr, &self->model, (uint8_t *)(uintptr_t)dummy, (size_t)size, lr, &err);
        raise_status(s != TT_OK ? s : TT_E_NOMEM, &err);
    }

    #if MICROPY_ENABLE_DYNRUNTIME
    self->arena = m_realloc_maybe(NULL, size > 4 ? (size_t)size : 4u, false);
    if (self->arena == NULL) {
        // The module's code already sits on this heap (a natmod is loaded
        // there): say what the model needs and what is left, not a bare error.
        mp_obj_t gc = mp_import_name(MP_QSTR_gc, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
        mp_int_t free_bytes = mp_obj_get_int(mp_call_function_n_kw(mp_load_attr(gc, MP_QSTR_mem_free), 0, 0, NULL));
        raise_msg(EXC_TYPE(MemoryError), "model of %u bytes needs a %u-byte arena; GC heap has %u "
            "free (the .mpy's code is on it too): gc.collect(), or the TT_OPTIMIZED=0 .mpy",
            (uint32_t)bi.len, (uint32_t)size, (uint32_t)free_bytes);
    }
    #else
    self->arena = (uint8_t *)tinytrain_arena;
    self->epoch = ++tinytrain_epoch; // from here on every older Trainer is invalid
    #endif
    // Canary over the plan's bytes: info()['peak_bytes'] is what was touched.
    memset(self->arena, TT_CANARY, self->need);
    s = tt_trainer_init(&self->tr, &self->model, self->arena, (size_t)size, lr, &err);
    if (s != TT_OK) {
        raise_status(s, &err);
    }
    self->input_bytes = tt_model_input_bytes(&self->model);
    self->n_classes = self->model.hdr->n_classes;
    self->loss_kind = self->model.hdr->loss_kind;
    {
        uint32_t n = 0;
        const int8_t *slot = tt_trainer_input(&self->tr, &n);
        self->input_view = new_arena_view(self, slot, n);
        slot = tt_trainer_cut(&self->tr, &n);
        self->features_view = slot ? new_arena_view(self, slot, n) : mp_const_none;
    }
    return MP_OBJ_FROM_PTR(self);
}

/******************************************************************************/
// Training and inference

// input(): the input slot (TensorFlow Lite Micro's input(0)).
static mp_obj_t tinytrain_trainer_input(mp_obj_t self_in) {
    return get_self(self_in)->input_view;
}
static MP_DEFINE_CONST_FUN_OBJ_1(tinytrain_trainer_input_obj, tinytrain_trainer_input);

// step's out=: a writable array('f') of at least one element, checked before the step.
static void loss_out_arg(mp_obj_t out_obj, mp_buffer_info_t *out) {
    if (out_obj != mp_const_none) {
        if (!mp_get_buffer(out_obj, out, MP_BUFFER_WRITE) || out->typecode != 'f' || out->len < sizeof(float)) {
            raise_msg(EXC_TYPE(TypeError), "out must be a writable array('f') of at least one element");
        }
    }
}

// The loss into out (None returned: nothing allocated), else as a float.
static mp_obj_t loss_result(mp_obj_t out_obj, mp_buffer_info_t *out, float loss) {
    if (out_obj != mp_const_none) {
        memcpy(out->buf, &loss, sizeof(float));
        return mp_const_none;
    }
    return mp_obj_new_float((mp_float_t)loss);
}

// A step's label: the class index, or for an MSE model the int8 targets.
static int32_t label_or_target(tinytrain_trainer_obj_t *self, mp_obj_t label, const int8_t **target,
                               size_t *target_len) {
    if (self->loss_kind == 1) {
        mp_buffer_info_t tb;
        get_int8_buffer(label, "label", &tb);
        *target = (const int8_t *)tb.buf;
        *target_len = tb.len;
        return 0;
    }
    return label_arg(self->n_classes, label);
}

// step(x, label, *, out=None); step(label) trains on the input slot as filled.
static mp_obj_t tinytrain_trainer_step(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
    enum { ARG_x, ARG_label, ARG_out };
    ARG_TABLE allowed_args[] = {
        ARG_SPEC(MP_QSTR_x, MP_ARG_OBJ),
        ARG_SPEC(MP_QSTR_label, MP_ARG_OBJ),
        ARG_SPEC(MP_QSTR_out, MP_ARG_KW_ONLY | MP_ARG_OBJ),
    };
    ARG_NAME(allowed_args, ARG_x, MP_QSTR_x);
    ARG_NAME(allowed_args, ARG_label, MP_QSTR_label);
    ARG_NAME(allowed_args, ARG_out, MP_QSTR_out);
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed_args)];
    mp_arg_parse_all(n_args - 1, pos_args + 1, kw_args, MP_ARRAY_SIZE(allowed_args), allowed_args, args);
    tinytrain_trainer_obj_t *self = get_self(pos_args[0]);

    mp_buffer_info_t out;
    mp_obj_t x = arg_obj(&args[ARG_x]), label = arg_obj(&args[ARG_label]);
    const int8_t *target = NULL, *xp;
    size_t target_len = 0, x_len;
    int32_t cls = 0;
    tt_error err;
    float loss = 0.0f;
    if (label == mp_const_none) { // step(label)
        label = x;
        x = mp_const_none;
    }
    xp = input_arg(self, x, &x_len);
    cls = label_or_target(self, label, &target, &target_len);
    mp_obj_t out_obj = arg_obj(&args[ARG_out]);
    loss_out_arg(out_obj, &out);
    tt_status s = tt_trainer_step(&self->tr, xp, x_len, cls, target, target_len, &loss, &err);
    if (s != TT_OK) {
        raise_status(s, &err);
    }
    return loss_result(out_obj, &out, loss);
}
static MP_DEFINE_CONST_FUN_OBJ_KW(tinytrain_trainer_step_obj, 2, tinytrain_trainer_step);

// predict(x=None) and logits(x=None): without x, of the input slot as filled.
static mp_obj_t tinytrain_trainer_predict(size_t n_args, const mp_obj_t *args) {
    tinytrain_trainer_obj_t *self = get_self(args[0]);
    size_t len;
    const int8_t *x = input_arg(self, n_args > 1 ? args[1] : mp_const_none, &len);
    return MP_OBJ_NEW_SMALL_INT(predict_raw(self, x, len));
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(tinytrain_trainer_predict_obj, 1, 2, tinytrain_trainer_predict);

static mp_obj_t tinytrain_trainer_logits(size_t n_args, const mp_obj_t *args) {
    tinytrain_trainer_obj_t *self = get_self(args[0]);
    size_t len;
    const int8_t *x = input_arg(self, n_args > 1 ? args[1] : mp_const_none, &len);
    predict_raw(self, x, len);
    return mp_obj_new_bytes((const byte *)tt_trainer_logits(&self->tr), self->n_classes);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(tinytrain_trainer_logits_obj, 1, 2, tinytrain_trainer_logits);

/******************************************************************************/
// The frozen prefix (docs/micropython.md, "Epochs on stored samples"): its
// output, the cut, is the same for a sample at every epoch; the caller keeps
// it (RAM, SDRAM, a file) and trains the later epochs from it.

static mp_obj_t tinytrain_trainer_feature_bytes(mp_obj_t self_in) {
    return mp_obj_new_int_from_uint(tt_model_cut_bytes(&get_self(self_in)->model));
}
static MP_DEFINE_CONST_FUN_OBJ_1(tinytrain_trainer_feature_bytes_obj, tinytrain_trainer_feature_bytes);

// features(x=None, out=None): the prefix on x (or the slot as filled); the
// cut as a view of the arena (valid until the next call), or copied into out.
static mp_obj_t tinytrain_trainer_features(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
    enum { ARG_x, ARG_out };
    ARG_TABLE allowed_args[] = {
        ARG_SPEC(MP_QSTR_x, MP_ARG_OBJ),
        ARG_SPEC(MP_QSTR_out, MP_ARG_OBJ),
    };
    ARG_NAME(allowed_args, ARG_x, MP_QSTR_x);
    ARG_NAME(allowed_args, ARG_out, MP_QSTR_out);
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed_args)];
    mp_arg_parse_all(n_args - 1, pos_args + 1, kw_args, MP_ARRAY_SIZE(allowed_args), allowed_args, args);
    tinytrain_trainer_obj_t *self = get_self(pos_args[0]);
    const uint32_t n = tt_model_cut_bytes(&self->model);
    mp_obj_t out_obj = arg_obj(&args[ARG_out]);
    mp_buffer_info_t ob;
    size_t x_len;
    tt_error err;
    if (out_obj != mp_const_none && n) {
        get_int8_buffer(out_obj, "out", &ob);
        if (!mp_get_buffer(out_obj, &ob, MP_BUFFER_WRITE)) {
            raise_msg(EXC_TYPE(TypeError), "out must be writable");
        }
        if (ob.len != n) {
            raise_msg(EXC_TYPE(ValueError), "out has %u bytes, the model's features have %u", (uint32_t)ob.len, n);
        }
    }
    const int8_t *xp = input_arg(self, arg_obj(&args[ARG_x]), &x_len);
    tt_status s = tt_trainer_prefix(&self->tr, xp, x_len, &err);
    if (s != TT_OK) {
        raise_status(s, &err);
    }
    if (out_obj == mp_const_none) {
        return self->features_view;
    }
    memcpy(ob.buf, tt_trainer_cut(&self->tr, NULL), n);
    return out_obj;
}
static MP_DEFINE_CONST_FUN_OBJ_KW(tinytrain_trainer_features_obj, 1, tinytrain_trainer_features);

// A sample's stored features: feature_bytes() int8 values.
static const int8_t *features_arg(tinytrain_trainer_obj_t *self, mp_obj_t f, size_t *len) {
    mp_buffer_info_t bi;
    const uint32_t n = tt_model_cut_bytes(&self->model);
    get_int8_buffer(f, "features", &bi);
    if (n && bi.len != n) {
        raise_msg(EXC_TYPE(ValueError), "features have %u bytes, the model's cut has %u", (uint32_t)bi.len, n);
    }
    *len = bi.len;
    return (const int8_t *)bi.buf;
}

// step_features(f, label, *, out=None): step() from a sample's features.
static mp_obj_t tinytrain_trainer_step_features(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
    enum { ARG_f, ARG_label, ARG_out };
    ARG_TABLE allowed_args[] = {
        ARG_SPEC(MP_QSTR_f, MP_ARG_REQUIRED | MP_ARG_OBJ),
        ARG_SPEC(MP_QSTR_label, MP_ARG_REQUIRED | MP_ARG_OBJ),
        ARG_SPEC(MP_QSTR_out, MP_ARG_KW_ONLY | MP_ARG_OBJ),
    };
    ARG_NAME(allowed_args, ARG_f, MP_QSTR_f);
    ARG_NAME(allowed_args, ARG_label, MP_QSTR_label);
    ARG_NAME(allowed_args, ARG_out, MP_QSTR_out);
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed_args)];
    mp_arg_parse_all(n_args - 1, pos_args + 1, kw_args, MP_ARRAY_SIZE(allowed_args), allowed_args, args);
    tinytrain_trainer_obj_t *self = get_self(pos_args[0]);
    mp_buffer_info_t out;
    const int8_t *target = NULL;
    size_t target_len = 0, f_len;
    tt_error err;
    float loss = 0.0f;
    const int8_t *fp = features_arg(self, args[ARG_f].u_obj, &f_len);
    int32_t cls = label_or_target(self, args[ARG_label].u_obj, &target, &target_len);
    mp_obj_t out_obj = arg_obj(&args[ARG_out]);
    loss_out_arg(out_obj, &out);
    tt_status s = tt_trainer_step_from_cut(&self->tr, fp, f_len, cls, target, target_len, &loss, &err);
    if (s != TT_OK) {
        raise_status(s, &err);
    }
    return loss_result(out_obj, &out, loss);
}
static MP_DEFINE_CONST_FUN_OBJ_KW(tinytrain_trainer_step_features_obj, 3, tinytrain_trainer_step_features);

static mp_obj_t tinytrain_trainer_predict_features(mp_obj_t self_in, mp_obj_t f) {
    tinytrain_trainer_obj_t *self = get_self(self_in);
    size_t f_len;
    const int8_t *fp = features_arg(self, f, &f_len);
    tt_error err;
    int32_t cls = 0;
    tt_status s = tt_trainer_predict_from_cut(&self->tr, fp, f_len, &cls, &err);
    if (s != TT_OK) {
        raise_status(s, &err);
    }
    return MP_OBJ_NEW_SMALL_INT(cls);
}
static MP_DEFINE_CONST_FUN_OBJ_2(tinytrain_trainer_predict_features_obj, tinytrain_trainer_predict_features);

// evaluate(xs, labels): accuracy over the inputs stored back to back in xs.
static mp_obj_t tinytrain_trainer_evaluate(mp_obj_t self_in, mp_obj_t xs, mp_obj_t labels_in) {
    tinytrain_trainer_obj_t *self = get_self(self_in);
    mp_buffer_info_t xb;
    size_t n_labels, hits = 0;
    mp_obj_t *labels;
    // The labels first: iterating them may run user code (a generator) that
    // resizes xs, so xs's pointer is taken only after; every label is checked
    // before the first prediction.
    const mp_obj_type_t *lt = mp_obj_get_type(labels_in);
    if (!MP_OBJ_TYPE_HAS_SLOT(lt, iter) && !MP_OBJ_TYPE_HAS_SLOT(lt, subscr)) {
        raise_msg(EXC_TYPE(TypeError), "labels must be an iterable of int class indices, not %s",
            type_name(labels_in));
    }
    mp_obj_t list = call1(MP_OBJ_FROM_PTR(&mp_type_list), labels_in);
    mp_obj_get_array(list, &n_labels, &labels);
    for (size_t i = 0; i < n_labels; i++) {
        label_arg(self->n_classes, labels[i]);
    }
    get_int8_buffer(xs, "xs", &xb);
    const size_t n = self->input_bytes, count = xb.len / n;
    if (xb.len % n) {
        raise_msg(EXC_TYPE(ValueError), "xs has %u bytes, not a multiple of the input size %u",
            (uint32_t)xb.len, (uint32_t)n);
    }
    if (n_labels != count) {
        raise_msg(EXC_TYPE(ValueError), "%u inputs but %u labels", (uint32_t)count, (uint32_t)n_labels);
    }
    if (count == 0) {
        raise_msg(EXC_TYPE(ValueError), "evaluate needs at least one input");
    }
    for (size_t i = 0; i < count; i++) {
        int32_t cls = predict_raw(self, (const uint8_t *)xb.buf + i * n, n);
        hits += cls == MP_OBJ_SMALL_INT_VALUE(labels[i]);
    }
    return mp_obj_new_float((mp_float_t)hits / (mp_float_t)count);
}
static MP_DEFINE_CONST_FUN_OBJ_3(tinytrain_trainer_evaluate_obj, tinytrain_trainer_evaluate);

/******************************************************************************/
// Trained parameters

static mp_obj_t tinytrain_trainer_params(mp_obj_t self_in) {
    tinytrain_trainer_obj_t *self = get_self(self_in);
    uint32_t n = 0;
    const uint8_t *p = tt_trainer_params(&self->tr, &n);
    return mp_obj_new_bytes(p, n);
}
static MP_DEFINE_CONST_FUN_OBJ_1(tinytrain_trainer_params_obj, tinytrain_trainer_params);

// params_file(): the parameter file of docs/format.md (what save() writes),
// as a new bytearray, written by the core (tt_params.c).
static mp_obj_t params_file(tinytrain_trainer_obj_t *self) {
    uint32_t size = tt_params_file_size(&self->tr);
    mp_obj_t blob = call1(MP_OBJ_FROM_PTR(&mp_type_bytearray), mp_obj_new_int_from_uint(size));
    mp_buffer_info_t bb;
    mp_get_buffer_raise(blob, &bb, MP_BUFFER_WRITE);
    tt_params_file_read(&self->tr, 0, bb.buf, size);
    return blob;
}

static mp_obj_t tinytrain_trainer_params_file(mp_obj_t self_in) {
    return params_file(get_self(self_in));
}
static MP_DEFINE_CONST_FUN_OBJ_1(tinytrain_trainer_params_file_obj, tinytrain_trainer_params_file);

static mp_obj_t import_os(void) {
    return mp_import_name(MP_QSTR_os, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
}

// blob into the open file f (tmp), then tmp renamed over path.
static void write_and_rename(mp_obj_t f, mp_obj_t blob, size_t len, mp_obj_t tmp, mp_obj_t path) {
    mp_obj_t written = call_method(f, MP_QSTR_write, 1, &blob);
    call_method(f, MP_QSTR_close, 0, NULL);
    if (written == mp_const_none || (size_t)mp_obj_get_int(written) != len) {
        mp_raise_OSError(MP_EIO);
    }
    mp_obj_t os = import_os();
    mp_obj_t rn[2] = { tmp, path };
    call_method(os, MP_QSTR_rename, 2, rn);
    mp_obj_t dest[2];
    mp_load_method_maybe(os, MP_QSTR_sync, dest);
    if (dest[0] != MP_OBJ_NULL) {
        mp_call_function_n_kw(dest[0], 0, 0, NULL);
    }
}

#if !MICROPY_ENABLE_DYNRUNTIME
static bool file_exists(mp_obj_t path);

// Close and remove the temporary file of a failed save, unless path is gone
// (a rename that removed path first, cut short: tmp is the only copy);
// raises nothing.
static void discard_tmp(mp_obj_t f, mp_obj_t tmp, mp_obj_t path) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        call_method(f, MP_QSTR_close, 0, NULL);
        if (file_exists(path)) {
            call_method(import_os(), MP_QSTR_remove, 1, &tmp);
        }
        nlr_pop();
    }
}
#endif

// save(path): the parameter file of docs/format.md, written to path + ".tmp"
// and renamed over path, so a power cut leaves the old file or the new one
// (on FAT the rename removes path first: load() then finds path + ".tmp").
static mp_obj_t tinytrain_trainer_save(mp_obj_t self_in, mp_obj_t path) {
    tinytrain_trainer_obj_t *self = get_self(self_in);
    if (!mp_obj_is_str(path)) {
        raise_msg(EXC_TYPE(TypeError), "path must be a str, not %s", type_name(path));
    }
    size_t path_len;
    mp_obj_str_get_data(path, &path_len);
    if (path_len == 0) { // else "" + ".tmp" names a file the rename then fails on
        raise_msg(EXC_TYPE(ValueError), "path must not be empty");
    }
    mp_obj_t blob = params_file(self);
    mp_buffer_info_t bb;
    mp_get_buffer_raise(blob, &bb, MP_BUFFER_READ);

    mp_obj_t tmp = mp_binary_op(MP_BINARY_OP_ADD, path, mp_obj_new_str(".tmp", 4));
    mp_obj_t f = open_file(tmp, "wb");
    #if MICROPY_ENABLE_DYNRUNTIME
    write_and_rename(f, blob, bb.len, tmp, path); // a natmod cannot catch (docs/micropython.md)
    #else
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        write_and_rename(f, blob, bb.len, tmp, path);
        nlr_pop();
    } else {
        // A save that failed (path a folder, a full /flash) leaves no ".tmp",
        // which load() would otherwise take for the newest file.
        discard_tmp(f, tmp, path);
        nlr_jump(nlr.ret_val);
    }
    #endif
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(tinytrain_trainer_save_obj, tinytrain_trainer_save);

// Whether a parameter file passes the checks that do not depend on the model
// (magic, version, size, checksum): a file cut short or damaged fails them.
static bool params_whole(mp_obj_t data) {
    mp_buffer_info_t fb;
    tt_error err;
    mp_get_buffer_raise(data, &fb, MP_BUFFER_READ);
    return tt_params_check(fb.buf, fb.len, &err) == TT_OK;
}

// Whether path names an existing entry, without raising (os.listdir of its
// folder: a native module cannot catch the OSError of open()).
static bool file_exists(mp_obj_t path) {
    size_t len;
    const char *p = mp_obj_str_get_data(path, &len);
    size_t slash = len;
    while (slash && p[slash - 1] != '/') {
        slash--;
    }
    mp_obj_t os = mp_import_name(MP_QSTR_os, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
    mp_obj_t dir = mp_obj_new_str(p, slash > 1 ? slash - 1 : slash); // "/x" -> "/", "x" -> cwd
    mp_obj_t names = call_method(os, MP_QSTR_listdir, slash ? 1 : 0, &dir);
    mp_obj_t name = mp_obj_new_str(p + slash, len - slash);
    return mp_obj_is_true(mp_binary_op(MP_BINARY_OP_IN, name, names));
}

// The bytes of the parameter file at path. save() writes path + ".tmp" and
// renames it over path; on FAT (the F746's /flash) that rename removes the old
// file first, so a power cut can leave only the complete ".tmp": when path is
// missing or damaged and path + ".tmp" is whole, that is the newest file.
static mp_obj_t read_params(mp_obj_t path) {
    mp_obj_t tmp = mp_binary_op(MP_BINARY_OP_ADD, path, mp_obj_new_str(".tmp", 4));
    bool have = file_exists(path);
    mp_obj_t data = have ? read_file(path) : mp_const_none;
    if ((!have || !params_whole(data)) && file_exists(tmp)) {
        mp_obj_t alt = read_file(tmp);
        if (params_whole(alt)) {
            return alt;
        }
    }
    return have ? data : read_file(path); // (the latter raises the OSError)
}

// set_lr(lr): the learning rate of the following steps, by the rule of
// Trainer(lr=...) (None: the model's own); called between steps, a schedule.
static mp_obj_t tinytrain_trainer_set_lr(mp_obj_t self_in, mp_obj_t lr) {
    tinytrain_trainer_obj_t *self = get_self(self_in);
    tt_error err;
    if (tt_trainer_set_lr(&self->tr, lr_arg(lr), &err) != TT_OK) {
        raise_msg(EXC_TYPE(ValueError), "%s", err.msg);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(tinytrain_trainer_set_lr_obj, tinytrain_trainer_set_lr);

// load(src): restore what save() wrote for this same model, from a path (see
// read_params) or from the file's bytes; every check passes before the
// trainer is touched.
static mp_obj_t tinytrain_trainer_load(mp_obj_t self_in, mp_obj_t src) {
    tinytrain_trainer_obj_t *self = get_self(self_in);
    mp_buffer_info_t fb;
    mp_obj_t data = mp_obj_is_str(src) ? read_params(src) : src;
    if (!mp_get_buffer(data, &fb, MP_BUFFER_READ)) {
        raise_msg(EXC_TYPE(TypeError), "load takes a path or the bytes of a parameter file, not %s",
            type_name(src));
    }
    tt_error err;
    if (tt_params_load(&self->tr, fb.buf, fb.len, &err) != TT_OK) {
        raise_msg(EXC_TYPE(ValueError), "%s", err.msg);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(tinytrain_trainer_load_obj, tinytrain_trainer_load);

/******************************************************************************/
// Introspection

static void dict_set(mp_obj_t d, qstr key, mp_obj_t value) {
    mp_obj_dict_store(d, MP_OBJ_NEW_QSTR(key), value);
}

static mp_obj_t tinytrain_trainer_info(mp_obj_t self_in) {
    tinytrain_trainer_obj_t *self = get_self(self_in);
    uint32_t touched = self->need, n = 0;
    while (touched && self->arena[touched - 1] == TT_CANARY) {
        touched--;
    }
    tt_trainer_params(&self->tr, &n);
    // The input's and output's quantisation: what a script needs to turn
    // sensor values into int8 inputs and logits back into real values.
    const tt_tensor_rec *ti = &self->model.tensors[self->model.hdr->input_tensor];
    const tt_tensor_rec *to = &self->model.tensors[self->model.hdr->logits_tensor];
    mp_obj_t shape[3] = {MP_OBJ_NEW_SMALL_INT(ti->h), MP_OBJ_NEW_SMALL_INT(ti->w), MP_OBJ_NEW_SMALL_INT(ti->c)};
    mp_obj_t d = mp_obj_new_dict(15);
    dict_set(d, MP_QSTR_arena_bytes, mp_obj_new_int_from_uint(self->need));
    dict_set(d, MP_QSTR_peak_bytes, mp_obj_new_int_from_uint(touched));
    dict_set(d, MP_QSTR_param_bytes, mp_obj_new_int_from_uint(n));
    dict_set(d, MP_QSTR_steps, mp_obj_new_int_from_uint(self->tr.steps));
    dict_set(d, MP_QSTR_trained_params, mp_obj_new_int_from_uint(tt_trainer_trained_param_count(&self->tr)));
    dict_set(d, MP_QSTR_input_bytes, mp_obj_new_int_from_uint(self->input_bytes));
    dict_set(d, MP_QSTR_classes, mp_obj_new_int_from_uint(self->n_classes));
    dict_set(d, MP_QSTR_lr, mp_obj_new_float((mp_float_t)self->tr.lr));
    // the stream receiver names the model and its label layout by these
    dict_set(d, MP_QSTR_model_crc, mp_obj_new_int_from_uint(self->model.hdr->crc32));
    dict_set(d, MP_QSTR_loss_kind, mp_obj_new_int_from_uint(self->loss_kind));
    dict_set(d, MP_QSTR_input_shape, mp_obj_new_tuple(3, shape));
    dict_set(d, MP_QSTR_input_scale, mp_obj_new_float((mp_float_t)ti->scale));
    dict_set(d, MP_QSTR_input_zero, mp_obj_new_int(ti->zero));
    dict_set(d, MP_QSTR_output_scale, mp_obj_new_float((mp_float_t)to->scale));
    dict_set(d, MP_QSTR_output_zero, mp_obj_new_int(to->zero));
    return d;
}
static MP_DEFINE_CONST_FUN_OBJ_1(tinytrain_trainer_info_obj, tinytrain_trainer_info);

/******************************************************************************/
// Type and module

#if !MICROPY_ENABLE_DYNRUNTIME

static void tinytrain_trainer_print(const mp_print_t *print, mp_obj_t self_in, mp_print_kind_t kind) {
    tinytrain_trainer_obj_t *self = MP_OBJ_TO_PTR(self_in);
    (void)kind;
    mp_printf(print, "<Trainer %u of %u arena bytes, %u steps%s>", (unsigned)self->need,
        (unsigned)MICROPY_TINYTRAIN_ARENA_SIZE, (unsigned)self->tr.steps,
        self->epoch == tinytrain_epoch ? "" : ", arena taken over");
}

static const mp_rom_map_elem_t tinytrain_trainer_locals_dict_table[] = {
    { MP_ROM_QSTR(MP_QSTR_step), MP_ROM_PTR(&tinytrain_trainer_step_obj) },
    { MP_ROM_QSTR(MP_QSTR_predict), MP_ROM_PTR(&tinytrain_trainer_predict_obj) },
    { MP_ROM_QSTR(MP_QSTR_logits), MP_ROM_PTR(&tinytrain_trainer_logits_obj) },
    { MP_ROM_QSTR(MP_QSTR_evaluate), MP_ROM_PTR(&tinytrain_trainer_evaluate_obj) },
    { MP_ROM_QSTR(MP_QSTR_params), MP_ROM_PTR(&tinytrain_trainer_params_obj) },
    { MP_ROM_QSTR(MP_QSTR_params_file), MP_ROM_PTR(&tinytrain_trainer_params_file_obj) },
    { MP_ROM_QSTR(MP_QSTR_save), MP_ROM_PTR(&tinytrain_trainer_save_obj) },
    { MP_ROM_QSTR(MP_QSTR_load), MP_ROM_PTR(&tinytrain_trainer_load_obj) },
    { MP_ROM_QSTR(MP_QSTR_info), MP_ROM_PTR(&tinytrain_trainer_info_obj) },
    { MP_ROM_QSTR(MP_QSTR_set_lr), MP_ROM_PTR(&tinytrain_trainer_set_lr_obj) },
    { MP_ROM_QSTR(MP_QSTR_input), MP_ROM_PTR(&tinytrain_trainer_input_obj) },
    { MP_ROM_QSTR(MP_QSTR_feature_bytes), MP_ROM_PTR(&tinytrain_trainer_feature_bytes_obj) },
    { MP_ROM_QSTR(MP_QSTR_features), MP_ROM_PTR(&tinytrain_trainer_features_obj) },
    { MP_ROM_QSTR(MP_QSTR_step_features), MP_ROM_PTR(&tinytrain_trainer_step_features_obj) },
    { MP_ROM_QSTR(MP_QSTR_predict_features), MP_ROM_PTR(&tinytrain_trainer_predict_features_obj) },
};
static MP_DEFINE_CONST_DICT(tinytrain_trainer_locals_dict, tinytrain_trainer_locals_dict_table);

MP_DEFINE_CONST_OBJ_TYPE(
    tinytrain_trainer_type,
    MP_QSTR_Trainer,
    MP_TYPE_FLAG_NONE,
    make_new, tinytrain_trainer_make_new,
    print, tinytrain_trainer_print,
    locals_dict, &tinytrain_trainer_locals_dict
    );

static const mp_rom_map_elem_t tinytrain_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_tinytrain) },
    { MP_ROM_QSTR(MP_QSTR_Trainer), MP_ROM_PTR(&tinytrain_trainer_type) },
    { MP_ROM_QSTR(MP_QSTR_ARENA_SIZE), MP_ROM_INT(MICROPY_TINYTRAIN_ARENA_SIZE) },
};
static MP_DEFINE_CONST_DICT(tinytrain_module_globals, tinytrain_module_globals_table);

const mp_obj_module_t tinytrain_user_cmodule = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&tinytrain_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR_tinytrain, tinytrain_user_cmodule);

#else // MICROPY_ENABLE_DYNRUNTIME

// The core calls these; a natmod has no C library of its own. (On rv32imc
// the build links picolibc for the float maths, which brings its own.)
#if !defined(__riscv)
void *memcpy(void *dst, const void *src, size_t n) {
    return mp_fun_table.memmove_(dst, src, n);
}
void *memmove(void *dst, const void *src, size_t n) {
    return mp_fun_table.memmove_(dst, src, n);
}
void *memset(void *s, int c, size_t n) {
    return mp_fun_table.memset_(s, c, n);
}
int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    for (; n; n--, x++, y++) {
        if (*x != *y) {
            return *x < *y ? -1 : 1;
        }
    }
    return 0;
}
#endif

#define N_METHODS (15)
mp_map_elem_t tinytrain_trainer_locals_dict_table[N_METHODS];
static MP_DEFINE_CONST_DICT(tinytrain_trainer_locals_dict, tinytrain_trainer_locals_dict_table);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY

    tinytrain_trainer_type.base.type = (void *)&mp_type_type;
    tinytrain_trainer_type.name = MP_QSTR_Trainer;
    MP_OBJ_TYPE_SET_SLOT(&tinytrain_trainer_type, make_new, tinytrain_trainer_make_new, 0);
    mp_map_elem_t *e = tinytrain_trainer_locals_dict_table;
    e[0] = (mp_map_elem_t) { MP_OBJ_NEW_QSTR(MP_QSTR_step), MP_OBJ_FROM_PTR(&tinytrain_trainer_step_obj) };
    e[1] = (mp_map_elem_t) { MP_OBJ_NEW_QSTR(MP_QSTR_predict), MP_OBJ_FROM_PTR(&tinytrain_trainer_predict_obj) };
    e[2] = (mp_map_elem_t) { MP_OBJ_NEW_QSTR(MP_QSTR_logits), MP_OBJ_FROM_PTR(&tinytrain_trainer_logits_obj) };
    e[3] = (mp_map_elem_t) { MP_OBJ_NEW_QSTR(MP_QSTR_evaluate), MP_OBJ_FROM_PTR(&tinytrain_trainer_evaluate_obj) };
    e[4] = (mp_map_elem_t) { MP_OBJ_NEW_QSTR(MP_QSTR_params), MP_OBJ_FROM_PTR(&tinytrain_trainer_params_obj) };
    e[5] = (mp_map_elem_t) { MP_OBJ_NEW_QSTR(MP_QSTR_save), MP_OBJ_FROM_PTR(&tinytrain_trainer_save_obj) };
    e[6] = (mp_map_elem_t) { MP_OBJ_NEW_QSTR(MP_QSTR_load), MP_OBJ_FROM_PTR(&tinytrain_trainer_load_obj) };
    e[7] = (mp_map_elem_t) { MP_OBJ_NEW_QSTR(MP_QSTR_info), MP_OBJ_FROM_PTR(&tinytrain_trainer_info_obj) };
    e[8] = (mp_map_elem_t) { MP_OBJ_NEW_QSTR(MP_QSTR_input), MP_OBJ_FROM_PTR(&tinytrain_trainer_input_obj) };
    e[9] = (mp_map_elem_t) { MP_OBJ_NEW_QSTR(MP_QSTR_params_file), MP_OBJ_FROM_PTR(&tinytrain_trainer_params_file_obj) };
    e[10] = (mp_map_elem_t) { MP_OBJ_NEW_QSTR(MP_QSTR_feature_bytes), MP_OBJ_FROM_PTR(&tinytrain_trainer_feature_bytes_obj) };
    e[11] = (mp_map_elem_t) { MP_OBJ_NEW_QSTR(MP_QSTR_features), MP_OBJ_FROM_PTR(&tinytrain_trainer_features_obj) };
    e[12] = (mp_map_elem_t) { MP_OBJ_NEW_QSTR(MP_QSTR_step_features), MP_OBJ_FROM_PTR(&tinytrain_trainer_step_features_obj) };
    e[13] = (mp_map_elem_t) { MP_OBJ_NEW_QSTR(MP_QSTR_predict_features), MP_OBJ_FROM_PTR(&tinytrain_trainer_predict_features_obj) };
    e[14] = (mp_map_elem_t) { MP_OBJ_NEW_QSTR(MP_QSTR_set_lr), MP_OBJ_FROM_PTR(&tinytrain_trainer_set_lr_obj) };
    MP_OBJ_TYPE_SET_SLOT(&tinytrain_trainer_type, locals_dict, (void *)&tinytrain_trainer_locals_dict, 1);

    mp_store_global(MP_QSTR_Trainer, MP_OBJ_FROM_PTR(&tinytrain_trainer_type));
    mp_store_global(MP_QSTR_ARENA_SIZE, mp_const_none); // the arena comes from the GC heap

    MP_DYNRUNTIME_INIT_EXIT
}

#endif
