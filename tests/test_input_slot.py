"""The input slot: Trainer.input() is the input tensor's bytes in the arena
(format 1.2); training or predicting through it gives bit for bit what
passing x gives, the plan reuses its bytes after the first layers, a 1.1
file (input outside the arena) still trains the same, and the step SRAM
line counts arena + input + stack as measured."""
import numpy as np
import pytest

import tinytrain
from tinytrain import modelfile as mf
from tinytrain.compiler import compile_model
from tinytrain.sram import step_sram
from tinytrain.trainer import measure_peak

import netzoo

CASES = [(name, scheme, fuse) for name in netzoo.ZOO for scheme in ("full", "sparse", "bias_only")
         for fuse in (True, False)]


def _plan(name, scheme, fuse):
    b = netzoo.ZOO[name](0)
    g = b.quantize(netzoo.calib(b))
    plan = compile_model(g, netzoo.SCHEMES[scheme](g), fuse=fuse)
    xs, ys = netzoo.samples(b, g, 4, seed=3)
    return plan, xs, ys


def _fill(t, x):
    t.input()[:] = memoryview(np.ascontiguousarray(x, np.int8)).cast("B").cast("b")


@pytest.mark.parametrize("name,scheme,fuse", CASES)
def test_step_and_predict_through_the_slot_equal_passing_x(name, scheme, fuse):
    plan, xs, ys = _plan(name, scheme, fuse)
    by_x, by_slot = tinytrain.Trainer(plan.data), tinytrain.Trainer(plan.data)
    for x, y in zip(xs, ys):
        want = by_x.step(x, y)
        _fill(by_slot, x)
        assert by_slot.step(y) == want
        _fill(by_slot, x)
        assert by_slot.step(None, y) == by_x.step(x, y)
    assert by_slot.params() == by_x.params()
    for x in xs:
        want_cls, want_logits = by_x.predict(x), by_x.logits(x)
        _fill(by_slot, x)
        assert by_slot.predict() == want_cls
        _fill(by_slot, x)
        assert by_slot.logits() == want_logits


def test_input_is_a_writable_int8_view_of_the_input_tensor():
    plan, xs, _ = _plan("cnn", "sparse", True)
    t = tinytrain.Trainer(plan.data)
    buf = t.input()
    assert (buf.format, buf.readonly, len(buf)) == ("b", False, xs[0].size)
    m = mf.Model.parse(plan.data)
    tid = m.header.input_tensor
    rec = m.tensors[tid]
    assert not rec.flags & mf.TF_STREAMED and rec.arena_off >= plan.persist_size
    _fill(t, xs[1])
    assert t.tensor(tid, rec.size) == xs[1].tobytes()


@pytest.mark.parametrize("name,scheme", [(n, s) for n in netzoo.ZOO for s in ("full", "sparse", "bias_only")])
def test_plan_reuses_the_inputs_bytes_after_its_last_reader(name, scheme):
    """The input lives from op 0 to its last reader; other tensors take its
    bytes afterwards (in every zoo plan some do), never while it lives."""
    plan, _, _ = _plan(name, scheme, True)
    m = plan.model
    tin = plan.tensors[m.header.input_tensor]
    readers = [i for i, op in enumerate(m.ops) if op.kind in (mf.OP_FWD, mf.OP_FWD_FUSED) and
               m.header.input_tensor in (m.layers[op.layer].inp, m.layers[op.t[mf.FUSED_A]].inp
                                         if op.kind == mf.OP_FWD_FUSED and op.t[mf.FUSED_A] != mf.NONE else None)]
    assert (tin.first, tin.last) == (0, max(readers))
    sharing = [o for o in plan.tensors if o is not tin and o.rec.size and not o.rec.flags & mf.TF_STREAMED
               and o.rec.arena_off < tin.rec.arena_off + tin.rec.size
               and tin.rec.arena_off < o.rec.arena_off + o.rec.size]
    assert sharing
    assert all(o.first > tin.last for o in sharing)


@pytest.mark.parametrize("name,scheme", [("cnn", "sparse"), ("mbnet", "full")])
def test_input_outside_the_arena_is_refused(name, scheme):
    """1.x files kept the input outside the plan's arena (tensor flag 0x01);
    2.0 has the input in the arena only: such a file, or one of major
    version 1, is refused at open; step SRAM counts no input beside the arena."""
    plan, _, _ = _plan(name, scheme, True)
    m = mf.Model.parse(plan.data)
    m.tensors[m.header.input_tensor].flags = 0x01
    with pytest.raises(ValueError, match=f"tensor {m.header.input_tensor}: unknown flags"):
        tinytrain.Trainer(m.pack())
    m = mf.Model.parse(plan.data)
    m.header.version_major, m.header.version_minor = 1, 1
    with pytest.raises(ValueError, match="model format version 1.1"):
        tinytrain.Trainer(m.pack())
    s = step_sram(plan.data, {})
    assert (s.arena, s.total) == (plan.arena_size, plan.arena_size)
    assert s.line().startswith(f"step SRAM: {plan.arena_size:,} bytes (arena {plan.arena_size:,}, input 0, ")


@pytest.mark.parametrize("name,scheme,fuse", [("cnn", "sparse", True), ("mbnet", "sparse", "all")])
def test_step_sram_is_arena_plus_input_plus_stack_as_measured(name, scheme, fuse):
    """The simulator's measured high-water mark, with the input written into
    its slot, is the plan's last byte: the arena of the step SRAM line holds
    the input, and the stack comes from the results file by model CRC."""
    plan, xs, ys = _plan(name, scheme, fuse)
    measured = measure_peak(plan.data, list(zip(xs, ys)))
    assert measured == plan.used_bytes
    crc = mf.Model.parse(plan.data).header.crc32
    s = step_sram(plan.data, {crc: 1234, 99: 2000})
    assert (s.arena, s.stack) == (plan.arena_size, 1234)
    assert s.total == plan.arena_size + 1234
    assert s.line().startswith(f"step SRAM: {s.total:,} bytes (arena {plan.arena_size:,}, input 0, stack 1,234)")
    other = step_sram(plan.data, {99: 2000})
    assert other.stack > 2000 and "bound" in other.stack_note
