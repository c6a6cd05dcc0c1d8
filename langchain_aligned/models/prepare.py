"""``python -m langchain_aligned.models.prepare``: convert the embedded models once.

Run by ``make setup`` so the first chat call does not pay the GGUF conversion. An
alias whose package is not installed is reported and skipped.
"""

from __future__ import annotations

import sys
import time

from ..errors import ModelNotInstalledError
from .embedded import EMBEDDED_MODELS, embedded_model_path


def main(argv: list[str] | None = None) -> int:
    aliases = (argv if argv is not None else sys.argv[1:]) or list(EMBEDDED_MODELS)
    status = 0
    for alias in aliases:
        start = time.perf_counter()
        try:
            path = embedded_model_path(alias)
        except ModelNotInstalledError as exc:
            print(f"skip {alias}: {exc}")
            status = 1
            continue
        print(f"{alias}: {path} ({time.perf_counter() - start:.1f} s)")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
