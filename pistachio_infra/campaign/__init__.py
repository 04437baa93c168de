"""Campaigns: many LoRAs under one hard budget. spec (loading campaign files), costmodel (duration and cost per job
per GPU class), planner (cost per job under deadline and stock), executor (concurrent runs through the train
pipeline, budget-bounded watchdogs), ledger (billed pod-seconds per job).

May import: pipeline (to run jobs), pods, runpod, config, dataset, catalog, state, stacks, and the top-level
cross-cutting modules. Only commands/ imports campaign."""
