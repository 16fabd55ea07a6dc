"""A compiled model and what the report and plot need."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import modelfile as mf


@dataclass
class Plan:
    """The compiled model, its memory plan and op list."""

    data: bytes
    model: mf.Model
    tensors: list
    op_names: list
    persist_size: int
    arena_size: int
    live_bytes: list  # per op: persistent + tensors live at that op
    trained_params: int
    fusions: dict = field(default_factory=dict)  # fused ops: {depthwise: (producer or None, consumer or None)}
    in_place: dict = field(default_factory=dict)  # {input gradient: (output gradient it overwrites, gap bytes)}
    over_input: dict = field(default_factory=dict)  # fused ops: {output: (input it overwrites, gap bytes)}

    @property
    def peak_live(self) -> int:
        return max(self.live_bytes)

    def peak_op(self) -> int:
        return int(np.argmax(self.live_bytes))

    @property
    def used_bytes(self) -> int:
        """The end of the highest placed tensor (or of the trained parameters):
        the last arena byte one training step touches, which the simulator
        measures (trainer.measure_peak). arena_size is this rounded up to
        ALIGN; peak_live (the most bytes live at once) is at most this, less
        where the placement leaves gaps."""
        ends = [t.rec.arena_off + t.rec.size for t in self.tensors
                if t.rec.size and not t.rec.flags & mf.TF_STREAMED]
        return max(ends + [self.persist_size])

    def live_at(self, op_index: int) -> list:
        return [t for t in self.tensors if t.first <= op_index <= t.last and t.rec.size]

    def report(self) -> str:
        lines = [f"arena {self.arena_size} bytes: {self.persist_size} trained parameters + "
                 f"{self.arena_size - self.persist_size} working memory",
                 f"peak live {self.peak_live} bytes at op {self.peak_op()} ({self.op_names[self.peak_op()]})",
                 f"trained parameters: {self.trained_params}"]
        streamed = [t for t in self.tensors if t.rec.flags & mf.TF_STREAMED]
        if streamed:
            lines.append(f"fused ops: {len(self.fusions)}; streamed row by row, never stored whole: " +
                         ", ".join(f"{t.name} ({t.rec.size} B)" for t in streamed))
        lines += ["", "op  live_bytes  name"]
        for i, (name, live) in enumerate(zip(self.op_names, self.live_bytes)):
            lines.append(f"{i:3d} {live:10d}  {name}")
        lines += ["", f"tensors live at the peak (op {self.peak_op()}):"]
        for t in sorted(self.live_at(self.peak_op()), key=lambda t: -t.rec.size):
            lines.append(f"  {t.rec.size:8d} B @ {t.rec.arena_off:7d}  {t.name}")
        return "\n".join(lines)
