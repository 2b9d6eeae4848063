"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is an edgecnn container of kind ``edgecnn-checkpoint`` (same safe zip + .npy format as model
files, see ``edgecnn._container``) holding a tree the trainer builds: weights (and batch-norm running
statistics), optimizer state, step, epoch, position inside the epoch, the data iterator's state at the
start of the epoch, the dropout RNG state, metrics so far and the run's settings. Writes are atomic
(temporary file, fsync, rename), so the previous checkpoint survives a crash during the write.
"""
import os

from . import _container

KIND = "edgecnn-checkpoint"
FORMAT_VERSION = 1
FILENAME = "checkpoint.ecnn-ckpt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message names the file."""


def path_in(run_dir):
    return os.path.join(os.fspath(run_dir), FILENAME)


def save(path, state):
    return _container.write(path, KIND, FORMAT_VERSION, state)


def load(path):
    try:
        _, state = _container.read(path, KIND, FORMAT_VERSION)
    except _container.ContainerError as e:
        raise CheckpointError(str(e)) from None
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise CheckpointError(f"{os.fspath(path)}: not a training checkpoint (no config or model state)")
    return state
