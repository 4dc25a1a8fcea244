"""What every command-line tool shares: the error contract of the stages' run_stage.

    def cli(argv=None):
        ...                                   # the tool's work; raises UserError on bad input

    def main(argv=None):
        run_tool(lambda: cli(argv), "sweep")

    if __name__ == "__main__":
        main()

Bad input (UserError: ParamError, InputError, ...) prints one line, `error: <name>:
<message>`, and exits 2; Ctrl-C (or SIGTERM) prints one line and exits 130; any other
exception is a bug and keeps its traceback. MASKGIT_DEBUG=1 shows the traceback of
bad input and interrupts too. A tool's main(argv) behaves as `python -m` does (bad
input: SystemExit(2)); its cli(argv) raises, for code and tests that want the exception.

Imports nothing heavy (no torch, no numpy): the light tools (sweep, verify) start fast.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable

from maskgit.pipeline.errors import UserError


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_tool(main: Callable[[], object], name: str) -> None:
    """Call main() under the tools' error contract (module docstring). What main()
    returns is ignored: a tool that means an exit status other than 0 calls sys.exit
    itself (maskgit.verify: 1 when a stage differs), and SystemExit passes through."""
    debug = bool(os.environ.get("MASKGIT_DEBUG"))
    # SIGTERM (a CI timeout, a `kill`) unwinds like Ctrl-C, so that every `finally`
    # removes what it wrote half-way; only the main thread may set a handler
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        main()
    except UserError as e:
        if debug:
            raise
        # one line even when the message carries a command's multi-line output
        message = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f"error: {name}: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
