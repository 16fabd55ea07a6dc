"""Sizes of symbols in a firmware ELF file (e.g. the GC heap and the arena a
build reserves), read with pyelftools (the `device` extra)."""
from __future__ import annotations


def elf_symbol_sizes(path, names) -> dict:
    """{name: size} of symbols in an ELF file; {} if it cannot be read."""
    try:
        from elftools.elf.elffile import ELFFile
    except ImportError:
        return {}
    out = {}
    try:
        with open(path, "rb") as f:
            tab = ELFFile(f).get_section_by_name(".symtab")
            for n in names:
                syms = tab.get_symbol_by_name(n) if tab is not None else None
                if syms:
                    out[n] = int(syms[0]["st_size"])
    except Exception:
        return {}
    return out
