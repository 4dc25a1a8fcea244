"""The errors a stage reports as one line (see cli.run_stage), in a module of their
own so that every stage can catch them without depending on the code that raises them."""


class ParamError(ValueError):
    """A bad value in params.yaml; the message is one line naming the key."""


class TrainingDiverged(RuntimeError):
    """The loss went NaN or inf: training stops instead of writing a broken model."""
