"""What every command-line tool shares: the error contract of the stages' run_stage.

    def cli(argv=None):
        ...                                   # the tool's work; raises UserError on bad input

    def main(argv=None):
        run_tool(lambda: cli(argv), "sweep")

    if __name__ == "__main__":
        main()

Bad input (UserError: ParamError, InputError, ...) prints one line, `error: <name>:
<message>`, and exits 2, as does a full disk or a missing permission; Ctrl-C (or
SIGTERM) prints one line and exits 130; any other exception is a bug and keeps its
traceback. MASKGIT_DEBUG=1 shows the traceback of
bad input and interrupts too. A tool's main(argv) behaves as `python -m` does (bad
input: SystemExit(2)); its cli(argv) raises, for code and tests that want the exception.

Imports nothing heavy (no torch, no numpy): the light tools (sweep, verify) start fast.
"""

from __future__ import annotations

from typing import Callable

from maskgit.project.errors import one_line_errors


def run_tool(main: Callable[[], object], name: str, interrupted: str = "") -> None:
    """Call main() under the tools' error contract (module docstring), the stages' own
    (maskgit.project.errors.one_line_errors). What main() returns is ignored: a tool
    that means an exit status other than 0 calls sys.exit itself (maskgit.verify: 1 when
    a stage differs), and SystemExit passes through. `interrupted`: what the line after
    Ctrl-C adds (what was stopped, what was kept)."""
    with one_line_errors(name, f"{name}: interrupted" + (f"; {interrupted}" if interrupted else "")):
        main()
