"""Corpora: download and split."""
