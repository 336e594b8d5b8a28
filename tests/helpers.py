"""Small helpers shared by the test modules."""


class decay:  # lower case: used like a function
    """A schedule: base * rate**count, with count = the number of updates already made."""

    def __init__(self, base, rate):
        self.base, self.rate = base, rate

    def __call__(self, count):
        return self.base * self.rate**count

    def __repr__(self):  # readable, stable test ids
        return f"decay({self.base}, {self.rate})"
