"""Managed campaigns (`campaign run FILE --detach`): the campaign's executor runs on a small RunPod CPU pod, the
controller, so the laptop can close. This module is the client's side; campaign/controller.py runs on the pod.

- detach: the cheapest CPU flavour that fits is rented with its own guard from its first second (pods/guard.py,
  max runtime = the money reserved for it ÷ its $/h), this exact version of the tool is shipped as a wheel
  (`uv build --wheel`) with the project's lock as pip constraints, the campaign file and datasets are uploaded, and
  the controller is started as a detached job whose environment carries the account's keys (RUNPOD_API_KEY,
  HF_TOKEN, WANDB_API_KEY) and the cloud's URLs: never a command line, a file, a log or the state. The client then
  returns. pip installs the wheel's dependencies on the pod from the package index (PyPI; the sandbox serves its
  own, sandbox/pypi.py), at the lock's versions.
- money: the controller's reserve (its $/h × the campaign's deadline, or twice the plan's makespan + 30 min, at
  least 1 h) is taken from the budget before the jobs are planned, and whatever earlier controllers of the campaign
  spent (their published ledger, billed by RunPod) too. The controller's guard ends it when its reserve is spent,
  so jobs + controller never exceed the budget.
- finding things without this machine's state: pods carry PISTACHIO_CAMPAIGN (+ PISTACHIO_CONTROLLER on the
  controller, PISTACHIO_CAMPAIGN_JOB on job pods) in their environment, which RunPod's pod list shows; results are
  the jobs' published repos (`pistachio_result.json` naming the campaign) and the controller's ledger is published
  to `<hf_namespace>/<campaign>-campaign` (campaign_status.json).
- status: the live controller's status.json over SSH, else the published ledger. stop: the controller pod, then
  every job pod of the campaign. pull: every published LoRA into ComfyUI.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CloudError, ConfigError, MissingToolError, PistachioError
from ..pipeline.podphase import CAMPAIGN_ENV, CAMPAIGN_JOB_ENV
from ..settings import get_settings
from .spec import Campaign

CONTROLLER_ENV = "PISTACHIO_CONTROLLER"
CONTROLLER_JOB = "controller"  # the detached job on the controller pod (remote/jobs.py)
CONTROLLER_VCPUS = 2
CONTROLLER_MIN_RAM_GB = 4.0  # the executor plus one worker process per running job
STATUS_FILE = "campaign_status.json"  # in the campaign's status repo, and status.json on the controller
MIN_RESERVE_HOURS = 1.0
RESERVE_SLACK_HOURS = 0.5  # the install on the pod, the last job's publish and the final sweep


@dataclass(frozen=True)
class ControllerOffer:
    flavor_id: str
    vcpus: int
    price_per_hr: float


def status_repo(namespace: str, campaign: str) -> str:
    return f"{namespace}/{campaign}-campaign"


def pod_folder(workspace: str) -> str:
    return f"{workspace.rstrip('/')}/.pistachio/controller"


def namespace_of(c: Campaign) -> str:
    namespace = c.project.project.hf_namespace
    if not namespace:
        raise ConfigError(f"campaign {c.name!r} has no durable destination: a managed campaign (--detach) publishes "
                          "every LoRA and its own ledger (nothing was rented)",
                          "set hf_namespace (your HF user or org) in [project], or run without --detach")
    return namespace


# --- finding the campaign's pods ------------------------------------------------------------------------------

def campaign_pods(api: Any, name: str) -> tuple[list[Any], list[Any]]:
    """(live controller pods, live job pods) of campaign `name`, from RunPod's pod list (not this machine's state)."""
    from ..pods.lifecycle import DEAD

    controllers, jobs = [], []
    for pod in api.list_pods():
        if pod.env.get(CAMPAIGN_ENV) != name or pod.status in DEAD:
            continue
        (controllers if pod.env.get(CONTROLLER_ENV) else jobs).append(pod)
    return controllers, jobs


def cheapest_flavor(api: Any) -> ControllerOffer:
    """The cheapest CPU flavour with stock for a 2-vCPU pod of at least CONTROLLER_MIN_RAM_GB."""
    from ..runpod.port import Stock

    allowed = get_settings().controller_cpu_flavors
    fits = [f for f in api.list_cpu_flavors(vcpu_count=CONTROLLER_VCPUS)
            if f.stock != Stock.NONE and f.vcpu_min <= CONTROLLER_VCPUS <= f.vcpu_max
            and f.ram_gb_per_vcpu * CONTROLLER_VCPUS >= CONTROLLER_MIN_RAM_GB and (not allowed or f.id in allowed)]
    if not fits:
        raise CloudError(f"no CPU flavour has stock for a {CONTROLLER_VCPUS}-vCPU controller with "
                         f"{CONTROLLER_MIN_RAM_GB:g} GB (nothing was rented)",
                         "try again later, or run the campaign from this machine (without --detach)")
    best = min(fits, key=lambda f: (f.price_per_hr(CONTROLLER_VCPUS), f.id))
    return ControllerOffer(best.id, CONTROLLER_VCPUS, best.price_per_hr(CONTROLLER_VCPUS))


def reserve_hours(c: Campaign, makespan_s: float) -> float:
    """How long the controller may run: the campaign's deadline, else twice the plan's makespan plus slack."""
    if c.settings.deadline_hours:
        return float(c.settings.deadline_hours)
    return max(MIN_RESERVE_HOURS, 2 * makespan_s / 3600 + RESERVE_SLACK_HOURS)


# --- what earlier controllers left --------------------------------------------------------------------------

def published_status(c: Campaign, cloud: Any) -> dict[str, Any] | None:
    """The campaign's published ledger (the last controller's campaign_status.json), or None."""
    from huggingface_hub import hf_hub_download

    from ..credentials import get_secret

    namespace = c.project.project.hf_namespace
    if not namespace:
        return None
    try:
        path = hf_hub_download(status_repo(namespace, c.name), STATUS_FILE, token=get_secret("HF_TOKEN"),
                               endpoint=cloud.hf_endpoint, force_download=True,
                               cache_dir=str(_scratch(c) / "hub-cache"))
        return json.loads(Path(path).read_text())
    except Exception:  # never published (a first run), or unreadable: nothing was spent that we know of
        return None


def published_results(c: Campaign, cloud: Any) -> dict[str, dict[str, Any]]:
    """job -> its published pistachio_result.json, for the jobs whose published result names this campaign."""
    from huggingface_hub import hf_hub_download

    from ..credentials import get_secret
    from ..pipeline.publish import repo_id_for
    from ..pods.supervisor import RESULT_FILE

    namespace = c.project.project.hf_namespace
    found: dict[str, dict[str, Any]] = {}
    if not namespace:
        return found
    for job in c.jobs:
        try:
            path = hf_hub_download(repo_id_for(namespace, job.name), RESULT_FILE, token=get_secret("HF_TOKEN"),
                                   endpoint=cloud.hf_endpoint, force_download=True,
                                   cache_dir=str(_scratch(c) / "hub-cache"))
            result = json.loads(Path(path).read_text())
        except Exception:
            continue
        if result.get("campaign") == c.name and result.get("job") == job.name:
            found[job.name] = result
    return found


def prior_spend(status: dict[str, Any] | None, cloud: Any) -> float:
    """What the pods of earlier controllers (the controllers too) cost, by RunPod's billing where it lists them."""
    from .ledger import cloud_billing

    if not status:
        return 0.0
    pods: dict[str, float] = {p["id"]: float(p.get("usd") or 0.0) for p in status.get("pods", []) if p.get("id")}
    if not pods:
        return float(status.get("spent_usd") or 0.0)
    billed = cloud_billing(cloud, float(status.get("started_at") or time.time() - 86400)) or {}
    return sum(max(billed.get(pod_id, 0.0), ours) for pod_id, ours in pods.items())


def _scratch(c: Campaign) -> Path:
    from ..paths import state_dir

    folder = state_dir() / "campaigns" / c.name / "managed"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --- shipping this version of the tool ------------------------------------------------------------------------

def source_root() -> Path:
    return Path(__file__).resolve().parents[2]


def build_wheel(dest: Path) -> Path:
    """This exact version of the tool as a wheel (`uv build --wheel` of the source tree it runs from)."""
    root = source_root()
    if not (root / "pyproject.toml").is_file():
        raise MissingToolError("this installation has no source tree to build the controller's wheel from",
                               "run `campaign run --detach` from a checkout of pistachio-infra (scripts/setup.sh)")
    uv = shutil.which("uv", path=get_settings().path) or shutil.which("uv", path=str(Path.home() / ".local/bin"))
    if uv is None:
        raise MissingToolError("uv is not installed: the controller's wheel is built with `uv build --wheel`",
                               "install uv (scripts/setup.sh does), then run again (nothing was rented)")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    done = subprocess.run([uv, "build", "--wheel", "--quiet", "--out-dir", str(dest), str(root)],
                          capture_output=True, text=True, timeout=600)
    wheels = sorted(dest.glob("pistachio_infra-*.whl"))
    if done.returncode != 0 or not wheels:
        raise MissingToolError(f"uv build --wheel failed: {(done.stderr or done.stdout).strip()[-300:]}",
                               "run `uv build --wheel` in the checkout to see why (nothing was rented)")
    return wheels[-1]


def lock_constraints(root: Path | None = None) -> str:
    """pip constraints (`name==version`, one a line) from the project's uv.lock: the pod installs the dependencies at
    the lock's versions whatever the client's platform. A package the lock holds at several versions (per platform
    markers) is left to pip."""
    lock = (root or source_root()) / "uv.lock"
    if not lock.is_file():
        return ""
    versions: dict[str, set[str]] = {}
    for pkg in tomllib.loads(lock.read_text()).get("package", []):
        source = pkg.get("source", {})
        if "version" not in pkg or "editable" in source or "virtual" in source:
            continue
        versions.setdefault(pkg["name"], set()).add(pkg["version"])
    return "".join(f"{name}=={next(iter(v))}\n" for name, v in sorted(versions.items()) if len(v) == 1)


def remote_campaign(c: Campaign, folder: str) -> str:
    """The campaign file as the controller reads it: every dataset and the work dir at their paths on the pod."""
    import tomlkit

    doc = tomlkit.parse(c.path.read_text())
    table = doc["campaign"]
    table["work_dir"] = f"{folder}/work"
    table["sample_datasets"] = False
    for job in c.jobs:
        doc["jobs"][job.name]["dataset"] = f"{folder}/datasets/{job.name}"
    return tomlkit.dumps(doc)


def controller_env(cloud: Any, c: Campaign, folder: str) -> dict[str, str]:
    """The controller's environment: the account's keys, the cloud's URLs, the tool's knobs; never written down."""
    from ..credentials import get_secret
    from ..endpoints import sandbox_cloud_description
    from ..settings import NAMES

    env: dict[str, str] = {"RUNPOD_API_KEY": cloud.api_key, "HF_TOKEN": get_secret("HF_TOKEN", required=True) or "",
                           "PISTACHIO_HOME": f"{folder}/home", "PYTHONUNBUFFERED": "1", "NO_COLOR": "1",
                           "HF_ENDPOINT": cloud.hf_endpoint}
    if any(j.wandb_enabled for j in c.jobs):
        env["WANDB_API_KEY"] = get_secret("WANDB_API_KEY", required=True) or ""
    if cloud.sandbox:
        env.update(PISTACHIO_SANDBOX="1", PISTACHIO_SANDBOX_CLOUD=sandbox_cloud_description(cloud))
    else:
        env.update(PISTACHIO_RUNPOD_REST_URL=cloud.rest_url, RUNPOD_API_BASE_URL=cloud.graphql_base)
    import os

    local_only = {"PISTACHIO_HOME", "PISTACHIO_SANDBOX", "PISTACHIO_SANDBOX_CLOUD", "PISTACHIO_SANDBOX_IMAGE_CACHE",
                  "PISTACHIO_PULUMI_ROOT", "PISTACHIO_PULUMI_CACHE"}
    for name in NAMES:  # the knobs this client runs with (timings), so the controller behaves the same
        if name.startswith("PISTACHIO_") and name not in local_only and os.environ.get(name):
            env[name] = os.environ[name]
    return env


# --- detach ---------------------------------------------------------------------------------------------------

@dataclass
class Detach:
    pod_id: str
    pod_name: str
    offer: ControllerOffer
    reserve_usd: float
    max_runtime_s: float
    jobs_budget_usd: float
    prior_usd: float
    done: list[str]
    adopted: list[str]


def plan_detached(c: Campaign, cloud: Any, api: Any, store: Any) -> tuple[Any, ControllerOffer, float, float, float,
                                                                        dict[str, dict[str, Any]]]:
    """(plan, controller offer, reserve, max runtime s, earlier spend, published results) for a detached run: the
    jobs not yet published, planned with the budget less the controller's reserve and what was spent before."""
    from .planning import build_plan

    offer = cheapest_flavor(api)
    prior = prior_spend(published_status(c, cloud), cloud)
    done = published_results(c, cloud)
    todo = [j.name for j in c.jobs if j.name not in done]
    free = c.settings.budget_usd - prior
    if not todo:
        return None, offer, 0.0, 0.0, prior, done
    first = build_plan(c, api, cloud.name, store, jobs=todo, budget_usd=max(0.0, free))
    hours = reserve_hours(c, first.plan.makespan_s)
    reserve = offer.price_per_hr * hours
    poll = get_settings().watchdog.poll_s
    max_runtime_s = max(60.0, hours * 3600 - (15.0 if poll is None else poll) - 5)
    ctx = build_plan(c, api, cloud.name, store, jobs=todo, budget_usd=max(0.0, free - reserve))
    return ctx, offer, reserve, max_runtime_s, prior, done


def detach(c: Campaign, cloud: Any, *, yes: bool, say: Any) -> Detach:
    """Rent the controller, ship the tool and the campaign, start it; returns once it runs."""
    from ..confirm import ask
    from ..money import usd
    from ..runpod import connect
    from ..state import Store
    from .planning import plan_summary, plan_table, refuse_unless_fits

    namespace_of(c)
    from ..credentials import get_secret

    get_secret("HF_TOKEN", required=True)
    api = connect(cloud)
    store = Store()
    try:
        controllers, job_pods = campaign_pods(api, c.name)
        for pod in controllers:
            if controller_running(store, pod):
                raise PistachioError(f"campaign {c.name!r} already has a running controller (pod {pod.name})",
                                     f"watch it with `pistachio-infra campaign status {c.path}`, or stop it with "
                                     f"`pistachio-infra campaign stop {c.path}`")
            say(f"controller pod {pod.name} has no controller running: terminating it")
            api.terminate_pod(pod.id)
        ctx, offer, reserve, max_s, prior, done = plan_detached(c, cloud, api, store)
        if ctx is None:
            raise PistachioError(f"campaign {c.name}: every job is published already ({', '.join(done)})",
                                 f"install them with `pistachio-infra campaign pull {c.path}`")
        say(plan_table(ctx))
        for line in plan_summary(ctx):
            say(f"  {line}")
        adopt = sorted({p.env.get(CAMPAIGN_JOB_ENV, "") for p in job_pods} - {""})
        lines = [f"  controller {offer.flavor_id} ({offer.vcpus} vCPU) at ${offer.price_per_hr:.3f}/h: "
                 f"{usd(reserve, like=c.settings.budget_usd)} reserved, it ends itself after "
                 f"{max_s / 3600:.1f} h at the latest"]
        if prior:
            lines.append(f"  earlier controllers of this campaign spent ${prior:.4f} (RunPod's billing)")
        if done:
            lines.append(f"  published already (kept): {', '.join(sorted(done))}")
        if adopt:
            lines.append(f"  still running on their own pods (adopted): {', '.join(adopt)}")
        for line in lines:
            say(line)
        refuse_unless_fits(ctx)
        ask([], yes=yes, command="campaign run --detach", echo=say,
            question=f"Rent the controller and run these {len(ctx.plan.assignments)} job(s)?")
        jobs_budget = c.settings.budget_usd - prior - reserve
        started = _launch(c, cloud, api, store, offer, max_s, jobs_budget, reserve, prior, say)
        return Detach(started[0], started[1], offer, reserve, max_s, jobs_budget, prior, sorted(done), adopt)
    finally:
        store.close()
        api.close()


def _launch(c: Campaign, cloud: Any, api: Any, store: Any, offer: ControllerOffer, max_s: float, jobs_budget: float,
            reserve: float, prior: float, say: Any) -> tuple[str, str]:
    from ..catalog import sources
    from ..pods.guard import start_command
    from ..pods.lifecycle import pod_name
    from ..pods.sshkeys import public_key
    from ..pods.watchdog import WatchdogPolicy
    from ..runpod.port import CpuPodRequest

    scratch = _scratch(c)
    say("building this version's wheel (uv build --wheel)")
    wheel = build_wheel(scratch / "wheel")
    name = pod_name("controller", c.name)
    policy = WatchdogPolicy.from_env(max_runtime_s=max_s)
    store.record_pod_intent(name, cloud=cloud.name, purpose="controller")
    created_at = time.time()  # its billing starts with the create call
    pod = api.create_cpu_pod(CpuPodRequest(
        name=name, flavor_id=offer.flavor_id, vcpu_count=offer.vcpus, image=sources().image.name,
        env={"PUBLIC_KEY": public_key(), CAMPAIGN_ENV: c.name, CONTROLLER_ENV: "1"},
        args=start_command(policy, rest_url=cloud.rest_url)))
    store.update_pod(name, pod_id=pod.id, cost_per_hr=pod.cost_per_hr or offer.price_per_hr,
                     watchdog_deadline=time.time() + max_s)
    say(f"controller pod {pod.id} ({name}) created; waiting for SSH")
    try:
        pod = _wait_ssh(api, pod.id)
        store.update_pod(name, ssh_host=pod.ssh_host, ssh_port=pod.ssh_port, status="ready", ready_at=time.time())
        remote = connect_controller(store, pod)
        try:
            _ship(c, cloud, remote, wheel, pod, jobs_budget, reserve, prior, max_s, created_at, say)
        finally:
            remote.close()
    except BaseException:
        api.terminate_pod(pod.id)
        store.mark_pod_gone(name, "the controller did not start")
        raise
    return pod.id, name


def _wait_ssh(api: Any, pod_id: str) -> Any:
    from ..pods.lifecycle import DEAD, PodTimings, ssh_banner

    timings = PodTimings.from_env()
    deadline = time.monotonic() + timings.ready_timeout_s
    while time.monotonic() < deadline:
        pod = api.get_pod(pod_id)
        if pod is None or pod.status in DEAD:
            raise CloudError(f"the controller pod {pod_id} died before SSH answered", "run the same command again")
        if pod.ssh_ready and ssh_banner(pod.ssh_host, pod.ssh_port):
            return pod
        time.sleep(timings.poll_s)
    raise CloudError(f"the controller pod {pod_id} did not answer SSH within {timings.ready_timeout_s:.0f}s",
                     "run the same command again (the pod was terminated)")


def connect_controller(store: Any, pod: Any) -> Any:
    from ..paths import ssh_key_path
    from ..remote import Remote

    return Remote.connect(pod_id=pod.id, host=pod.ssh_host, port=pod.ssh_port, key_path=ssh_key_path(),
                          store=store, timeout=120, user=pod.ssh_user)


def _ship(c: Campaign, cloud: Any, remote: Any, wheel: Path, pod: Any, jobs_budget: float, reserve: float,
          prior: float, max_s: float, created_at: float, say: Any) -> None:
    folder = pod_folder(remote.workspace)
    staging = _scratch(c) / "upload"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copyfile(wheel, staging / wheel.name)
    (staging / "constraints.txt").write_text(lock_constraints())
    (staging / "campaign.toml").write_text(remote_campaign(c, folder))
    lock = c.work_dir / "pistachio.lock"
    if lock.is_file():  # the project's pins, where the controller's runs look for them (beside the work dir)
        (staging / "work").mkdir()
        shutil.copyfile(lock, staging / "work" / "pistachio.lock")
    plan = {"campaign_file": f"{folder}/campaign.toml", "pod_id": pod.id, "pod_name": pod.name,
            "jobs_budget_usd": jobs_budget, "reserve_usd": reserve, "prior_usd": prior, "max_runtime_s": max_s,
            "budget_usd": c.settings.budget_usd, "price_per_hr": pod.cost_per_hr, "started_at": time.time(),
            "created_at": created_at,
            "status_file": f"{folder}/status.json"}
    (staging / "plan.json").write_text(json.dumps(plan, indent=1))
    say(f"uploading the tool, the campaign and {len(c.jobs)} dataset(s) to the controller")
    remote.run(f"mkdir -p -- {shlex.quote(folder)}/work {shlex.quote(folder)}/datasets", timeout=60)
    remote.put_tree(staging, folder, progress=False)
    for job in c.jobs:
        remote.put_tree(job.dataset, f"{folder}/datasets/{job.name}", progress=False)
    # no pip config file: the pod's own may say no-index (the sandbox's image does); this install names its index
    command = (f"PIP_CONFIG_FILE=/dev/null python3 -m pip install --quiet --disable-pip-version-check --index-url "
               f"{shlex.quote(cloud.package_index)} -c constraints.txt {shlex.quote(wheel.name)} && "
               "exec python3 -m pistachio_infra.campaign.controller plan.json")
    remote.start_detached(CONTROLLER_JOB, command, env=controller_env(cloud, c, folder), cwd=folder)


# --- status, stop, pull -------------------------------------------------------------------------------------

def controller_running(store: Any, pod: Any) -> bool:
    """Whether the controller job runs on this controller pod (False when its process died or SSH fails)."""
    from ..remote.channel import CONNECTION_ERRORS

    if not pod.ssh_ready:
        return True  # still starting: its guard ends it if nothing ever runs there
    try:
        remote = connect_controller(store, pod)
    except (PistachioError, *CONNECTION_ERRORS):
        return False
    try:
        job = remote.job(CONTROLLER_JOB)
        return job is not None and job.running
    finally:
        remote.close()


def live_status(c: Campaign, cloud: Any) -> dict[str, Any] | None:
    """The running controller's status.json (over SSH), or None when no controller of the campaign answers."""
    from ..remote.channel import CONNECTION_ERRORS
    from ..runpod import connect
    from ..state import Store

    api = connect(cloud)
    store = Store()
    try:
        controllers, _ = campaign_pods(api, c.name)
        for pod in controllers:
            if not pod.ssh_ready:
                return {"campaign": c.name, "status": "starting", "controller": {"pod_id": pod.id}, "jobs": []}
            try:
                remote = connect_controller(store, pod)
            except (PistachioError, *CONNECTION_ERRORS):
                continue
            try:
                path = f"{pod_folder(remote.workspace)}/status.json"
                res = remote.run(f"cat -- {shlex.quote(path)} 2>/dev/null", check=False, timeout=60)
                if res.stdout.strip():
                    data = json.loads(res.stdout)
                    data["source"] = f"controller pod {pod.id}"
                    return data
                job = remote.job(CONTROLLER_JOB)
                state = "installing" if job is not None and job.running else "not running"
                return {"campaign": c.name, "status": state, "controller": {"pod_id": pod.id}, "jobs": [],
                        "source": f"controller pod {pod.id}"}
            except (ValueError, PistachioError, *CONNECTION_ERRORS):
                continue
            finally:
                remote.close()
        return None
    finally:
        store.close()
        api.close()


def managed_status(c: Campaign, cloud: Any) -> dict[str, Any] | None:
    """The live controller's status, else the published ledger (with the billed figures), else None."""
    live = live_status(c, cloud)
    if live is not None:
        return live
    published = published_status(c, cloud)
    if published is not None:
        published["source"] = f"published ({status_repo(c.project.project.hf_namespace or '', c.name)})"
    return published


def stop(c: Campaign, cloud: Any, say: Any) -> int:
    """Terminate the campaign's controller pod(s) first (nothing new starts), then every job pod of the campaign."""
    from ..runpod import connect
    from ..state import Store

    api = connect(cloud)
    store = Store()
    try:
        controllers, jobs = campaign_pods(api, c.name)
        for pod in [*controllers, *jobs]:
            api.terminate_pod(pod.id)
            rec = store.pod(pod.id)
            if rec is not None:
                store.mark_pod_gone(rec.name, "campaign stop")
            say(f"terminated {pod.name} ({pod.id})")
        return len(controllers) + len(jobs)
    finally:
        store.close()
        api.close()


def pull(c: Campaign, cloud: Any, say: Any) -> tuple[list[str], list[str]]:
    """Install every published LoRA of the campaign into its ComfyUI folder; (installed jobs, missing jobs)."""
    from ..comfy.loras import install_lora
    from ..credentials import get_secret
    from ..pipeline.publish import pull as download
    from ..pipeline.publish import repo_id_for

    namespace = namespace_of(c)
    target = c.project.project.comfyui_loras_dir
    results = published_results(c, cloud)
    installed, missing = [], []
    for job in c.jobs:
        if job.name not in results:
            missing.append(job.name)
            continue
        dest = c.work_dir / "runs" / job.name / "published"
        lora = download(repo_id_for(namespace, job.name), dest, token=get_secret("HF_TOKEN"),
                        endpoint=cloud.hf_endpoint)
        named = dest / "lora" / f"{job.character}_{job.trigger}.safetensors".replace(" ", "_")
        named.parent.mkdir(parents=True, exist_ok=True)
        named.write_bytes(lora.read_bytes())
        if target:
            done = install_lora(named, target)
            say(f"{job.name}: installed {done.location}")
        else:
            say(f"{job.name}: no comfyui_loras_dir in [project]; the LoRA is at {named}")
        installed.append(job.name)
    return installed, missing
