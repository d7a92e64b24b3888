"""Corpora: download and split; :mod:`.windows` cuts a split's ids into model batches."""
