"""`cost [--campaign X] [--csv FILE]`: estimated vs billed cost per job, and totals (campaign/ledger.py)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--campaign", "campaign_name", default=None, help="Only this campaign's jobs.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the rows to this CSV file.")
@click.option("--offline", is_flag=True, help="Do not ask the cloud's billing report; use our own pod-second count.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one document on stdout) instead of the table.")
def cost(campaign_name: str | None, csv_path: Path | None, offline: bool, as_json: bool) -> None:
    """Estimated vs billed cost per job (every pod-second billed, attributed to its job) and totals."""
    from rich.table import Table

    from ..campaign.ledger import cost_rows, sync, write_csv
    from ..campaign.records import CampaignRecords
    from ..console import make_console
    from ..state import Store

    console = make_console()
    store, records = Store(), CampaignRecords()
    try:
        if not offline:
            from ..endpoints import resolve_cloud

            sync(store, resolve_cloud(), campaign=campaign_name)
        estimates = {}
        for c in records.campaigns():
            if campaign_name is None or c["name"] == campaign_name:
                estimates.update({r["job"]: r["est_usd"] for r in records.jobs(c["name"], c["cloud"])
                                  if r["est_usd"] is not None})
        rows = cost_rows(store, campaign=campaign_name, estimates=estimates)
    finally:
        records.close()
        store.close()
    if csv_path is not None:
        write_csv(rows, csv_path)
    if as_json:
        import dataclasses

        from ..jsonout import emit

        emit({"campaign": campaign_name, "jobs": [dataclasses.asdict(r) for r in rows],
              "total": {"pods": sum(r.pods for r in rows), "pod_seconds": sum(r.pod_seconds for r in rows),
                        "estimated_usd": sum(r.estimated_usd for r in rows if r.estimated_usd is not None),
                        "billed_usd": sum(r.billed_usd for r in rows)}})
        return
    table = Table(title="cost per job" + (f" (campaign {campaign_name})" if campaign_name else ""))
    for col in ("job", "run", "campaign", "status", "GPU", "pods", "pod time", "estimate", "billed", "diff"):
        table.add_column(col, justify="right" if col in ("run", "pods", "pod time", "estimate", "billed", "diff")
                         else "left")
    for r in rows:
        diff = f"{(r.billed_usd - r.estimated_usd):+.4f}" if r.estimated_usd is not None else ""
        table.add_row(r.job, str(r.job_id), r.campaign or "", r.status, r.gpu_class or "", str(r.pods),
                      f"{r.pod_seconds / 60:.1f}m", f"${r.estimated_usd:.4f}" if r.estimated_usd is not None else "—",
                      f"${r.billed_usd:.4f}", diff)
    est = sum(r.estimated_usd for r in rows if r.estimated_usd is not None)
    table.add_section()
    table.add_row("total", "", "", "", "", str(sum(r.pods for r in rows)),
                  f"{sum(r.pod_seconds for r in rows) / 60:.1f}m", f"${est:.4f}",
                  f"${sum(r.billed_usd for r in rows):.4f}", "")
    console.print(table)
    if csv_path is not None:
        console.print(f"wrote {len(rows)} rows to {csv_path}")
