"""The sandbox: a local RunPod on 127.0.0.1 for tests, the demo and `pistachio-infra sandbox up`.

control.py starts and stops the server (server.py) and drives it in tests (Admin). The server speaks REST v2
(rest.py) and the runpod SDK's GraphQL (graphql_api.py) over one protocol-free cloud (cloud.py: pods, volumes,
templates, keys, stock, billing, faults; state in store.py), runs pods as real sshd (podhost.py, image.py) and serves
a Hugging Face hub stand-in (hf/) and stand-in git repos (standins/).

May import: catalog, errors, paths. Nothing outside the sandbox imports it except endpoints (to start it) and
commands/ (sandbox, demo); the client code paths never branch on it."""
