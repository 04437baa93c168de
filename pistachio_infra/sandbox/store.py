"""The sandbox's state in SQLite (home/state.sqlite3): account, pods, volumes, templates, billing intervals.

A restarted server reads everything back from here, so it still knows its pods, their keys and their bills.
Rows hold the record as JSON; only the columns used for lookups are real columns.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pods (id TEXT PRIMARY KEY, status TEXT NOT NULL, created REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS volumes (id TEXT PRIMARY KEY, created REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS templates (id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL,
                                      data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS billing (pod_id TEXT NOT NULL, start REAL NOT NULL, end REAL, rate REAL NOT NULL);
CREATE INDEX IF NOT EXISTS billing_pod ON billing (pod_id);
"""

ACTIVE = ("PROVISIONING", "STARTING", "RUNNING")  # statuses that hold GPUs and accrue cost


@dataclass
class PodRecord:
    id: str
    name: str
    api_key: str  # pod-scoped key (RUNPOD_API_KEY inside the pod)
    machine_id: str
    pod_host_id: str
    status: str  # REST v2 PodStatus
    image: str
    gpu_id: str
    gpu_count: int
    cloud: str  # SECURE | COMMUNITY
    data_center_id: str
    cost_per_hr: float  # price (or bid) x gpu_count
    created_at: float
    status_since: float
    args: str = ""
    disk: int = 50
    ports: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # as requested (the pod also gets RUNPOD_* and friends)
    registry: str | None = None
    mounts: dict[str, Any] = field(default_factory=dict)  # REST v2 Mounts
    locked: bool = False
    global_networking: bool = False
    start_ssh: bool = True
    public_key: str = ""
    template_id: str | None = None
    interruptible: bool = False
    bid_per_gpu: float | None = None
    min_vcpu: int = 1
    min_memory_gb: int = 1
    ssh_port: int | None = None
    http_ports: dict[str, int] = field(default_factory=dict)  # "8188" -> the host port standing in for it
    started_at: float | None = None  # last time the container became RUNNING
    provision_until: float = 0.0
    last_status_change: str = ""
    # faults bound to this pod when it was created
    stuck: bool = False
    ssh_mode: str = "normal"  # normal | refused | starting
    preempt_after: float | None = None
    drop_after: float | None = None
    dropped: bool = False
    terminated_at: float | None = None
    volume_mount_path: str | None = None  # GraphQL volumeMountPath as sent, echoed even without a volume
    cpu_id: str | None = None  # a CPU pod's flavour (gpu_id "" and gpu_count 0 then)
    vcpu_count: int = 0  # a CPU pod's vCPUs
    memory_gb: float = 0.0  # a CPU pod's RAM: vcpu_count × the flavour's RAM per vCPU

    @property
    def volume_id(self) -> str | None:
        network = self.mounts.get("network") or []
        return network[0]["volumeId"] if network else None

    @property
    def mount_path(self) -> str:
        if self.mounts.get("network"):
            return self.mounts["network"][0]["path"]
        if self.mounts.get("persistent"):
            return self.mounts["persistent"]["path"]
        return self.volume_mount_path or "/workspace"

    @property
    def volume_gb(self) -> int:
        persistent = self.mounts.get("persistent")
        return int(persistent["size"]) if persistent else 0

    @classmethod
    def from_json(cls, text: str) -> PodRecord:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class VolumeRecord:
    id: str
    name: str
    size: int
    data_center_id: str
    type: str = "STANDARD"


@dataclass
class TemplateRecord:
    id: str
    name: str
    image: str
    args: str = ""
    disk: int = 50
    ports: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    registry: str | None = None
    mounts: dict[str, Any] = field(default_factory=dict)  # TemplateMounts: only `persistent`
    serverless: bool = False
    public: bool = False
    category: str = "NVIDIA"
    start_ssh: bool = True
    start_jupyter: bool = True
    allowed_cuda_versions: list[str] = field(default_factory=list)
    readme: str = ""


class SandboxStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        old = self.db.execute("SELECT sql FROM sqlite_master WHERE name = 'templates'").fetchone()
        if old and "UNIQUE" in old[0]:  # a home made before template names could repeat (issue 18)
            self.db.executescript("ALTER TABLE templates RENAME TO templates_old;" + SCHEMA +
                                  "INSERT INTO templates SELECT * FROM templates_old; DROP TABLE templates_old;")

    def close(self) -> None:
        self.db.close()

    # --- account / meta -------------------------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # --- pods -----------------------------------------------------------------------------------------------

    def save_pod(self, pod: PodRecord) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO pods (id, status, created, data) VALUES (?, ?, ?, ?)",
            (pod.id, pod.status, pod.created_at, json.dumps(asdict(pod))),
        )

    def get_pod(self, pod_id: str) -> PodRecord | None:
        row = self.db.execute("SELECT data FROM pods WHERE id = ?", (pod_id,)).fetchone()
        return PodRecord.from_json(row[0]) if row else None

    def pods(self, *, include_terminated: bool = False) -> list[PodRecord]:
        sql = "SELECT data FROM pods"
        if not include_terminated:
            sql += " WHERE status != 'TERMINATED'"
        return [PodRecord.from_json(r[0]) for r in self.db.execute(sql + " ORDER BY created, id")]

    def pod_by_key(self, api_key: str) -> PodRecord | None:
        # pod keys are few; a scan keeps the schema small
        for pod in self.pods(include_terminated=True):
            if pod.api_key == api_key:
                return pod
        return None

    # --- volumes / templates --------------------------------------------------------------------------------

    def save_volume(self, vol: VolumeRecord, created: float) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO volumes (id, created, data) VALUES (?, ?, ?)",
            (vol.id, created, json.dumps(asdict(vol))),
        )

    def get_volume(self, volume_id: str) -> VolumeRecord | None:
        row = self.db.execute("SELECT data FROM volumes WHERE id = ?", (volume_id,)).fetchone()
        return VolumeRecord(**json.loads(row[0])) if row else None

    def volumes(self) -> list[VolumeRecord]:
        return [VolumeRecord(**json.loads(r[0])) for r in self.db.execute("SELECT data FROM volumes ORDER BY created")]

    def delete_volume(self, volume_id: str) -> None:
        self.db.execute("DELETE FROM volumes WHERE id = ?", (volume_id,))

    def save_template(self, tpl: TemplateRecord, created: float) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO templates (id, name, created, data) VALUES (?, ?, ?, ?)",
            (tpl.id, tpl.name, created, json.dumps(asdict(tpl))),
        )

    def template_created(self, template_id: str) -> float | None:
        row = self.db.execute("SELECT created FROM templates WHERE id = ?", (template_id,)).fetchone()
        return row[0] if row else None

    def get_template(self, template_id: str) -> TemplateRecord | None:
        row = self.db.execute("SELECT data FROM templates WHERE id = ?", (template_id,)).fetchone()
        return TemplateRecord(**json.loads(row[0])) if row else None

    def template_by_name(self, name: str) -> TemplateRecord | None:
        """The oldest template of that name (names need not be unique)."""
        row = self.db.execute("SELECT data FROM templates WHERE name = ? ORDER BY created", (name,)).fetchone()
        return TemplateRecord(**json.loads(row[0])) if row else None

    def templates(self) -> list[TemplateRecord]:
        rows = self.db.execute("SELECT data FROM templates ORDER BY created")
        return [TemplateRecord(**json.loads(r[0])) for r in rows]

    def delete_template(self, template_id: str) -> None:
        self.db.execute("DELETE FROM templates WHERE id = ?", (template_id,))

    # --- billing intervals ----------------------------------------------------------------------------------

    def open_interval(self, pod_id: str, start: float, rate: float) -> None:
        self.close_interval(pod_id, start)
        self.db.execute("INSERT INTO billing (pod_id, start, end, rate) VALUES (?, ?, NULL, ?)", (pod_id, start, rate))

    def close_interval(self, pod_id: str, end: float) -> None:
        self.db.execute("UPDATE billing SET end = ? WHERE pod_id = ? AND end IS NULL", (end, pod_id))

    def intervals(self, pod_id: str | None = None) -> list[tuple[str, float, float | None, float]]:
        if pod_id is None:
            return list(self.db.execute("SELECT pod_id, start, end, rate FROM billing ORDER BY start"))
        return list(self.db.execute("SELECT pod_id, start, end, rate FROM billing WHERE pod_id = ? ORDER BY start",
                                    (pod_id,)))
