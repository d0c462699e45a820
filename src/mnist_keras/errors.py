"""Errors a user can cause. The CLI prints their message on one line and exits 2."""


class UserError(Exception):
    """Base class: something the user can fix (a flag, a file, the data)."""


class DataError(UserError):
    """The MNIST data is missing, corrupt or does not match the canonical checksums."""


class ConfigError(UserError):
    """A recipe file or override is malformed (unknown key, wrong type, bad value)."""


class RunDirectoryError(UserError):
    """A run directory is missing, incomplete or not one of ours."""


class SettingsError(UserError):
    """A server setting is out of range (a port, a timeout, the number of workers, the drain period)."""


class TrainingDiverged(UserError):
    """The loss became NaN, infinite or far worse than chance (usually: the learning rate is too high)."""


class ClusterError(UserError):
    """The Ray cluster at --address cannot be joined: nothing listens there, or it refuses this machine's token."""


class TrainingInterrupted(Exception):
    """Training was stopped by Ctrl-C; the message says how to resume."""
