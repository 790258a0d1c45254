"""The paper's experiments, one command each: `python -m reproduce figure1` (see reproduce/README.md)."""
