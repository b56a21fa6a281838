"""Progress of a long loop: a tqdm bar with items/s on a terminal, periodic log lines elsewhere
(a log file, CI, a pipe), where a bar's carriage returns would be noise."""
from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

_LOGGER = logging.getLogger("detection")


class Progress:
    """``with Progress(total, "inference", unit="img") as p: ... p.update(n)``.

    On a terminal (stderr a tty) a tqdm bar; otherwise a log line ``desc: done/total unit, rate
    unit/s, eta`` every ``log_period_s`` seconds and one at the end. ``total`` None: unknown length.
    ``enabled=False`` shows nothing (e.g. on the non-main processes)."""

    def __init__(self, total: int | None, desc: str, unit: str = "img", log_period_s: float = 10.0,
                 logger: logging.Logger | None = None, enabled: bool = True, stream=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.log_period_s = log_period_s
        self.logger = logger or _LOGGER
        self.enabled = enabled
        stream = stream if stream is not None else sys.stderr
        self.bar = (tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=stream)
                    if enabled and _isatty(stream) else None)
        self.done = 0
        self.start = self.last_log = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.perf_counter() - self.last_log >= self.log_period_s:
            self._log()

    @property
    def rate(self) -> float:
        """Items per second so far."""
        return self.done / max(time.perf_counter() - self.start, 1e-9)

    def _log(self) -> None:
        self.last_log = time.perf_counter()
        of = f"/{self.total}" if self.total is not None else ""
        eta = ""
        if self.total is not None and self.done and self.done < self.total:
            eta = f", eta {_clock((self.total - self.done) / self.rate)}"
        self.logger.info("%s: %d%s %s, %.2f %s/s%s", self.desc, self.done, of, self.unit, self.rate, self.unit, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled:
            self._log()
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
