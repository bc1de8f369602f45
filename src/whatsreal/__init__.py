"""whatsreal: disentangle what is real in a galaxy image from what the telescope did to it.

The package holds all logic of the Snakemake pipeline; the workflow's rules and
scripts only call into it, so everything here can be used and tested without
Snakemake.
"""

__version__ = "0.1.0"
