"""The progress bar: loss, perplexity and tokens/s; silent under CI or when stderr is not a terminal."""

from __future__ import annotations

import math
import os
import sys

from tqdm import tqdm


def progress_bar_enabled(requested: bool = True) -> bool:
    """A bar only for a person watching: not under CI (``CI=true``), not into a log file or a pipe."""
    ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    return requested and not ci and sys.stderr.isatty()


class ProgressBar:
    """A tqdm bar over optimizer steps, or one line per :meth:`note` when disabled."""

    def __init__(self, total: int, initial: int, enabled: bool, description: str = "train") -> None:
        self.bar = tqdm(total=total, initial=initial, desc=description, unit="step", dynamic_ncols=True,
                        file=sys.stderr) if enabled else None

    def update(self, steps: int, loss: float, tokens_per_s: float) -> None:
        if self.bar is None:
            return
        ppl = math.exp(loss) if loss < 50 else float("inf")
        self.bar.set_postfix(loss=f"{loss:.3f}", ppl=f"{ppl:.2f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
        self.bar.update(steps)

    def note(self, line: str) -> None:
        """One line that stays on screen (validation results); printed to stderr either way."""
        if self.bar is None:
            print(line, file=sys.stderr, flush=True)
        else:
            self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
