"""The markdown tables of `make bench` (benchmarks/results/m7.md) from its results."""
from __future__ import annotations

KIB = 1024


def _kib(n) -> str:
    return f"{n / KIB:.1f}"


def _cached(c: dict) -> str:
    """Mean instructions a step with the frozen-prefix cache over the case's epochs."""
    if c.get("cached_step_instructions") is None:
        return "–"
    return f"{c['cached_step_instructions'] / 1e6:.1f} ({c['cache_epochs']} ep.)"


def paper_table(cases: list) -> list:
    lines = ["| model | scheme | arena B | input B | stack B | **step SRAM** B (KiB) | paper KB | "
             "step M instr. | cached step M instr. | inference M instr. | paper ms/step |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in cases:
        lines.append(f"| {c['model']} | {c['scheme']} | {c['arena']:,} | {c['input']:,} | {c['stack']:,} | "
                     f"**{c['step_sram']:,}** ({_kib(c['step_sram'])}) | {c['paper_kb']} | "
                     f"{c['step_instructions'] / 1e6:.1f} | {_cached(c)} | {c['inference_instructions'] / 1e6:.1f} | "
                     f"{c['paper_ms']} |")
    return lines


def breakdown_table(c: dict, top: int = 8) -> list:
    lines = [f"**{c['model']} {c['scheme']}**: instructions per op kind (one step / one inference, "
             "-DTT_OP_PROFILE)", "", "| op kind | step M | inference M |", "|---|---:|---:|"]
    inf = c["inference_breakdown"]
    for k, v in list(c["step_breakdown"].items())[:top]:
        lines.append(f"| {k} | {v / 1e6:.2f} | {inf.get(k, 0) / 1e6:.2f} |")
    rest = sum(list(c["step_breakdown"].values())[top:])
    if rest:
        lines.append(f"| (other kinds) | {rest / 1e6:.2f} | |")
    return lines + [""]


def host_table(host: dict | None) -> list:
    if not host:
        return ["Host: not measured (--no-host, or the paper's models are absent)."]
    if host.get("skipped"):
        return [f"Host: PyTorch skipped: {host['skipped']}"]
    s, t = host["simulator"], host["torch"]
    return [f"Host, {host['case']}, batch 1, one thread, median CPU time of {host['steps']} steps after "
            f"{host['warmup']} warm-up steps; each engine in its own process, {host.get('rounds', 1)} runs "
            f"alternating, the fastest counts (`{host['command']}`):", "",
            "| engine | ms per step | peak memory growth during the steps (RSS) |", "|---|---:|---:|",
            f"| tinytrain simulator (C core via ctypes) | {s['ms']:.1f} | {s['rss_growth'] / 1e6:.2f} MB "
            f"(arena {s['arena'] / 1e3:.1f} kB) |",
            f"| PyTorch {t['version']} CPU, float32 | {t['ms']:.1f} | {t['rss_growth'] / 1e6:.2f} MB |", "",
            f"Simulator / PyTorch time: {s['ms'] / t['ms']:.2f}x. {host['note']} Same function: the "
            f"correlation of PyTorch's float logits with the int8 core's (dequantised) is "
            f"{t['logit_correlation']:.3f}. The simulator's arena is allocated when the trainer is made, "
            f"so its steps allocate nothing."]


def markdown(results: dict) -> str:
    paper = [c for c in results["cases"] if "scheme" in c]
    lines = ["# Cortex-M7 benchmark (`make bench`)", "",
             f"Emulated Cortex-M7 (qemu mps2-an500, -icount shift=0). Median over {results['steps']} training "
             f"steps on different digits (scikit-learn, upscaled to 128x128x3, 10 classes, fresh classifier) and "
             f"{results['evals']} inferences; run time {results['seconds']} s.", "",
             "Step SRAM = arena (it holds the 128x128x3 input) + input outside the arena + the stack "
             "the core's calls used on the M7. The paper's figures (STM32F746, sparse update + operator "
             "reordering) count their engine's whole peak, input included; one figure per model. Instructions "
             "are not cycles: the paper's ms/step at 216 MHz are 118M/81M/96M cycles (MCUNet/MbV2/Proxyless). "
             "Cached step: the mean over that many epochs of the same samples with the frozen-prefix cache "
             "(the first epoch runs the prefix and stores each sample's cut; `benchmarks/bench_cache.py`).",
             ""]
    if paper:
        lines += paper_table(paper) + [""]
        for c in paper:
            if c["scheme"] == "49kb":
                lines += breakdown_table(c)
    else:
        lines += ["The paper's models were not found: no paper table.", ""]
    lines += host_table(results.get("host")) + [""]
    return "\n".join(lines) + "\n"
