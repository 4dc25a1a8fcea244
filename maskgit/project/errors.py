"""The errors a stage or a tool reports as one line, and the contract that reports them
(`one_line_errors`, used by runtime.run_stage and tool.run_tool), in a module of their
own so that everything can catch them without depending on the code that raises them.

Only these are bad input, and the OS errors that say something about the machine (a
full disk, no permission). Any other exception (a ValueError from a bug included) is a
bug and keeps its traceback. MASKGIT_DEBUG=1 shows the traceback of bad input too."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading


class UserError(Exception):
    """Bad input or a state the user can fix; the message is one line naming the file or param."""


class ParamError(UserError, ValueError):
    """A bad value in params.yaml; the message is one line naming the key."""


class InputError(UserError, ValueError):
    """A bad or missing input file or folder; the message names it."""


class TrainingDiverged(UserError, RuntimeError):
    """The loss went NaN or inf: training stops instead of writing a broken model."""


# OS errors that say something about the machine, not the code: one line naming the
# path. Every other OSError keeps its traceback.
ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "the disk is full: free space and run again",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the folder is on a read-only file system",
    errno.EACCES: "no permission: check the folder's owner and mode",
    errno.EPERM: "no permission: check the folder's owner and mode",
}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _leave(code: int, now: bool) -> None:
    if now:
        # every `finally` of the work has run: what is left is the interpreter's teardown
        # of torch and its pools, seconds on a busy machine, between the error line and
        # the exit status the user (or DVC) waits for
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


@contextlib.contextmanager
def one_line_errors(name: str, interrupted: str, debug: bool = False, exit_now: bool = False):
    """Bad input: `error: <name>: <message>` on one line, exit 2. Ctrl-C or SIGTERM (a CI
    timeout, a `kill`): `interrupted` on one line, exit 130, after every `finally` has
    removed what it wrote half-way. Anything else passes with its traceback. exit_now: the
    process is the stage script itself, which leaves at once (os._exit) instead of raising
    SystemExit, skipping a teardown that has nothing left to clean."""
    debug = debug or bool(os.environ.get("MASKGIT_DEBUG"))
    previous = None
    if threading.current_thread() is threading.main_thread():  # only the main thread may set a handler
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    except UserError as e:
        if debug:
            raise
        # one line even when the message carries a command's multi-line output
        message = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f"error: {name}: {message}", file=sys.stderr)
        _leave(2, exit_now)
    except KeyboardInterrupt:
        if debug:
            raise
        print(interrupted, file=sys.stderr)
        _leave(130, exit_now)
    except OSError as e:
        if e.errno not in ENVIRONMENT_ERRNOS or debug:
            raise
        print(f"error: {name}: {e.filename or 'a file'}: {e.strerror} ({ENVIRONMENT_ERRNOS[e.errno]})", file=sys.stderr)
        _leave(2, exit_now)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
