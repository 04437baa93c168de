"""`doctor --live`: what can be checked against the cloud for $0, without renting anything.

Read-only calls only (GPU types with prices and stock, templates, network volumes): the key is valid, every GPU
class of the catalog is a GPU type the cloud knows, the data centers the project's jobs name exist, each class's
price and best stock, and the environment stack's template and volume (when deployed) are reachable. Nothing is
created, started or deleted: no call here can cost money.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .setup import Check


def _project_data_centers(project_path: Path | None) -> list[str]:
    from ..config.project import load_project

    path = project_path or Path("pistachio.toml")
    if not path.is_file():
        return []
    try:
        project = load_project(path)
    except Exception:  # a broken pistachio.toml is `validate`'s business, not the cloud's
        return []
    return sorted({dc for job in project.jobs.values() for dc in job.data_centers})


def live_checks(cloud: Any, project_path: Path | None = None) -> list[Check]:
    """Every live check, in order; stops after the key check when the key is refused."""
    from ..catalog import gpu_classes
    from ..money import usd
    from ..pods.offers import live_offers
    from ..runpod import connect
    from ..runpod.port import AuthError, RunPodApiError
    from ..stacks.outputs import outputs

    where = "the sandbox" if cloud.sandbox else "RunPod"
    api = connect(cloud)
    checks: list[Check] = []
    try:
        try:
            types = api.list_gpu_types()
        except AuthError as exc:
            return [Check("API key", False, True, f"{where} refused it: {exc.cause}",
                          "create a key with read/write access in the RunPod console (Settings → API Keys)")]
        except RunPodApiError as exc:
            return [Check("API key", False, True, f"{where} did not answer: {exc.cause}", exc.fix or "")]
        checks.append(Check("API key", True, True, f"accepted by {where} ({len(types)} GPU types listed)"))

        known = {g.id for g in types}
        missing = [c.name for c in gpu_classes().values() if not set(c.gpu_type_ids) & known]
        checks.append(Check("GPU classes", not missing, True,
                            f"{len(gpu_classes()) - len(missing)} of {len(gpu_classes())} known"
                            + (f"; unknown to {where}: {', '.join(missing)}" if missing else ""),
                            "update pistachio-infra (its GPU class ids are out of date)" if missing else ""))

        seen_dcs = {d.data_center_id for g in types for d in g.data_centers}
        wanted = _project_data_centers(project_path)
        unknown = [dc for dc in wanted if dc not in seen_dcs]
        detail = f"{len(seen_dcs)} with GPU stock listed" + (f"; your jobs name {', '.join(wanted)}" if wanted else "")
        checks.append(Check("data centers", not unknown, True,
                            detail + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
                            f"fix data_centers in pistachio.toml (known: {', '.join(sorted(seen_dcs))})"
                            if unknown else ""))

        for offer_class in gpu_classes().values():
            offers = [o for o in live_offers(api, [offer_class.name]) if o.price_per_hr]
            if not offers:
                checks.append(Check(f"price {offer_class.name}", False, False, "no price or no such GPU listed"))
                continue
            best = max(offers, key=lambda o: (["NONE", "LOW", "MEDIUM", "HIGH"].index(o.stock), -o.price_per_hr))
            checks.append(Check(f"price {offer_class.name}", best.stock != "NONE", False,
                                f"{usd(min(o.price_per_hr for o in offers))}/h, best stock {best.stock} "
                                f"({best.data_center_id or 'any data center'})"))

        env = outputs()
        if env is None:
            checks.append(Check("template/volume", True, False, "no environment stack deployed (`env up` makes one)"))
        else:
            volume = api.get_volume(env.volume_id)
            checks.append(Check("network volume", volume is not None, True,
                                f"{env.volume_id} in {env.data_center_id}" if volume else
                                f"{env.volume_id} is gone", "" if volume else "run `pistachio-infra env up`"))
            if env.template_id:
                template = api.get_template(env.template_id)
                checks.append(Check("template", template is not None, True,
                                    f"{env.template_id} ({template.image})" if template else
                                    f"{env.template_id} is gone", "" if template else "run `pistachio-infra env up`"))
    finally:
        close = getattr(api, "close", None)
        if close is not None:
            close()
    return checks
