"""The one error type for user mistakes. The CLI prints it on one line and exits with code 2."""


class UserError(Exception):
    """A mistake in what the user asked for (bad path, column, label, size...).

    The message names the input and the fix, e.g.
    ``UserError("--data train.csv: no column 'review'; columns found: text, label. Pass --text-column.")``
    """
