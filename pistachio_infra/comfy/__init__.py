"""ComfyUI workflows: the custom node packs and models a workflow needs, and installing them.

workflow.py   parse UI-format (with nested subgraphs, group nodes) and API-format workflows
database.py   ComfyUI-Manager's node/pack/model database: download, dated cache, shipped snapshot
nodes.py      core node list; node type -> pack (evidence in the workflow, extension-node-map, patterns)
models.py     model files by loader widget, their folders, their sources (workflow URL, model-list,
              manifests, Hugging Face search), gated repos
plan.py       the plan against one ComfyUI installation (installed packs, present files)
target.py     a local ComfyUI folder or one on a pod; ComfyUI as the pod's "comfyui" job
agent.py      runs next to ComfyUI: inventory, clone + requirements, resumable sha256-checked downloads
install.py    apply a plan with progress, then restart ComfyUI
resolve.py    resolve_workflow(): file -> plan in one call
loras.py      install a harvested LoRA into models/loras (local folder, SFTP host, the env stack's ComfyUI pod)

May import: catalog, errors, paths, pods, remote, stacks, state. Never pipeline or commands."""
