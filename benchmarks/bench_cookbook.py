"""Time every cookbook notebook top to bottom in a fresh kernel, default settings.

The cookbook promises each notebook runs in under three minutes on a 2-core CPU; this
measures it (the slow test tier runs them with ``COOKBOOK_SMALL=1``). Model loading and
the one-time GGUF conversion are inside the measured time (a fresh kernel loads the
models), but the conversion cache is warmed first, as after ``make setup``.

    python -m benchmarks.bench_cookbook [--quick]    # --quick: small settings
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import plot_path, write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cookbook"))
from runner import NOTEBOOKS, run_notebook

LIMIT_SECONDS = 180


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="COOKBOOK_SMALL=1 settings")
    args = parser.parse_args()
    from langchain_aligned.models import load_model

    load_model("smollm2-135m-instruct")  # the conversion cache, as after `make setup`
    results = {}
    for path in NOTEBOOKS:
        seconds, errors = run_notebook(path, small=args.quick)
        results[path.stem] = {"seconds": seconds, "errors": len(errors)}
        print(f"{path.stem:<28} {seconds:6.1f} s  errors {len(errors)}", flush=True)
    out = write_json(
        "cookbook",
        {
            "settings": "small" if args.quick else "default",
            "limit_seconds": LIMIT_SECONDS,
            "notebooks": results,
        },
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    names = list(results)
    ax.barh(names, [results[n]["seconds"] for n in names])
    ax.axvline(LIMIT_SECONDS, color="red", linestyle="--", label="3-minute budget")
    ax.set_xlabel("seconds, fresh kernel, top to bottom")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plot_path("cookbook"), dpi=120)
    print(f"wrote {out}")
    if any(r["errors"] for r in results.values()):
        raise SystemExit("a notebook raised an error")


if __name__ == "__main__":
    main()
