"""Which input rows a fused op reads while it forms each output row, found
by walking its row loop as docs/format.md describes it ("Fused ops"), apart
from the compiler's and the reader's closed-form rule; and how far above
its input start the op's output may then begin."""
from tinytrain import modelfile as mf


def window(o: int, kh: int, stride: int, pad: int, h: int) -> range:
    return range(max(o * stride - pad, 0), min(o * stride - pad + kh, h))


def input_rows_read(m: mf.Model, op: mf.OpRec) -> list:
    """Per output row: the input rows read while forming it (its own
    iteration of the loop, before the row is written)."""
    B = m.layers[op.layer]
    A = m.layers[op.t[mf.FUSED_A]] if op.t[mf.FUSED_A] != mf.NONE else None
    C = m.layers[op.t[mf.FUSED_C]] if op.t[mf.FUSED_C] != mf.NONE else None
    x = m.tensors[(A or B).inp]
    out_h = m.tensors[(C or B).out].h
    b_in_h = m.tensors[B.inp].h
    reads, computed = [], set()  # A's rows computed so far (each exactly once)
    for oh in range(out_h):
        rows = set()
        for j in window(oh, B.kh, B.stride, B.pad_top, b_in_h):
            if A is None:
                rows.add(j)
            elif j not in computed:
                computed.add(j)
                rows |= set(window(j, A.kh, A.stride, A.pad_top, x.h))
        reads.append(rows)
    return reads


def fused_io(m: mf.Model, op: mf.OpRec) -> tuple:
    """(input tensor id, output tensor id) of a fused op."""
    B = m.layers[op.layer]
    a, c = op.t[mf.FUSED_A], op.t[mf.FUSED_C]
    return (m.layers[a].inp if a != mf.NONE else B.inp), (m.layers[c].out if c != mf.NONE else B.out)


def largest_shift(m: mf.Model, op: mf.OpRec) -> int:
    """The most bytes above the input's start the output may begin: output
    row r (written after its reads) must miss every input row a later output
    row reads (exact when the output does not start past the input's end)."""
    xi, yi = fused_io(m, op)
    x, y = m.tensors[xi], m.tensors[yi]
    reads = input_rows_read(m, op)
    in_row, out_row = x.w * x.c, y.w * y.c
    shift = x.size
    for r in range(y.h):
        later = set().union(*reads[r + 1:])
        if later:
            shift = min(shift, min(later) * in_row - (r + 1) * out_row)
    return shift


def overlap_is_safe(m: mf.Model, op: mf.OpRec) -> bool:
    """No output row lands on input bytes a later output row reads."""
    xi, yi = fused_io(m, op)
    x, y = m.tensors[xi], m.tensors[yi]
    reads = input_rows_read(m, op)
    in_row, out_row = x.w * x.c, y.w * y.c
    for r in range(y.h):
        lo, hi = y.arena_off + r * out_row, y.arena_off + (r + 1) * out_row
        for i in set().union(*reads[r + 1:]):
            if lo < x.arena_off + (i + 1) * in_row and x.arena_off + i * in_row < hi:
                return False
    return True


def with_output_at(data: bytes, op_index: int, shift: int) -> bytes:
    """The model file with op op_index's input and output moved past the
    arena's end, the output `shift` bytes above the input's start (both
    4-byte aligned: shift a multiple of 4). Each is live with the other only
    at that op, so no other tensor is affected."""
    assert shift % 4 == 0
    m = mf.Model.parse(data)
    xi, yi = fused_io(m, m.ops[op_index])
    x, y = m.tensors[xi], m.tensors[yi]
    x.arena_off = (m.header.arena_size + max(-shift, 0) + 3) // 4 * 4
    y.arena_off = x.arena_off + shift
    m.header.arena_size = (max(x.arena_off + x.size, y.arena_off + y.size) + 3) // 4 * 4
    return m.pack()



def prep_parts(m: mf.Model, op: mf.OpRec) -> list:
    """(flag, bytes) of each layer of an op that can have prepared constants
    (docs/format.md, "Prepared constants"): a fused op's A, B, C in this
    order, a forward op's 1x1 layer (flag 0)."""
    from tinytrain.compiler.prepared import op_parts
    return op_parts(op, m.layers, m.tensors)


def with_all_prepared(data: bytes) -> tuple:
    """(model file, parts given): every op given the prepared constants of
    every layer that can have them (a forward op's depthwise layer too, which
    the compiler leaves out: it gains nothing), each op's slot in bytes of
    its own past the arena's end, whatever the compiler found room for."""
    from tinytrain.compiler.prepared import prep_bytes
    m = mf.Model.parse(data)
    given = 0
    for op in m.ops:
        parts = prep_parts(m, op)
        if op.kind == mf.OP_FWD and m.layers[op.layer].kind == mf.L_DWCONV:
            parts = [(0, prep_bytes(m.layers[op.layer], m.tensors))] if prep_bytes(m.layers[op.layer], m.tensors) else []
        if not parts:
            continue
        size = sum(n for _, n in parts)
        off = (m.header.arena_size + 3) // 4 * 4
        m.tensors.append(mf.TensorRec(off, size, mf.T_ACT, 0, 1, 1, size, 1.0, 0))
        m.header.arena_size = off + (size + 3) // 4 * 4
        op.t[mf.FWD_PREP if op.kind == mf.OP_FWD else mf.FUSED_PREP] = len(m.tensors) - 1
        op.flags = sum(f for f, _ in parts)
        given += len(parts)
    return m.pack(), given
