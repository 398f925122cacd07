"""Errors that the CLI turns into one clear line and a non-zero exit."""


class UrrlError(Exception):
    """A user-facing error: the message names the field, file or id at fault."""


class RecipeError(UrrlError):
    """A recipe is malformed, has an unknown key, or a value out of range."""


class DataError(UrrlError):
    """A data set is missing, incomplete or unreadable."""


class CheckpointError(UrrlError):
    """A checkpoint or model file is missing, corrupt or of the wrong kind."""


class HubError(UrrlError):
    """A Hub id is unknown, uncached offline, or offers no safetensors weights."""


class TrainingError(UrrlError):
    """Training cannot continue (for example the loss became NaN)."""
