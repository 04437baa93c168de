"""`pulumi up` entry point: the same environment program `pistachio-infra env up` runs inline."""

from pistachio_infra.stacks.program import env_program

env_program()
