"""whatsreal: disentangle what is real in a galaxy image from what the telescope did to it.

The package holds all logic of the Snakemake pipeline; the workflow's rules and
scripts only call into it, so everything here can be used and tested without
Snakemake.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``whatsreal.load`` without importing torch on ``import whatsreal`` (the workflow imports
    the package for its config alone)."""
    if name == "load":
        from whatsreal.api import load

        return load
    raise AttributeError(f"module 'whatsreal' has no attribute {name!r}")
