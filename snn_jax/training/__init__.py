"""Training engine: train state, jitted data-parallel steps, checkpoints, the loop."""

from snn_jax.training.checkpoint import Checkpointer
from snn_jax.training.config_check import check_config
from snn_jax.training.evaluation import evaluate, evaluate_batch
from snn_jax.training.loop import TrainResult, build_model, train_and_evaluate
from snn_jax.training.losses import LOSSES, tet_loss
from snn_jax.training.optim import make_optimizer, make_schedule
from snn_jax.training.sharding import make_mesh, put_batch, replicated
from snn_jax.training.state import TrainState, create_train_state
from snn_jax.training.steps import cross_entropy, train_step

__all__ = [
    "LOSSES",
    "Checkpointer",
    "TrainResult",
    "TrainState",
    "build_model",
    "check_config",
    "create_train_state",
    "cross_entropy",
    "evaluate",
    "evaluate_batch",
    "make_mesh",
    "make_optimizer",
    "make_schedule",
    "put_batch",
    "replicated",
    "tet_loss",
    "train_and_evaluate",
    "train_step",
]
