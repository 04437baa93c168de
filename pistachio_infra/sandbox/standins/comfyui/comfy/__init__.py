"""Stand-in for ComfyUI's `comfy` package: diffusion-pipe puts submodules/ComfyUI on sys.path and imports it."""
