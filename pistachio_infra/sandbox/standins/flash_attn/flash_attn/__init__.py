"""Stand-in for Dao-AILab/flash-attention's `flash_attn` package (the sandbox's package index serves it as a wheel).

Importable, with the version and the function names DiffusionPipe's Wan attention imports
(models/wan/attention.py@8f83dbf: `flash_attn.flash_attn_varlen_func`); nothing here computes attention.
"""

__version__ = "2.8.3"


def flash_attn_varlen_func(*args, **kwargs):
    raise RuntimeError("sandbox stand-in: flash_attn computes nothing")


def flash_attn_func(*args, **kwargs):
    raise RuntimeError("sandbox stand-in: flash_attn computes nothing")
