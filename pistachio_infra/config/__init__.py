"""What a job is configured by: the user's pistachio.toml / job files (project.py, pydantic models with one-line
errors) and the DiffusionPipe / JoyCaption files rendered from them per GPU class (render.py, Jinja over templates/,
parsed back and checked against DiffusionPipe's rules).

May import: catalog, dataset, errors, paths, pods.layout. Never the cloud, SSH or the sandbox."""
