"""Progress bars (tqdm on stderr) that switch off for --quiet / --json and when stderr is not a TTY-like sink."""

import os
import sys

from tqdm import tqdm

# set for a child process whose stderr is a pipe to a parent that shows it on a terminal (compile)
TTY_PARENT = "MLCBUILD_PARENT_TTY"


def bar(total=None, desc="", enabled=True, unit="it", **kw):
    """A tqdm bar; disabled bars are no-ops with the same interface. disable=None is tqdm's "off unless
    stderr is a TTY", so logs and pipes get no carriage-return noise."""
    auto = False if os.environ.get(TTY_PARENT) == "1" else None
    return tqdm(total=total, desc=desc, unit=unit, disable=auto if enabled else True, file=sys.stderr, leave=True,
                dynamic_ncols=True, **kw)
