"""The `verify` stage: after install, the samples (with and without the LoRA, same seeds) through the ComfyUI the
plan chose before renting (verify/plan.py). The rendering itself is verify/render.py, which runs anywhere."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import PistachioError
from .context import RunContext
from .results import Event, HarvestDone, InstallDone, VerifyDone

SAMPLES_DIR = "samples"


def plan_for(ctx_job: Any, project: Any, cloud: Any, classes: tuple[str, ...], enabled: bool,
             allow_pod: bool = False) -> Any:
    """The verify plan of a run (free: it only asks the configured ComfyUI what it has)."""
    from ..catalog import gpu_class
    from ..verify.plan import plan_verify
    from ..verify.prompts import DEFAULT_COUNT

    stills = len(ctx_job.sample_prompts) if ctx_job.sample_prompts else DEFAULT_COUNT
    cls = gpu_class(classes[0]) if classes else None
    return plan_verify(enabled=enabled, base_model=ctx_job.base_model,
                       comfyui_url=project.project.comfyui_url if project is not None else None,
                       stills=stills, clips=1 if ctx_job.sample_clip else 0,
                       cloud_name=cloud.name, pod_tier=cls.tier if cls else 48,
                       pod_price_per_hr=cls.price_hint_usd_hr if cls else None, allow_pod=allow_pod,
                       pod_class=cls.name if cls else "")


def record_plan(ctx: RunContext) -> None:
    """Say where the samples render and the run's estimate before renting, with the verify part in it."""
    plan = ctx.verify_plan
    if plan is None:
        return
    ctx.say(plan.line())
    base = _training_estimate(ctx)
    total_s = usd_total = None
    if base is not None:
        total_s, usd_total = base.seconds[1] + plan.seconds[1], base.usd[1] + plan.usd[1]
        from ..money import usd
        from .report import duration

        part = "skipped" if not plan.runs else f"{usd(plan.usd[1])}, {duration(plan.seconds[1])}"
        ctx.say(f"estimate before renting: ~{usd(usd_total)} and ~{duration(total_s)} on {base.gpu_class} at its "
                f"list price (training ~{usd(base.usd[1])}, {duration(base.seconds[1])}; verify {part})")
    ctx.store.add_event(ctx.job_id, Event.VERIFY_PLAN, {
        "where": plan.where, "reason": plan.reason, "seconds": list(plan.seconds), "usd": list(plan.usd),
        "samples": plan.samples, "clips": plan.clips, "run_seconds": total_s, "run_usd": usd_total})


def _training_estimate(ctx: RunContext) -> Any:
    """The campaign cost model's estimate of the training part on the first class at its list price (free)."""
    from ..campaign.costmodel import demand_for, estimate, load_timings
    from ..catalog import gpu_class

    try:
        cls = gpu_class(ctx.gpu_classes[0])
        demand = demand_for(ctx.job, ctx.gpu_classes)
        return estimate(demand, cls.name, cls.price_hint_usd_hr, load_timings(ctx.cloud.name))
    except PistachioError:
        return None


def prompts_for(ctx: RunContext) -> list[str]:
    from ..verify.prompts import default_prompts, with_trigger

    job = ctx.job
    if job.sample_prompts:
        return [with_trigger(p, job.trigger) for p in job.sample_prompts]
    captions = [p.read_text(errors="replace") for p in sorted(ctx.captions_dir.glob("*.txt"))] \
        if ctx.captions_dir.is_dir() else []
    return default_prompts(captions, job.trigger, job.character, seed=job.seed)


def verify(ctx: RunContext) -> VerifyDone:
    from ..verify.client import ComfyClient, ComfyError

    plan = ctx.verify_plan
    if plan is None or not plan.runs:
        reason = plan.reason if plan is not None else "not planned"
        if plan is not None and plan.reason != "--no-verify":
            ctx.note(f"samples not rendered: {reason}")
        return VerifyDone(where="skipped", reason=reason)
    harvested, installed = ctx.stages.get(HarvestDone), ctx.stages.get(InstallDone)
    if harvested is None or installed is None or not installed.installed:
        ctx.note("samples not rendered: the LoRA was not installed into comfyui_loras_dir")
        return VerifyDone(where="skipped", reason="the LoRA was not installed")
    lora = Path(harvested.path).name
    if plan.where == "pod":
        return _on_a_comfyui_pod(ctx, plan, Path(harvested.path))
    with ComfyClient(plan.url) as client:
        if not any(n.rsplit("/", 1)[-1] == lora for n in client.models("loras")):
            raise ComfyError(f"the ComfyUI at {plan.url} does not list {lora} in models/loras (the LoRA went to "
                             f"{installed.installed})",
                             "set project.comfyui_loras_dir to that ComfyUI's models/loras folder, or pass "
                             "--no-verify")
        return _render(ctx, plan, client, lora)


def _render(ctx: RunContext, plan: Any, client: Any, lora: str) -> VerifyDone:
    from ..verify.render import SHEET, plan_samples, render_samples

    samples = plan_samples(prompts_for(ctx), seed=ctx.job.seed, resolution=ctx.job.resolutions[0],
                           clip=ctx.job.sample_clip)
    ctx.say(f"rendering {len(samples)} sample(s) with and without {lora} on {client.url}")
    folder = ctx.run_folder / SAMPLES_DIR
    result = render_samples(client, plan.files, samples, lora=lora, out_dir=folder,
                            prefix=f"pistachio/{ctx.job.name}-{ctx.job_id}", say=ctx.say)
    if not result.rendered:
        raise PistachioError("no sample was rendered", "give [jobs.X] sample_prompts, or pass --no-verify")
    ctx.say(f"samples: {folder / SHEET} ({result.seconds:.1f}s)")
    return VerifyDone(where=plan.where, reason=plan.reason, url=client.url, folder=str(folder),
                      sheet=str(result.sheet), samples=tuple(asdict(r) for r in result.rendered),
                      seconds=round(result.seconds, 3))


def _on_a_comfyui_pod(ctx: RunContext, plan: Any, lora: Path) -> VerifyDone:
    """`up --role comfyui` for the samples: a pod whose ComfyUI gets the Wan files the graph names (resolved and
    downloaded like any workflow's models) and the LoRA, renders, and is terminated when the block ends."""
    import json

    from ..comfy.pod import COMFY_PORT, prepare
    from ..pods import PodSpec
    from ..pods.session import pod_session
    from ..pods.sshkeys import public_key
    from ..pods.watchdog import WatchdogPolicy
    from ..verify.client import ComfyClient
    from ..verify.graph import Sample, build_graph

    graph_file = ctx.work_dir / "verify-graph.json"
    graph = build_graph(plan.files, Sample(prompt=ctx.job.trigger, seed=ctx.job.seed), lora=lora.name)
    graph_file.write_text(json.dumps(graph, indent=2))
    spec = PodSpec(purpose="comfyui", label=f"{ctx.job.name}-verify", gpu_classes=ctx.gpu_classes,
                   public_key=public_key(), job_id=ctx.job_id, http_ports=(COMFY_PORT,))
    policy = WatchdogPolicy.from_env(max_runtime_s=3 * 3600)
    with pod_session(spec, policy=policy, models=None, reuse=False, cloud=ctx.cloud, store=ctx.store,
                     report=ctx.say) as session:
        comfy = prepare(session, workflow=str(graph_file), loras=[lora], yes=True, say=ctx.say)
        with ComfyClient(comfy.url) as client:
            return _render(ctx, plan, client, lora.name)
