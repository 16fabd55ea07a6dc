"""Whole-step SRAM: what one training step needs, counted the same way
everywhere (`tinytrain plan`, `tinytrain info`, `make bench`, the README):

    step SRAM = arena + the input wherever it lives + stack

- arena: the bytes a trainer needs (the core's tt_model_arena_bytes, the
  plan's arena_size), which hold the input slot: the input is an arena tensor
  whose bytes the stem's output and later tensors reuse;
- input: bytes of input outside that arena: none (the line says 0, the
  format keeps the input nowhere else);
- stack: the most stack one step of that very model file (matched by its
  CRC) used on the emulated Cortex-M7 in `make bench`
  (benchmarks/results/m7.json), where measured; else a bound: the most any
  case of that benchmark used, plus STACK_MARGIN.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import modelfile as mf

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "m7.json"
STACK_MARGIN = 256  # bytes added to the largest measured stack for an unmeasured model


@dataclass
class StepSram:
    arena: int
    input_bytes: int
    stack: int
    stack_note: str

    @property
    def input(self) -> int:
        """Bytes of input outside the arena: none, the format keeps the
        input in its arena slot only (a 1.x file's outside input is refused)."""
        return 0

    @property
    def total(self) -> int:
        return self.arena + self.input + self.stack

    def line(self) -> str:
        return (f"step SRAM: {self.total:,} bytes (arena {self.arena:,}, input {self.input:,}, "
                f"stack {self.stack:,}); the {self.input_bytes:,}-byte input lives in the arena; "
                f"stack {self.stack_note}")


def measured_stacks(results: Path = RESULTS) -> dict:
    """{model CRC: stack bytes of one step} from the benchmark's results file."""
    try:
        cases = json.loads(Path(results).read_text())["cases"]
    except (OSError, ValueError, KeyError):
        return {}
    return {c["model_crc32"]: c["stack"] for c in cases if "model_crc32" in c and "stack" in c}


def step_sram(data: bytes, stacks: dict | None = None) -> StepSram:
    """The step SRAM of a model file (its bytes)."""
    m = mf.Model.parse(data)
    h = m.header
    t_in = m.tensors[h.input_tensor]
    stacks = measured_stacks() if stacks is None else stacks
    crc = h.crc32
    if crc in stacks:
        stack, note = stacks[crc], "measured on the Cortex-M7 for this model file (make bench)"
    elif stacks:
        stack = max(stacks.values()) + STACK_MARGIN
        note = (f"a bound: the most any make bench case used on the Cortex-M7 "
                f"({max(stacks.values()):,}) + {STACK_MARGIN}")
    else:
        stack, note = 0, "not counted: no make bench results (benchmarks/results/m7.json)"
    return StepSram(h.arena_size, t_in.numel, stack, note)
