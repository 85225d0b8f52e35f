"""What the compiler is doing, for the user: a pass instrument that shows the pass it is on with the elapsed time,
and, when compilation fails, a short summary (the failing pass and the compiler's own error line) with the full
trace kept in a log file under the cache."""

import re
import time
import traceback
from pathlib import Path

from mlcbuild_common import progress
from mlcbuild_common.fsutil import write_bytes_atomic

from ..paths import cache_dir


class PassWatch:
    """Records the innermost running pass; with a bar, shows it and the elapsed time (updated at most 4x/s)."""

    def __init__(self, label: str, show: bool):
        self.stack: list[str] = []
        self.stage = "graph"
        self.last = ""
        self.count = 0
        self.t0 = time.perf_counter()
        self._shown = 0.0
        self.bar = progress.bar(desc=label, enabled=show, unit="pass", bar_format="{desc}{postfix}")

    def instrument(self):
        import tvm

        watch = self

        @tvm.instrument.pass_instrument
        class _Instrument:
            def run_before_pass(self, mod, info):
                watch.stack.append(info.name)
                watch.last = info.name
                watch.count += 1
                now = time.perf_counter()
                if now - watch._shown > 0.25:
                    watch._shown = now
                    watch.bar.set_postfix_str(f"{info.name} ({watch.count} passes, {now - watch.t0:.0f} s)")

            def run_after_pass(self, mod, info):
                if watch.stack:
                    watch.stack.pop()

        return _Instrument()

    def failing_pass(self) -> str:
        return self.stack[-1] if self.stack else self.last

    def close(self, note: str = "") -> None:
        if note:
            self.bar.set_postfix_str(note)
        self.bar.close()


def error_line(exc: BaseException) -> str:
    """The compiler's own message: TVM errors carry a C++ backtrace, the message is the last 'XxxError: ...' line."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    tagged = [ln for ln in lines if re.match(r"^(\w+Error|Check failed|error)\b", ln)]
    line = (tagged or lines or [repr(exc)])[-1]
    name = type(exc).__name__
    return line if line.startswith(name) else f"{name}: {line}"


def save_log(name: str, stage: str, pass_name: str, exc: BaseException) -> Path:
    """Write the full trace to the cache's logs folder; return its path."""
    log = cache_dir() / "logs" / f"compile-{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    body = (f"library: {name}\nstage: {stage}\npass: {pass_name or 'n/a'}\n\n"
            + "".join(traceback.format_exception(exc)))
    write_bytes_atomic(log, body.encode())
    return log
