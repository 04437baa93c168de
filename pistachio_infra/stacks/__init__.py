"""Persistent infrastructure as Pulumi stacks: dynamic providers (`providers`), the environment stack program
(`program`), the Automation API driver (`automation`).

Importing this package does not import pulumi: `outputs()` reads the deployed stack's outputs from the local
file backend, so training jobs can use the model-cache volume without the Pulumi CLI.

May import: catalog, credentials, endpoints, errors, paths, runpod. Never pipeline or commands."""

from .outputs import EnvOutputs, outputs

__all__ = ["EnvOutputs", "outputs"]
