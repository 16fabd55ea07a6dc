"""The memory plan: tensors whose lifetimes overlap never share bytes, every
tensor lies in the arena, the trained parameters have their own area, and the
bytes a step actually touches equal the planned arena."""
import itertools

import pytest

import tinytrain
from tinytrain import modelfile as mf

import fused_rows
import netzoo


def check_plan(plan):
    placed = [t for t in plan.tensors if not t.rec.flags & mf.TF_STREAMED]
    for t in placed:
        assert plan.persist_size <= t.rec.arena_off and t.rec.arena_off + t.rec.size <= plan.arena_size
        assert t.rec.arena_off % 4 == 0
    shared = set()
    byname = {t.name: t for t in plan.tensors}
    for dx_name, (g_name, gap) in plan.in_place.items():
        # an input gradient written over its output gradient: a frozen stride-1
        # depthwise layer, the output gradient dying where the input's is born,
        # and at least kh - pad_top rows between them (compiler.in_place)
        dx, g = byname[dx_name], byname[g_name]
        # (a residual's gradient has one reader per branch: the in-place op is the last)
        op, = [op for op in plan.model.ops if op.kind == mf.OP_BWD and op.t[0] == plan.tensors.index(g)
               and op.t[3] == plan.tensors.index(dx)]
        L = plan.model.layers[op.layer]
        assert L.kind == mf.L_DWCONV and L.stride == 1 and L.n_train == 0
        assert g.last == dx.first and dx.rec.shape == g.rec.shape
        assert g.rec.arena_off - dx.rec.arena_off == gap >= 2 * (L.kh - L.pad_top) * dx.rec.w * dx.rec.c
        shared.add(frozenset((dx_name, g_name)))
    for y_name, (x_name, gap) in plan.over_input.items():
        # a fused op's output over the input that dies there, no output row
        # on input rows a later output row reads (fused_rows walks the loop)
        x, y = byname[x_name], byname[y_name]
        i = x.last
        op = plan.model.ops[i]
        assert op.kind == mf.OP_FWD_FUSED and y.first == i
        assert fused_rows.fused_io(plan.model, op) == (plan.tensors.index(x), plan.tensors.index(y))
        assert x.rec.arena_off - y.rec.arena_off == gap >= 0
        assert fused_rows.overlap_is_safe(plan.model, op)
        shared.add(frozenset((x_name, y_name)))
    for a, b in itertools.combinations(placed, 2):
        if a.first <= b.last and b.first <= a.last and frozenset((a.name, b.name)) not in shared:
            assert a.rec.arena_off + a.rec.size <= b.rec.arena_off or \
                b.rec.arena_off + b.rec.size <= a.rec.arena_off, (a.name, b.name)
    assert plan.peak_live <= plan.arena_size


@pytest.mark.parametrize("name", sorted(netzoo.ZOO))
@pytest.mark.parametrize("scheme", sorted(netzoo.SCHEMES))
def test_plan_is_sound(name, scheme):
    b, g, plan = netzoo.build(name, scheme)
    check_plan(plan)
    t = tinytrain.Trainer(plan.data)
    xs, ys = netzoo.samples(b, g, 2)
    for x, y in zip(xs, ys):
        t.step(x.tobytes(), y)
    info = t.info()
    assert info["peak_bytes"] <= plan.arena_size
    assert info["arena_bytes"] == plan.arena_size


def test_pruning_keeps_only_needed_gradients():
    """Bias-only training of the head: no gradient reaches the first layers."""
    b, g, plan = netzoo.build("mbnet", "bias_only")
    trained = {g.layers[L.layer].name for L in plan.model.ops if L.kind == mf.OP_BWD}
    first = g.param_layers[0].name
    assert first not in trained
    saved = [t for t in plan.tensors if t.rec.kind == mf.T_SAVED]
    assert saved == []  # no weight is trained, so no input is kept


def test_update_fused_before_input_gradient():
    """Operator reordering: each layer's weight update happens in its backward op,
    and no weight-gradient tensor exists in the plan."""
    b, g, plan = netzoo.build("cnn", "full")
    kinds = {t.rec.kind for t in plan.tensors}
    assert kinds <= {mf.T_ACT, mf.T_GRAD, mf.T_MASK, mf.T_SAVED}
    # every gradient tensor is shaped like an activation: none holds a weight gradient
    act_shapes = {t.rec.shape for t in plan.tensors if t.rec.kind == mf.T_ACT}
    weight_shapes = {layer.weight.shape for layer in g.param_layers}
    for t in plan.tensors:
        if t.rec.kind == mf.T_GRAD:
            assert t.rec.shape in act_shapes and t.rec.shape not in weight_shapes
