"""One error base for Guardian, with the few kinds callers tell apart."""

from __future__ import annotations


class GuardianError(Exception):
    """Anything Guardian reports to an operator or parent as a clear message."""


class ConfigError(GuardianError):
    """The configuration file is wrong; ``problems`` holds every ``FILE:LINE: what`` line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
