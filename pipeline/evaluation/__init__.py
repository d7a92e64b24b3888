"""Evaluation: losses, perplexity and bits per token over whole splits, samples, baselines and reports.

Modules are imported directly (``from pipeline.evaluation.loss import evaluate_split``) so that importing the
package stays light.
"""
