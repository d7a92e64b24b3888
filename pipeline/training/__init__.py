"""Training: :func:`fit` and its few small helpers (batching, optimizer/clipping, checkpoints, meter, outputs).

``from pipeline.training import fit`` trains one model; see :mod:`pipeline.training.loop`.
"""

from pipeline.training.loop import FitResult, LoopState, Trainer, TrainingDivergedError, fit
from pipeline.training.outputs import OUTPUTS, output_path

__all__ = ["OUTPUTS", "FitResult", "LoopState", "Trainer", "TrainingDivergedError", "fit", "output_path"]
