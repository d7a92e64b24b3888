"""The curriculum's experiments, one module each, named after its DVC stage (``stages/<name>.py``).

* :mod:`.probe`: vanishing/exploding gradients made visible: gradient norm against distance, and the
  gradient-norm distributions of training runs with and without clipping.
* :mod:`.agreement`: long-range dependencies: synthetic number agreement, accuracy against distance.
* :mod:`.tagging`: many-to-many (Tx = Ty): restore removed spaces, unidirectional vs bidirectional tagger.
* :mod:`.langid`: many-to-one: which language is this line in?
* :mod:`.styles`: one-to-many: music generation conditioned on a style id.
* :mod:`.depth`: deep RNNs: 1, 2, 3 layers with the same number of optimizer steps.

The experiments train with :func:`pipeline.training.supervised.train_supervised` (depth uses
:func:`pipeline.training.loop.fit`), share :mod:`.batches`, :mod:`.metrics` and
:mod:`.parallel`, write through :mod:`.outputs` and draw through :mod:`.plots` (the only
module here that imports matplotlib).
"""
