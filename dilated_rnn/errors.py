"""The exceptions the CLI reports as a one-line error."""


class UserError(Exception):
    """Bad input from the user (a file, a setting, a checkpoint): the message names it and what was expected."""


class ParameterError(UserError, ValueError):
    """A bad value of a library parameter, named as the library names it (``batch_size``).

    ``problem`` is the rest of the sentence ("must be positive, got 0"), so the
    CLI can say the same of the flag that set the parameter (``--batch-size``).
    """

    def __init__(self, parameter: str, problem: str):
        super().__init__(f"{parameter} {problem}")
        self.parameter = parameter
        self.problem = problem


class ResourceError(UserError):
    """What was asked needs more of the machine than it has (memory), estimated before allocating (exit 1)."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: a fact about the run, not an error in the user's input (exit 1)."""
