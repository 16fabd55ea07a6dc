"""ctypes binding of the C core as built for the host (the simulator)."""
from __future__ import annotations

import ctypes
import importlib.machinery
import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent


class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * 112)]

    @property
    def text(self) -> str:
        return self.msg.decode("utf-8", "replace")


GRAD_HOOK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32,
                             ctypes.c_int64, ctypes.c_float)

STATUS = ["ok", "truncated", "magic", "version", "crc", "align", "header", "section", "tensor",
          "layer", "shape", "blob", "quant", "perm", "op", "arena", "arg", "state", "params", "nomem"]


def _library_path() -> Path:
    override = os.environ.get("TINYTRAIN_CORE_LIB")
    if override:
        return Path(override)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = _HERE / f"_core{suffix}"
        if p.exists():
            return p
    raise ImportError("the tinytrain C core is not built: run `make setup` "
                      "(or `pip install -e .`) in the project")


def _load():
    lib = ctypes.CDLL(str(_library_path()))
    p, u32, i32, sz, f32 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int32, ctypes.c_size_t, ctypes.c_float
    sigs = {
        "tt_model_open": (ctypes.c_int, [p, p, sz, ctypes.POINTER(Error)]),
        "tt_model_arena_bytes": (u32, [p]),
        "tt_model_input_bytes": (u32, [p]),
        "tt_model_check_params": (ctypes.c_int, [p, p, sz, ctypes.POINTER(Error)]),
        "tt_trainer_input": (p, [p, ctypes.POINTER(u32)]),
        "tt_trainer_init": (ctypes.c_int, [p, p, p, sz, f32, ctypes.POINTER(Error)]),
        "tt_trainer_set_lr": (ctypes.c_int, [p, f32, ctypes.POINTER(Error)]),
        "tt_trainer_step": (ctypes.c_int, [p, p, sz, i32, p, sz, ctypes.POINTER(f32),
                                           ctypes.POINTER(Error)]),
        "tt_trainer_predict": (ctypes.c_int, [p, p, sz, ctypes.POINTER(i32), ctypes.POINTER(Error)]),
        "tt_trainer_logits": (p, [p]),
        "tt_model_cut_bytes": (u32, [p]),
        "tt_trainer_prefix": (ctypes.c_int, [p, p, sz, ctypes.POINTER(Error)]),
        "tt_trainer_cut": (p, [p, ctypes.POINTER(u32)]),
        "tt_trainer_step_from_cut": (ctypes.c_int, [p, p, sz, i32, p, sz, ctypes.POINTER(f32),
                                                    ctypes.POINTER(Error)]),
        "tt_trainer_predict_from_cut": (ctypes.c_int, [p, p, sz, ctypes.POINTER(i32), ctypes.POINTER(Error)]),
        "tt_trainer_params": (p, [p, ctypes.POINTER(u32)]),
        "tt_trainer_trained_param_count": (u32, [p]),
        "tt_trainer_tensor": (p, [p, u32]),
        "tt_crc32": (u32, [u32, p, sz]),
        "tt_params_file_size": (u32, [p]),
        "tt_params_file_read": (sz, [p, u32, p, sz]),
        "tt_params_check": (ctypes.c_int, [p, sz, ctypes.POINTER(Error)]),
        "tt_params_check_model": (ctypes.c_int, [p, sz, u32, u32, ctypes.POINTER(Error)]),
        "tt_params_load": (ctypes.c_int, [p, p, sz, ctypes.POINTER(Error)]),
        "tts_sizeof_model": (sz, []),
        "tts_sizeof_trainer": (sz, []),
        "tts_set_grad_hook": (None, [p, GRAD_HOOK, p]),
        "tts_steps": (u32, [p]),
        "tts_set_steps": (None, [p, u32]),
        "tts_lr": (f32, [p]),
        "tts_cut_op": (u32, [p]),
        "tts_cut_tensor": (u32, [p]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


lib = _load()
