"""Pod lifecycle: choose an offer, create (idempotent by unique name, recorded first), wait until SSH answers,
replace stuck pods, terminate, reap. `pod_session` (teardown.py) puts it together with the guaranteed teardown."""

from .lifecycle import NAME_PREFIX, Attempt, PodLifecycle, PodSpec, PodTimings, ReadyPod, pod_name, ssh_banner
from .offers import Offer, candidate_offers, live_offers
from .reap import Orphan, find_orphans

__all__ = [
    "NAME_PREFIX",
    "Attempt",
    "Offer",
    "Orphan",
    "PodLifecycle",
    "PodSpec",
    "PodTimings",
    "ReadyPod",
    "candidate_offers",
    "find_orphans",
    "live_offers",
    "pod_name",
    "ssh_banner",
]
