"""Build the model fuzzer (clang, libFuzzer + ASan + UBSan), make its seeds,
replay every saved regression input, then fuzz for a while and print
executions, coverage and crashes (also written as JSON).

    python fuzz/run_fuzz.py --seconds 600          # what `make fuzz SECONDS=600` runs
"""
import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "fuzz"
CORE = ROOT / "micropython_modules" / "tinytrain" / "core"
REGRESSIONS = FUZZ / "regressions"
sys.path.insert(0, str(ROOT / "host_tools"))
from tinytrain.core_flags import core_cflags, core_sources  # noqa: E402  (the core's one flag and source list)

# the core's flags, then the fuzzer build's own (clang has no -fsingle-precision-constant;
# -Wdouble-promotion already keeps double literals out of the core's float arithmetic)
FLAGS = [*core_cflags(), "-Wno-ignored-optimization-argument", "-g", "-O2", "-fno-omit-frame-pointer",
         "-fsanitize=fuzzer,address,undefined,float-divide-by-zero", "-fno-sanitize-recover=all"]


def find_clang() -> str:
    for name in ("clang", "clang-14", "clang-15", "clang-16"):
        if shutil.which(name):
            return name
    return ""


def build(out: Path, clang: str) -> Path:
    exe = out / "fuzz_model"
    sources = [FUZZ / "fuzz_model.c", FUZZ / "model_mutator.c", *core_sources(CORE)]
    subprocess.run([clang, *FLAGS, f"-I{CORE}", *map(str, sources), "-o", str(exe)], check=True)
    return exe


def make_seeds(seeds: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "host_tools"))
    subprocess.run([sys.executable, str(FUZZ / "make_seeds.py"), str(seeds)], check=True, env=env)


def replay(exe: Path) -> int:
    """Every saved crash input, once each: they must all pass now."""
    files = sorted(REGRESSIONS.glob("*")) if REGRESSIONS.is_dir() else []
    files = [f for f in files if f.is_file() and f.suffix != ".md"]
    if files:
        subprocess.run([str(exe), *map(str, files)], check=True, capture_output=True)
    return len(files)


def fuzz(exe: Path, out: Path, seeds: Path, seconds: int, jobs: int) -> dict:
    """jobs independent libFuzzer processes on one shared corpus (-reload picks up
    what the others found); their executions add up, coverage is the best one's."""
    corpus, crashes = out / "corpus", out / "crashes"
    corpus.mkdir(exist_ok=True)
    crashes.mkdir(exist_ok=True)
    logs = [out / f"fuzz-{k}.log" for k in range(jobs)]
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    procs = []
    for k, log in enumerate(logs):
        cmd = [str(exe), f"-max_total_time={seconds}", "-print_final_stats=1", "-max_len=262144",
               "-timeout=10", "-rss_limit_mb=2048", "-reload=1", f"-seed={k + 1}",
               f"-artifact_prefix={crashes}/", str(corpus), str(seeds)]
        procs.append(subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env))
    codes = [p.wait() for p in procs]
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - cpu0
    execs, edges, features = 0, 0, 0
    for log in logs:
        text = log.read_text(errors="replace")
        stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", text))
        progress = re.findall(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)", text)
        execs += int(stats.get("number_of_executed_units", progress[-1][0] if progress else 0))
        if progress:
            edges, features = max(edges, int(progress[-1][1])), max(features, int(progress[-1][2]))
    found = sorted(str(c) for c in crashes.iterdir() if c.name.startswith(("crash-", "leak-", "timeout-", "oom-")))
    return {
        "seconds": seconds,
        "jobs": jobs,
        "executions": execs,
        "exec_per_second": execs // max(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "exec_per_cpu_second": int(execs / cpu) if cpu > 0 else 0,
        "coverage_edges": edges,
        "features": features,
        "corpus_files": len(list(corpus.iterdir())),
        "crashes": found,
        "exit_code": max(codes, key=abs),
        "logs": [str(log) for log in logs],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="libFuzzer processes sharing the corpus (default: one per core)")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "fuzz")
    ap.add_argument("--fresh", action="store_true", help="start from the seeds only, not the saved corpus")
    args = ap.parse_args(argv)
    clang = find_clang()
    if not clang:
        print("clang with libFuzzer is needed (Debian: apt-get install clang)", file=sys.stderr)
        return 2
    out = args.out.resolve()
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    exe = build(out, clang)
    make_seeds(out / "seeds")
    n = replay(exe)
    print(f"replayed {n} regression inputs: all pass")
    res = fuzz(exe, out, out / "seeds", args.seconds, args.jobs)
    res["regressions_replayed"] = n
    (out / "summary.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"fuzzed {res['seconds']} s x {res['jobs']} processes: {res['executions']} executions ({res['exec_per_second']}/s; "
          f"{res['exec_per_cpu_second']} per CPU second of {res['cpu_seconds']}), "
          f"coverage {res['coverage_edges']} edges, {res['features']} features, "
          f"corpus {res['corpus_files']} files, crashes {len(res['crashes'])}")
    for c in res["crashes"]:
        print(f"  crash input: {c} (replay: {exe} {c}; logs {', '.join(res['logs'])})")
    return 1 if res["crashes"] or res["exit_code"] not in (0,) else 0


if __name__ == "__main__":
    sys.exit(main())
