# PISTACHIO SANDBOX STAND-IN (the real file is generated from pyproject.toml)
__version__ = "0.35.0+pistachio-standin"
