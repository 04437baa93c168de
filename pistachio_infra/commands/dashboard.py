"""`dashboard [--port N] [--no-browser] [--export DIR]`: a local, read-only web page over pods, jobs and money."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--port", default=0, show_default="a free one", type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 to serve on.")
@click.option("--no-browser", is_flag=True, help="Only print the URL; do not open a browser.")
@click.option("--export", "export_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write the pages as static files into this folder (opens from disk; no server, no token).")
def dashboard(port: int, no_browser: bool, export_dir: Path | None) -> None:
    """Live pods, running jobs and campaigns, each job's curves, dataset and cost, and money over time.

    Serves on 127.0.0.1 only; the URL it prints carries a random token, and requests without it get 403.
    Read-only: it changes nothing. Ctrl-C stops it.
    """
    from ..dashboard.data import DashboardData

    data = DashboardData()
    if export_dir is not None:
        from ..dashboard.export import export

        written = export(data, export_dir)
        click.echo(f"wrote {len(written)} pages to {export_dir} (open {export_dir / 'index.html'})")
        return

    from ..dashboard.server import Served, serve

    def ready(served: Served) -> None:
        click.echo(f"dashboard: {served.url}", nl=True)
        click.echo("  read-only, on this machine only; Ctrl-C stops it", err=True)
        if not no_browser:
            import webbrowser

            webbrowser.open(served.url)

    serve(data, port, ready)
