"""The error a user's sweep input causes; kept apart so reading results needs no spec machinery."""

from ckpd_core.errors import CKPDError


class SpecError(CKPDError):
    """A sweep input that cannot run; the message names the file, the key and what is allowed."""
