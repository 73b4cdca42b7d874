"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class DQNLMError(Exception):
    """A mistake in what the user asked for (bad config, unknown env, bad checkpoint...)."""


class ConfigError(DQNLMError):
    """One or more invalid configuration values."""


class TrainingDiverged(DQNLMError):
    """The loss or Q-values became NaN or infinite."""
