"""pistachio.lock, everything that makes an environment: the file format (lockfile.py), reading a pod into a lock and
bootstrapping a pod exactly from one (rebuild.py), and drift between a lock and a pod or two locks (drift.py).

May import: catalog, config, endpoints, errors, pods (bootstrap, scripts), and the top-level version."""
