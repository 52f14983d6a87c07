"""The exception hierarchy: every error a user can see says what failed and what to do."""


class MirrorError(Exception):
    """Base class of every error this package raises on purpose."""


class UsageError(MirrorError):
    """Bad input from the user: a malformed reference, config or option (exit code 2)."""


class ConfigError(UsageError):
    """A configuration file is missing or invalid; the message names the file and key."""
