"""Progress bars (tqdm on stderr) that switch off for --quiet / --json and when stderr is not a TTY-like sink."""

import sys

from tqdm import tqdm


def bar(total=None, desc="", enabled=True, unit="it", **kw):
    """A tqdm bar; disabled bars are no-ops with the same interface. disable=None is tqdm's "off unless
    stderr is a TTY", so logs and pipes get no carriage-return noise."""
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled else True, file=sys.stderr, leave=True,
                dynamic_ncols=True, **kw)
