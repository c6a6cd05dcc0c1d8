"""Run every benchmark (``make bench``) with a progress bar.

Each ``benchmarks/bench_*.py`` script runs in its own process (so one crash does not
hide the others and memory is returned between them) and writes its JSON and PNG into
``benchmarks/results/``; then ``benchmarks/report.py`` rewrites ``docs/benchmarks.md``
from the results. ``--quick`` passes ``--quick`` to every script.

    python -m benchmarks.run_all            # full settings
    python -m benchmarks.run_all --quick    # small settings, minutes not hours
    python -m benchmarks.run_all --only engine rejection
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

HERE = Path(__file__).parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small settings for every benchmark")
    parser.add_argument("--only", nargs="*", help="names such as engine, rejection, speculative")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    failures = []
    log_dir = HERE / "results" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(scripts, unit="benchmark")
    for script in bar:
        name = script.stem.removeprefix("bench_")
        bar.set_description(name)
        command = [sys.executable, "-m", f"benchmarks.{script.stem}"] + (
            ["--quick"] if args.quick else []
        )
        start = time.perf_counter()
        with open(log_dir / f"{name}.log", "w") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parent)
        tqdm.write(
            f"{name}: {'ok' if code == 0 else f'FAILED ({code})'} in {time.perf_counter() - start:.0f} s"
        )
        if code:
            failures.append(name)
    from benchmarks import report

    report.main()  # docs/benchmarks.md from whatever results exist now
    if failures:
        print(f"failed: {', '.join(failures)} (logs in {log_dir})")
        return 1
    print(f"all results in {HERE / 'results'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
