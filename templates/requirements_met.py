#!/usr/bin/env python3
"""Exit 0 when every requirement in the given requirements.txt files is installed in this interpreter at an
allowed version (markers honoured), else 1. Used by bootstrap.sh to skip a `pip install -r` that would change
nothing. Anything this check does not understand (options, URLs, editable installs) counts as not met, so pip
decides."""

import sys
from importlib import metadata

try:
    from packaging.requirements import InvalidRequirement, Requirement
except ImportError:  # pip vendors packaging
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement


def met(path):
    with open(path) as fh:
        for raw in fh:
            line = raw.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("-") or "://" in line or line.startswith("."):
                return False
            try:
                req = Requirement(line)
            except InvalidRequirement:
                return False
            if req.marker is not None and not req.marker.evaluate():
                continue
            try:
                version = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                return False
            if req.specifier and not req.specifier.contains(version, prereleases=True):
                return False
    return True


if __name__ == "__main__":
    sys.exit(0 if all(met(p) for p in sys.argv[1:]) else 1)
