"""The `seqlab` subcommands, one module each: ``add(sub)`` registers the parser and its handler."""
