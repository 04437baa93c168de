"""`pistachio-infra dashboard`: one read-only web page over the state the CLI reads.

data.py reads (store, campaign tables, work and run folders) · pages.py renders the Jinja templates · app.py is the
Starlette app (token, routes) · server.py binds 127.0.0.1 and runs uvicorn · export.py writes static pages.
Charts use uPlot, shipped in static/uplot/ (see its VERSION and LICENSE).
"""
