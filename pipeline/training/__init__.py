"""Training: :func:`~pipeline.training.loop.fit` trains one language model (:mod:`.loop`, with its batching,
step, meter, checkpoints, outputs and reporting); :func:`~pipeline.training.supervised.train_supervised` runs the
curriculum's small supervised experiments.

Modules are imported directly (``from pipeline.training.loop import fit``), so that code that uses only the
supervised loop never imports the language-model loop, and a DVC stage depends only on the modules it runs.
"""
