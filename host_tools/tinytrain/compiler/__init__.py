"""Compile a quantised graph and a training scheme into a model file.

This is the host half of the engine, one step a module:

    scheme.py    what to train (Scheme) and which channels (choose_channels)
    schedule.py  autodiff and pruning (only gradients somebody needs are
                 computed), the op list (each layer's update fused into its
                 gradient kernel, so no weight gradient is ever stored), and
                 every tensor's lifetime
    fuse.py      layer fusion: frozen depthwise layers run row by row with
                 their producer and/or consumer conv
    place.py     the arena: trained parameters first, then every working
                 tensor placed by lifetime (first fit, largest first)
    inplace.py   backward ops writing their input gradient over their
                 output gradient (frozen stride-1 depthwise layers)
    requant.py   the fixed-point requantisation factors
    emit.py      layer records, the constant blob (QAS factors included),
                 the header
    compile.py   compile_model: the steps in order
    plan.py      Plan: the result, with its memory report
    from_model.py  graph_from_model: the graph back out of a model file
"""
from .compile import compile_model
from .emit import QAS_DEAD_CHANNEL_FLOOR
from .from_model import graph_from_model
from .fuse import FUSE_MODES, find_fusions
from .place import ALIGN
from .plan import Plan
from .requant import add_multipliers, quantize_multiplier, softmax_table
from .schedule import PlannedTensor
from .scheme import Scheme, choose_channels

__all__ = ["ALIGN", "FUSE_MODES", "QAS_DEAD_CHANNEL_FLOOR", "Plan", "PlannedTensor", "Scheme",
           "add_multipliers", "choose_channels", "compile_model", "find_fusions", "graph_from_model",
           "quantize_multiplier", "softmax_table"]
