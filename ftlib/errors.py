"""The one error ftlib raises for a user's mistake."""


class CourseError(RuntimeError):
    """One clear error that says what went wrong and what to do about it."""
