"""Verify a trained LoRA: sample renders with the trigger word, with and without the LoRA, through ComfyUI's HTTP API.

graph.py     the API-format graph of ComfyUI core nodes only (Wan 2.1 text-to-video: a still or a short clip)
prompts.py   the sample prompts: the job's `sample_prompts`, else drawn from its captions (with the trigger word)
client.py    POST /prompt, poll /history/{id}, GET /view; ComfyUI's node_errors as one clear error
render.py    render_samples(): every prompt with the LoRA and, same seed, without it -> files + a manifest
sheet.py     the contact sheet PNG (one row per prompt: without | with)
plan.py      where the samples render (a ready ComfyUI, a ComfyUI pod, or skipped) and what that adds to the estimate

graph, prompts, client, render and sheet depend on nothing but a ComfyUI URL and local folders, so the same calls
run on a laptop or on a pod (the pod-side supervisor). May import: errors, money, catalog (plan only). Never
pipeline.
"""
