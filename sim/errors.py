"""The one exception family a user sees.

Every mistake in a user's input (a model file, a firm table, a scenario) becomes one of these, with a
message that names the file, the article, the rule or the column and says what to fix.  The CLI prints
the message and exits with status 2 (4 for a :class:`WorkerError`); it never shows a traceback for them.
"""


class FiscalsimError(Exception):
    """Base of every error caused by a user's input."""


class PolicyError(FiscalsimError):
    """A policy model file is malformed; the message lists every problem found."""


class FirmTableError(FiscalsimError):
    """A firm table (CSV, Parquet or in-memory) does not fit the policy's declared attributes."""


class SpecError(FiscalsimError):
    """A population or process specification is malformed; the message lists every problem found."""


class ScenarioError(FiscalsimError):
    """A scenario file is malformed or overrides something the model does not have."""


class WorkerError(FiscalsimError):
    """A worker process could not start or died (killed, out of memory): the run stopped at once."""
