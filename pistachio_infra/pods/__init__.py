"""One rented pod, from offer to teardown: offers.py (live price and stock), lifecycle.py (create idempotently, wait
for SSH, replace stuck pods, terminate), session.py (`pod_session`: the guaranteed teardown on success, error,
Ctrl-C, SIGTERM), watchdog.py (the pod-side dead-man switch and the client's heartbeat), bootstrap.py (pinned repos
and model files on the pod), scripts.py (rendering scripts that run on pods), layout.py (paths in a pod's
workspace), sshkeys.py (the key pair every pod trusts), reap.py (pods no live job uses).

May import: catalog, endpoints, errors, paths, remote, runpod, signals, state. Never pipeline or commands."""


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
