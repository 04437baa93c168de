"""The stage table: the only place the order of a training run is written.

Each row names a stage, where it runs (`local`: on this machine, `pod`: needs the job's pod), the function that
does it and the typed result it records (results.py). `supervised` rows run on the pod under its supervisor
(pods/supervisor.py, in this order) when the job has a durable destination: the client launches it at the first
of them and only watches (pipeline/detach.py); without one the client runs them as any other row.
driver.py walks the table in one loop (on the client); a
pod row is run inside the job's pod session, which the `provision` row opens and the `teardown` row closes.
`per_pod` rows set up the pod for training: they count as done only on the pod that did them, and are needed only
while the training is still ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from .results import (
    BootstrapDone,
    CaptionDone,
    HarvestDone,
    InstallDone,
    PreflightDone,
    ProvisionDone,
    PublishDone,
    R,
    RenderDone,
    ReportDone,
    SelectDone,
    SplitDone,
    StageResult,
    TeardownDone,
    TrainDone,
    UploadDone,
    VerifyDone,
)

if TYPE_CHECKING:
    from .context import RunContext


class Where(StrEnum):
    LOCAL = "local"
    POD = "pod"


@dataclass(frozen=True)
class Row:
    name: str
    where: Where
    run: Callable[[RunContext], StageResult]
    result: type[StageResult]
    per_pod: bool = False
    supervised: bool = False  # run by the pod's supervisor when the result has a durable destination


def _preflight(ctx: RunContext) -> PreflightDone:
    d = ctx.dataset
    return PreflightDone(images=len(d.usable), train=len(d.train), eval=len(d.eval), classes=ctx.gpu_classes,
                         seconds=round(ctx.preflight_s, 3))


def _provision(ctx: RunContext) -> ProvisionDone:
    from .podphase import provision

    return provision(ctx)


def _bootstrap(ctx: RunContext) -> BootstrapDone:
    from .podphase import bootstrap_pod

    return bootstrap_pod(ctx)


def _upload(ctx: RunContext) -> UploadDone:
    from .caption import upload

    return upload(ctx)


def _caption(ctx: RunContext) -> CaptionDone:
    from .caption import caption
    from .detach import enabled, supervise
    from .prepare import rendered_for

    if enabled(ctx):
        return supervise(ctx, "caption", detach=ctx.detach)  # type: ignore[return-value]
    return caption(ctx, rendered_for(ctx))


def _split(ctx: RunContext) -> SplitDone:
    from .detach import enabled, supervise
    from .prepare import split

    if enabled(ctx):
        return supervise(ctx, "split", detach=ctx.detach)  # type: ignore[return-value]
    return split(ctx)


def _render(ctx: RunContext) -> RenderDone:
    from .prepare import render

    return render(ctx)


def _train(ctx: RunContext) -> TrainDone:
    from .detach import enabled, supervise
    from .prepare import rendered_for
    from .training import train

    if enabled(ctx):
        return supervise(ctx, "train", detach=ctx.detach)  # type: ignore[return-value]
    return train(ctx, rendered_for(ctx))


def _select(ctx: RunContext) -> SelectDone:
    from .harvest import select

    return select(ctx)


def _harvest(ctx: RunContext) -> HarvestDone:
    from .harvest import harvest

    return harvest(ctx)


def _teardown(ctx: RunContext) -> TeardownDone:
    from .podphase import teardown

    return teardown(ctx)


def _install(ctx: RunContext) -> InstallDone:
    from .harvest import install

    return install(ctx)


def _verify(ctx: RunContext) -> VerifyDone:
    from .verify import verify

    return verify(ctx)


def _report(ctx: RunContext) -> ReportDone:
    from .finish import record_costs, write_run_report
    from .harvest import published

    billed, _ = record_costs(ctx.store, ctx.job_id, ctx.cloud)
    path = write_run_report(ctx, billed)
    if published(ctx):  # the pod's supervisor published the LoRA before the report existed: add it to the repo
        from .detach import publish_report

        publish_report(ctx, path)
    return ReportDone(path=str(path), billed_usd=billed)


def _publish(ctx: RunContext) -> PublishDone:
    from .publish import publish_run

    return publish_run(ctx)


TABLE: tuple[Row, ...] = (
    Row("preflight", Where.LOCAL, _preflight, PreflightDone),
    Row("provision", Where.POD, _provision, ProvisionDone, per_pod=True),
    Row("bootstrap", Where.POD, _bootstrap, BootstrapDone, per_pod=True),
    Row("upload", Where.POD, _upload, UploadDone, per_pod=True),
    Row("caption", Where.POD, _caption, CaptionDone, supervised=True),
    Row("split", Where.POD, _split, SplitDone, per_pod=True, supervised=True),
    Row("render", Where.POD, _render, RenderDone, per_pod=True),
    Row("train", Where.POD, _train, TrainDone, supervised=True),
    Row("select", Where.LOCAL, _select, SelectDone, supervised=True),
    Row("harvest", Where.POD, _harvest, HarvestDone),  # from the local mirror when it holds the LoRA: no pod
    Row("teardown", Where.LOCAL, _teardown, TeardownDone),
    Row("install", Where.LOCAL, _install, InstallDone),
    Row("verify", Where.LOCAL, _verify, VerifyDone),  # samples through a ready ComfyUI (verify/); --no-verify skips
    Row("report", Where.LOCAL, _report, ReportDone),
    Row("publish", Where.LOCAL, _publish, PublishDone, supervised=True),  # the private HF repo (hf_namespace)
)
_BY_NAME = {r.name: r for r in TABLE}
_BY_RESULT = {r.result: r for r in TABLE}


def row(name: str) -> Row:
    return _BY_NAME[name]


def row_for(kind: type[R]) -> Row:
    return _BY_RESULT[kind]
