"""The RunPod port (`port.py`) and its adapters (`rest_v2.py`, `graphql.py`). Use `connect()` to get one."""
