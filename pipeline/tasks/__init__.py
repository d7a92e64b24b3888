"""The curriculum's experiments, one module each, every one a DVC stage (``stages/<name>.py``).

* :mod:`.probe`: vanishing/exploding gradients made visible: gradient norm against distance, and the
  gradient-norm distributions of training runs with and without clipping.
* :mod:`.agreement`: long-range dependencies: synthetic number agreement, accuracy against distance.
* :mod:`.spaces`: many-to-many (Tx = Ty): restore removed spaces, unidirectional vs bidirectional tagger.
* :mod:`.languages`: many-to-one: which language is this line in?
* :mod:`.styles`: one-to-many: music generation conditioned on a style id.
* :mod:`.depth`: deep RNNs: 1, 2, 3 layers with the same number of optimizer steps.

The tasks train with :func:`pipeline.training.supervised.train_supervised` (depth uses
:func:`pipeline.training.fit`), write through :mod:`.outputs` and draw through :mod:`.plots` (the only
module here that imports matplotlib).
"""
