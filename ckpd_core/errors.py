"""Errors a user can cause; the message says what is wrong and what to do."""


class CKPDError(Exception):
    """Base class for every error ckpd_core raises on purpose."""


class ConfigError(CKPDError, ValueError):
    """A setting is impossible: the message names the setting and what is allowed."""


class CalibrationError(CKPDError, RuntimeError):
    """Calibration statistics are unusable (NaN/Inf activations, no samples)."""


class DataError(CKPDError, RuntimeError):
    """A dataset or checkpoint on disk is missing or malformed."""
