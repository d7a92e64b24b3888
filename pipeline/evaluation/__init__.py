"""Evaluation: perplexity and bits per token over whole splits, samples, baselines and reports.

Modules are imported directly (``from pipeline.evaluation.scoring import evaluate_split``) so that importing the
package stays light.
"""
