"""The one error the delivery commands report: a single line, then a non-zero exit."""

from __future__ import annotations


class DeliveryError(Exception):
    """Something a delivery command cannot do; its message is the whole error line."""
