"""Exceptions that fastkbn raises beside the built-in ValueError and TypeError."""


class BackendUnavailableError(ImportError):
    """A backend was requested by name but its compiled module or dependency cannot be imported."""


class TrainingDivergedError(RuntimeError):
    """The loss or a parameter became NaN or infinite during training.

    Attributes
    ----------
    step : int
        Index of the first training step whose loss or update was not finite.
    eta : float
        Learning rate of that step.
    """

    def __init__(self, step: int, eta: float, message: str):
        super().__init__(message)
        self.step = step
        self.eta = eta
