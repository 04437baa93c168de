"""The stages around the job's pod: provision (open the pod session), bootstrap, teardown (close it and terminate
any pod of the job still live). The session is held in the run's `pod_hold` (an ExitStack) between the two."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .context import RunContext
from .results import BootstrapDone, Event, ProvisionDone, TeardownDone


def provision(ctx: RunContext) -> ProvisionDone:
    from ..pods.session import pod_session
    from ..pods.watchdog import WatchdogPolicy
    from ..runpod import Adapter, connect

    assert ctx.pod_hold is not None, "provision runs inside the driver's pod hold"
    api = connect(ctx.cloud, Adapter.for_pod(ctx.job.interruptible))
    ctx.pod_hold.callback(api.close)
    ctx.pod_hold.callback(setattr, ctx, "session", None)
    policy = WatchdogPolicy.from_env(max_runtime_s=_max_runtime_s(ctx, api))
    session = ctx.pod_hold.enter_context(pod_session(
        _pod_spec(ctx), policy=policy, models=None, reuse=True, cloud=ctx.cloud, api=api, store=ctx.store,
        report=ctx.say))
    ctx.session = session
    offer = session.ready.offer
    earlier = ctx.stages.get(ProvisionDone)
    if offer is not None and offer.gpu_class != ctx.gpu_classes[0]:
        ctx.note(f"rented {offer.gpu_class} (the first choice {ctx.gpu_classes[0]} had no capacity); "
                 "configs are rendered for it")
    return ProvisionDone(
        pod=session.name, pod_id=session.pod.id,
        gpu_class=offer.gpu_class if offer else (earlier.gpu_class if earlier else None),
        data_center=session.pod.data_center_id, cost_per_hr=session.cost_per_hr, reused=session.ready.reused,
        volume=session.pod.network_volume_id,
    )


def teardown(ctx: RunContext) -> TeardownDone:
    """End the pod session (its pod is terminated) and terminate any other live pod of this job."""
    from ..signals import shielded
    from .podlogs import keep_logs

    if ctx.session is not None:
        keep_logs(ctx)  # the logs outlive the pod
    with shielded("terminating the job's pods"):
        if ctx.pod_hold is not None:
            ctx.pod_hold.close()
        live = ctx.store.pods(live_only=True, job_id=ctx.job_id)
        if live:
            from ..pods import PodLifecycle
            from ..runpod import connect

            lifecycle = PodLifecycle(connect(ctx.cloud), ctx.store, ctx.cloud, report=ctx.say)
            for rec in live:
                lifecycle.terminate(rec.name, "teardown: end of the run")
        return TeardownDone(pods=tuple(p.name for p in ctx.store.pods(job_id=ctx.job_id)))


CAMPAIGN_ENV, CAMPAIGN_JOB_ENV = "PISTACHIO_CAMPAIGN", "PISTACHIO_CAMPAIGN_JOB"


def pod_dead(ctx: RunContext) -> bool:
    from ..pods.lifecycle import DEAD
    from ..runpod.port import RunPodApiError

    if ctx.session is None:
        return False
    try:
        pod = ctx.session.lifecycle.api.get_pod(ctx.session.pod.id)
    except RunPodApiError:
        return False
    return pod is None or pod.status in DEAD


def _pod_spec(ctx: RunContext) -> Any:
    from ..pods import PodSpec
    from ..pods.sshkeys import public_key

    req = ctx.pod_request
    volume_id, volume_dc = req.network_volume or _volume(req.volume)
    return PodSpec(
        purpose="job", label=ctx.job.name, gpu_classes=ctx.gpu_classes, public_key=public_key(), job_id=ctx.job_id,
        data_centers=tuple(ctx.job.data_centers), network_volume_id=volume_id, network_volume_dc=volume_dc,
        interruptible=ctx.job.interruptible, env=campaign_env(ctx),
    )


def campaign_env(ctx: RunContext) -> dict[str, str]:
    """A campaign job's pod says whose it is in its environment, which RunPod's pod list shows: a managed campaign's
    new controller finds (adopts) the job pods of one that was lost (campaign/managed.py)."""
    campaign = (ctx.store.job(ctx.job_id) or {}).get("campaign")
    return {CAMPAIGN_ENV: campaign, CAMPAIGN_JOB_ENV: ctx.job.name} if campaign else {}


def _volume(wanted: bool | None) -> tuple[str | None, str | None]:
    if wanted is False:
        return None, None
    from ..stacks import outputs

    env = outputs()
    if env is None:
        if wanted:
            raise ConfigError("--volume: no network volume exists (the env stack is not deployed)",
                              "run `pistachio-infra env up` first, or use --no-volume")
        return None, None
    return env.volume_id, env.data_center_id


def _max_runtime_s(ctx: RunContext, api: Any) -> float:
    """The watchdog's hard limit: --max-hours, or less when the job's budget buys fewer hours on the dearest GPU
    class it may fall back to (live prices), so even a lost client cannot spend more than the budget."""
    limit = ctx.pod_request.max_hours * 3600
    budget = ctx.job.budget_usd
    if not budget:
        return limit
    from ..pods.offers import live_offers

    prices = [o.price_per_hr for o in live_offers(api, ctx.gpu_classes) if o.price_per_hr]
    if not prices:
        return limit
    budget_s = budget / max(prices) * 3600
    if budget_s < limit:
        ctx.say(f"budget ${budget:.2f} at up to ${max(prices):.2f}/h: the pod's watchdog ends it after "
                f"{budget_s / 3600:.2f} h at the latest")
    return min(limit, budget_s)


def _models(ctx: RunContext) -> tuple[str, ...]:
    """Base model always; the captioner only when something is left to caption."""
    from .caption import user_captions

    need_captions = not ctx.stages.is_done("caption") and len(user_captions(ctx)) < len(ctx.dataset.usable)
    return (ctx.job.base_model, "joycaption-alpha-two") if need_captions else (ctx.job.base_model,)


def bootstrap_pod(ctx: RunContext) -> BootstrapDone:
    from ..pods.bootstrap import bootstrap

    models = _models(ctx)
    lock, cloud, frozen = ctx.project_lock, ctx.cloud, None
    if lock is not None:
        from ..lock.lockfile import frozen_requirements
        from ..lock.rebuild import lock_cloud

        _bootstrap_from_lock(ctx, lock)
        models = tuple(m for m in models if m not in lock.models)  # the lock's models are already in place
        cloud, frozen = lock_cloud(ctx.cloud, lock), frozen_requirements(lock)
    ctx.say(f"bootstrapping {ctx.pod_name} (DiffusionPipe, joy-caption-batch, {', '.join(models) or 'no models'})")
    report = bootstrap(ctx.remote, cloud, models=models, store=ctx.store, job_id=ctx.job_id,
                       pod_name=ctx.pod_name, frozen=frozen)
    done = [s["step"] for s in report.steps if s.get("status") == "done"]
    ctx.say(f"bootstrap: {report.seconds:.1f}s" + (f" ({', '.join(done)})" if done else " (all cached)"))
    return BootstrapDone(seconds=round(report.seconds, 2), steps=tuple(report.steps), models=models,
                         lock=_environment(ctx, models))


def _bootstrap_from_lock(ctx: RunContext, lock: Any) -> None:
    """The pod exactly as the project's pistachio.lock says (rebuild.py): pinned commits, frozen package sets,
    model files at their revisions with their sha256. Drift left afterwards stops the run unless --allow-drift."""
    from ..lock.rebuild import ModelHashMismatchError, RebuildError, bootstrap_from_lock

    ctx.say(f"bootstrapping {ctx.pod_name} from pistachio.lock ({lock.digest()[:12]})")
    try:
        bootstrap_from_lock(ctx.remote, ctx.cloud, lock, store=ctx.store, job_id=ctx.job_id, pod_name=ctx.pod_name,
                            pod_image=ctx.session.pod.image if ctx.session else None)
    except ModelHashMismatchError:
        raise
    except RebuildError as exc:
        if not ctx.allow_drift:
            raise RebuildError(exc.cause, "fix it, or train on the drift with --allow-drift (recorded in the "
                                          "report)") from None
        ctx.store.add_event(ctx.job_id, Event.ALLOWED_DRIFT, {"why": exc.cause})
        ctx.note(f"trained on drift from pistachio.lock (--allow-drift): {exc.cause}")


def _environment(ctx: RunContext, models: tuple[str, ...]) -> dict[str, Any]:
    """The environment the job runs in (lock/rebuild.py): its lock digest and pins in state and report, the full
    lock as runs/<job>/<stamp>/pistachio.lock (`rebuild --lock` of it recreates the pod), and drift from the
    project's pistachio.lock when there is one."""
    from ..lock.rebuild import current_lock_summary

    project_lock = ctx.run_folder.parents[2] / "pistachio.lock"  # <base_dir>/runs/<job>/<stamp>
    summary = current_lock_summary(ctx.remote, ctx.cloud, models=models, gpu_class=ctx.gpu_class,
                                   pod_image=ctx.session.pod.image, project_lock=project_lock,
                                   save_to=ctx.run_folder / "pistachio.lock")
    ctx.store.add_event(ctx.job_id, Event.LOCK, summary)
    drift = (summary.get("project_lock") or {}).get("drift")
    if drift:
        ctx.note(f"the pod differs from {project_lock} in {len(drift)} item(s) (first: {drift[0]}); "
                 "`pistachio-infra rebuild` makes a pod exactly as the lock says")
    return summary
