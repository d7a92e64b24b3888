"""seqlab's library: everything the stages call. No CLI, no params.yaml reading, no import-time side effects."""

__version__ = "0.1.0"
