"""The `neural-style` command installed by pip: the same program as the Rust binary."""

import signal
import sys

from . import _native


def main():
    # The command installs its own handlers (Ctrl-C keeps the best image, a second one exits
    # at once); Python's would raise KeyboardInterrupt after it returns.
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    return _native.run_cli(["neural-style", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
