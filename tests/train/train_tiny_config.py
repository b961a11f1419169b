"""A tiny digits run for the subprocess tests of ``sld-train`` (preemption, multi-process).

A vanilla ``resnet_tiny`` on 256 digits images, global batch 32: 8 steps per epoch, an eval and a
checkpoint after every epoch, and a progress log line after every step (the preemption tests watch
these lines to pick the moment of a signal). Command::

    python -m sld_jax.cli --config tests/train/train_tiny_config.py:EPOCHS \
        --config.dataset.data_dir=DIR --workdir WORKDIR

``EPOCHS`` (optional, default 4) is the number of epochs; any field can be overridden with
``--config.x=y`` as usual.
"""

import ml_collections

from sld_jax import configs_lib

# Steps per epoch of this config: dataset.limit_train // batch_size.
STEPS_PER_EPOCH = 8


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The tiny run; ``arg`` is the number of epochs (default 4).

    >>> c = get_config("5")
    >>> c.num_epochs, c.batch_size, c.dataset.limit_train // c.batch_size == STEPS_PER_EPOCH
    (5, 32, True)
    """
    c = configs_lib.digits_config("vanilla", None, "resnet_tiny", num_epochs=int(arg or 4))
    c.name = "tiny digits run"
    # 256 training images in batches of 32; 64 test images in one padded eval batch.
    c.dataset.limit_train = STEPS_PER_EPOCH * 32
    c.dataset.limit_test = 64
    c.batch_size = 32
    c.eval_batch_size = 64
    # Two devices per process (the multi-process test uses all of each process's devices).
    c.num_devices = 2
    # A checkpoint after every epoch, the last four kept, so a killed run always has one to resume.
    c.checkpoint_every_epochs = 1
    c.keep_checkpoints = 4
    # A progress line after every step (the tests read the step count from it).
    c.log_every_steps = 1
    return c
