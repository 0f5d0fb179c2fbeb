"""Dashdive EC2 event types, defined by Sluice: instance lifecycle and metered usage.

Discriminated by `action` like S3 events. Lifecycle events mark an instance's
state changes; usage events carry a metered quantity (seconds run, bytes
transferred, volume size) over the period ending at the event's `timestamp`.
"""

from __future__ import annotations

from schemas.families.dashdive_fields import Field, opt, req

_STATE_CHANGE = (req("instanceId"), opt("instanceType"), opt("region"), opt("availabilityZone"))

EC2_ACTIONS: dict[str, tuple[Field, ...]] = {
    "InstanceLaunched": (
        req("instanceId"), req("instanceType"), req("region"), opt("availabilityZone"),
        opt("imageId"), opt("purchaseOption", "purchase_option"),
    ),
    "InstanceStarted": _STATE_CHANGE,
    "InstanceStopped": _STATE_CHANGE,
    "InstanceTerminated": _STATE_CHANGE,
    "InstanceUsage": (
        req("instanceId"), req("instanceType"), req("region"), req("usageSeconds", "quantity"),
        opt("availabilityZone"), opt("purchaseOption", "purchase_option"),
    ),
    "DataTransfer": (
        req("instanceId"), req("region"), req("bytes", "bytes"), req("direction", "direction"),
        opt("destination"),
    ),
    "VolumeUsage": (
        req("volumeId"), req("volumeType"), req("region"), req("sizeGiB", "quantity"),
        req("usageSeconds", "quantity"), opt("instanceId"),
    ),
}  # fmt: skip
"""Per-action fields of an EC2 event, beyond the common ones."""
