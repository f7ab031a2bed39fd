"""deepmath: the stages of the DeepMath-103K workflow as a Python package.

Each stage is a module with pure functions and a thin CLI (``python -m deepmath.<stage>``)
that the Snakemake rules call. Nothing here knows whether it runs at paper scale or in the
demo: the difference lives in config.
"""

__version__ = "0.1.0"
