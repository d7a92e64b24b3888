"""Training: :func:`fit` and its few small helpers (batching, optimizer/clipping, checkpoints, meter, outputs).

``from pipeline.training import fit`` trains one model; see :mod:`pipeline.training.loop`.
"""

from pipeline.training.loop import Trainer, fit
from pipeline.training.outputs import OUTPUTS, output_path
from pipeline.training.state import FitResult, LoopState, TrainingDivergedError

__all__ = ["OUTPUTS", "FitResult", "LoopState", "Trainer", "TrainingDivergedError", "fit", "output_path"]
