"""Progress bars that fit a log: a bounded number of redraws and no device sync for the bar.

Sweeps and training show a tqdm bar (a widget in a notebook). It redraws at most every
:data:`TERMINAL_INTERVAL` seconds on a terminal or in a notebook, and at most every
:data:`LOG_INTERVAL` seconds when stderr is a file or a pipe (a log, CI), where it also keeps
its last line (the total, the time, the rate and the last loss) instead of erasing it. A
postfix such as the loss may be a device array: it is read (a host sync) only when the bar
redraws, so a training loop that shows its loss does not wait for the device at every step.
On several processes (`jax.distributed`) only process 0 shows a bar.
"""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["Progress", "progress_bar", "TERMINAL_INTERVAL", "LOG_INTERVAL"]

#: Seconds between redraws on a terminal or in a notebook.
TERMINAL_INTERVAL = 0.5
#: Seconds between redraws when stderr is not a terminal (a log file, a pipe, CI).
LOG_INTERVAL = 10.0


class Progress:
    """A tqdm bar redrawn by its own clock: `update(n, **postfix)` counts steps and redraws
    only when `interval` seconds have passed since the last redraw; the postfix values
    (numbers or scalar arrays, shown as `name=0.1234`) are read only then, and at `close`."""

    def __init__(self, total: int, desc: str, file=None, interval: float | None = None):
        from tqdm.auto import tqdm

        stream = sys.stderr if file is None else file
        notebook = any("notebook" in c.__module__ for c in tqdm.__mro__)
        interactive = notebook or bool(getattr(stream, "isatty", lambda: False)())
        self.interval = (TERMINAL_INTERVAL if interactive else LOG_INTERVAL) if interval is None else interval
        # tqdm's own clock never fires (mininterval inf, miniters 1): this class decides
        self.bar = tqdm(total=total, desc=desc, file=file, leave=not interactive, mininterval=float("inf"), miniters=1)
        self._postfix: dict[str, Any] = {}
        self._last = time.monotonic()

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.bar.update(n)
        self._postfix.update(postfix)
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._draw()

    def _set_postfix(self) -> None:
        if self._postfix:
            self.bar.set_postfix({k: f"{float(v):.4f}" for k, v in self._postfix.items()}, refresh=False)

    def _draw(self) -> None:
        self._set_postfix()
        self.bar.refresh()

    def close(self) -> None:
        self._set_postfix()
        self.bar.close()


def progress_bar(total: int, desc: str, enabled: bool = True, file=None) -> Progress | None:
    """A :class:`Progress` bar, or None when disabled, tqdm is missing, or this is not
    process 0 of several (one bar per job, not one per host)."""
    if not enabled:
        return None
    import jax

    if jax.process_index() != 0:
        return None
    try:
        import tqdm.auto  # noqa: F401
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return Progress(total, desc, file)
