"""The errors a stage reports as one line (see runtime.run_stage), in a module of their
own so that every stage can catch them without depending on the code that raises them.

Only these are bad input. Any other exception (a ValueError from a bug included)
is a bug and keeps its traceback."""


class UserError(Exception):
    """Bad input or a state the user can fix; the message is one line naming the file or param."""


class ParamError(UserError, ValueError):
    """A bad value in params.yaml; the message is one line naming the key."""


class InputError(UserError, ValueError):
    """A bad or missing input file or folder; the message names it."""


class TrainingDiverged(UserError, RuntimeError):
    """The loss went NaN or inf: training stops instead of writing a broken model."""
