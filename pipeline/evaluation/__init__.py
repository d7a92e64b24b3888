"""Evaluation: perplexity and bits per token over whole splits (scored by :mod:`pipeline.models.scoring`),
samples, baselines and reports.

Modules are imported directly (``from pipeline.evaluation.evaluate import score_splits``) so that importing the
package stays light.
"""
