"""Builders shared by the config files in ``configs/`` (importable after ``pip install``).

One config file is one experiment: it calls a builder here and overrides what differs. Every
constant the reference hard-codes (γ, temperatures, loss weights, LR stages) is a config field.

Every config file has ``get_config(arg=None)`` and passes ``arg`` — the text after the colon in
``sld-train --config path.py:ARG`` — to :func:`finish` (or to :func:`parse_arg` first when it takes
arguments of its own). ``ARG`` is a comma-separated list of items:

- ``runlocal``: the dry-run shrink (:func:`runlocal`): a tiny student and teacher, 16 train and 8
  test examples, batch 8, one epoch of two steps;
- ``name=value``: a field the config file declares (e.g. ``alpha=0.3`` for the conditional swap);
- a bare value: the config file's first non-flag field (``conditional_swap.py:0.3`` is α = 0.3).

So ``--config configs/cifar100/sld/resnet32x4_resnet8x4.py:runlocal`` dry-runs the SLD row and
``--config configs/cifar100/ablation/conditional_swap.py:0.3,runlocal`` the α = 0.3 sweep point.
``--config.key=value`` overrides apply after ``get_config``.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from sld_jax.losses.mlkd import MLKD_TEMPERATURES
from sld_jax.losses.sld import DEFAULT_TEMPERATURES
from sld_jax.train import fields

SLD_TEMPERATURES = DEFAULT_TEMPERATURES

# Every recipe value below is read from the file its comment names (a yaml merged over
# mdistiller/engine/cfg.py's defaults, a distiller's constants or a run's log), pair by pair: a
# value is looked up in its table, never inferred from an architecture's name.
# tests/configs/recipes.csv holds each config's fields with their source; the test beside it keeps
# the configs equal to it.

# SLD: SOLVER.LR of Swapped-Logit-Distillation configs/cifar100/sld/<pair>.yaml (all 240 epochs).
SLD_CIFAR_LR = {
    ("resnet56", "resnet20"): 0.025,
    ("resnet110", "resnet32"): 0.025,
    ("resnet32x4", "resnet8x4"): 0.025,
    ("wrn_40_2", "wrn_16_2"): 0.025,
    ("wrn_40_2", "wrn_40_1"): 0.025,
    ("wrn_40_2", "vgg8"): 0.025,
    ("vgg13", "vgg8"): 0.025,
    ("vgg13", "MobileNetV2"): 0.008,
    ("ResNet50", "MobileNetV2"): 0.008,
    ("resnet32x4", "ShuffleV1"): 0.009,
    ("resnet32x4", "ShuffleV2"): 0.008,
    ("wrn_40_2", "ShuffleV1"): 0.01,
}
CIFAR_PAIRS = tuple(SLD_CIFAR_LR)
CIFAR_TEACHERS = ("resnet56", "resnet110", "resnet32x4", "ResNet50", "wrn_40_2", "vgg13")
# Vanilla: logit-standardization-KD CTKD/train_teacher.py trains every model at LR 0.05 except
# these three, which it sets to 0.01 by name (its own rule, reproduced as such).
LIGHT_STUDENTS = ("MobileNetV2", "ShuffleV1", "ShuffleV2")
# KD and DKD: SOLVER.LR of Swapped-Logit-Distillation configs/cifar100/dkd/<pair>.yaml (=
# mdistiller's), equal pair by pair to logit-standardization-KD configs/cifar100/kd/<pair>.yaml.
# wrn_40_2 -> vgg8 has neither a DKD nor a per-pair KD yaml: 0.05, the LR of mdistiller's
# configs/cifar100/kd.yaml and of every DKD yaml of a student outside LIGHT_STUDENTS.
BASELINE_CIFAR_LR = {
    ("resnet56", "resnet20"): 0.05,
    ("resnet110", "resnet32"): 0.05,
    ("resnet32x4", "resnet8x4"): 0.05,
    ("wrn_40_2", "wrn_16_2"): 0.05,
    ("wrn_40_2", "wrn_40_1"): 0.05,
    ("wrn_40_2", "vgg8"): 0.05,
    ("vgg13", "vgg8"): 0.05,
    ("vgg13", "MobileNetV2"): 0.01,
    ("ResNet50", "MobileNetV2"): 0.01,
    ("resnet32x4", "ShuffleV1"): 0.01,
    ("resnet32x4", "ShuffleV2"): 0.01,
    ("wrn_40_2", "ShuffleV1"): 0.01,
}
# MLKD (and MLKD + SLD, LS-MLKD, LS-MLKD + SLD): (SOLVER.LR, SOLVER.EPOCHS) of
# Swapped-Logit-Distillation configs/cifar100/mlkd/<pair>.yaml; for the LS-MLKD pairs the
# logit-standardisation repository's configs/cifar100/mlkd/<pair>.yaml and the logs of
# LS_MLKD_LOGS say the same. 960 epochs only for the resnet32x4 teacher's ShuffleNet students.
MLKD_CIFAR = {
    ("resnet56", "resnet20"): (0.025, 480),
    ("resnet110", "resnet32"): (0.025, 480),
    ("resnet32x4", "resnet8x4"): (0.025, 480),
    ("wrn_40_2", "wrn_16_2"): (0.025, 480),
    ("wrn_40_2", "wrn_40_1"): (0.025, 480),
    ("wrn_40_2", "vgg8"): (0.025, 480),
    ("vgg13", "vgg8"): (0.025, 480),
    ("vgg13", "MobileNetV2"): (0.01, 480),
    ("ResNet50", "MobileNetV2"): (0.01, 480),
    ("resnet32x4", "ShuffleV1"): (0.01, 960),
    ("resnet32x4", "ShuffleV2"): (0.01, 960),
    ("wrn_40_2", "ShuffleV1"): (0.01, 480),
}
# DKD β per pair: DKD.BETA of Swapped-Logit-Distillation configs/cifar100/dkd/<pair>.yaml, else
# mdistiller/engine/cfg.py's 8.0 (α 1, T 4, warm-up 20 epochs and CE 1 everywhere: its defaults).
DKD_BETA = {
    ("resnet56", "resnet20"): 2.0,
    ("resnet110", "resnet32"): 2.0,
    ("vgg13", "vgg8"): 6.0,
    ("vgg13", "MobileNetV2"): 6.0,
    ("wrn_40_2", "wrn_16_2"): 6.0,
    ("wrn_40_2", "wrn_40_1"): 6.0,
}
# Logit-standardised MLKD (Sun et al.'s `tools/train.py --logit-stand --base-temp B --kd-weight W`):
# per pair the log behind the paper's number, whose name is KD_TYPE,TEACHER,STUDENT,B,W (the
# naming rule of that repository's README), and the (B, W) it encodes. B replaces MLKD's base
# temperature 4 (so the temperatures are (B, 3, 5, 2, 6)); W replaces the KD weight 0.9 on the KD,
# batch- and class-level terms.
LS_MLKD_LOGS = {
    ("resnet32x4", "resnet8x4"): ("logs/MLKD/mlkd,resnet32x4,resnet8x4,2,9.txt", 2.0, 9.0),
    ("wrn_40_2", "wrn_16_2"): ("logs/MLKD/mlkd,wrn_40_2,wrn_16_2,2,9.txt", 2.0, 9.0),
    ("resnet110", "resnet32"): ("logs/MLKD/mlkd,res110,res32,2,9.txt", 2.0, 9.0),
    ("ResNet50", "MobileNetV2"): ("logs/MLKD/mlkd,res50,mv2,2,9.txt", 2.0, 9.0),
    ("resnet32x4", "ShuffleV2"): ("logs/MLKD/mlkd,resnet32x4,ShuffleV2,2,6.txt", 2.0, 6.0),
}
# Sun et al.'s default (README command): `--base-temp 2 --kd-weight 9`, for a pair without a log.
LS_MLKD_DEFAULT = (2.0, 9.0)
# The pairs of the paper's MLKD / LS-MLKD / SLD table, with (LS-MLKD, LS-MLKD + SLD) top-1 (%);
# None where the paper reports no number.
LS_MLKD_PAPER = {
    ("resnet32x4", "resnet8x4"): (78.28, 78.66),
    ("wrn_40_2", "wrn_16_2"): (76.95, None),
    ("resnet110", "resnet32"): (74.32, None),
    ("ResNet50", "MobileNetV2"): (71.19, None),
    ("resnet32x4", "ShuffleV2"): (78.76, None),
}
# The ablation ladder on resnet32x4 -> resnet8x4: name -> (teacher transform, γ, paper top-1 %).
# γ = None means "never within the run" (γ = num_epochs); γ = 0 means from the first epoch.
ABLATION_LADDER = {
    "kd_pa": ("none", None, 73.33),
    "kd_pa_lts": ("swap", None, 75.15),
    "kd_pa_lts_lss_nogamma": ("swap", 0, 75.87),
    "sld": ("swap", 150, 77.69),
}
# The conditional-swap threshold α of the sweep (no paper numbers in the design notes).
CONDITIONAL_SWAP_ALPHAS = (0.1, 0.3, 0.5, 0.7, 0.9)


def base_config() -> ml_collections.ConfigDict:
    """The fields every run has, with the reference CIFAR-100 SLD values as defaults: every field's
    default and meaning is declared once, in :data:`sld_jax.train.fields.FIELDS`."""
    return fields.defaults()


def cifar_config(method: str, teacher: str | None, student: str) -> ml_collections.ConfigDict:
    """A CIFAR-100 config of the paper: ``method`` in vanilla/kd/dkd/mlkd/sld and variants.

    Args:
      method: the method name.
      teacher: the teacher architecture (None for ``vanilla``).
      student: the student architecture (the trained model).
    """
    c = base_config()
    c.dataset.name = "cifar100"
    c.model = student
    c.method = method
    c.name = f"cifar100/{method}/{teacher + '_' if teacher else ''}{student}"
    pair = (teacher, student)
    if teacher is not None:
        c.teacher.arch = teacher
        c.teacher.checkpoint = f"teachers/cifar100/{teacher}"
    if method == "vanilla":
        # CTKD/train_teacher.py: CE only, LR 0.05 (0.01 for LIGHT_STUDENTS), 240 epochs.
        c.loss.ce_weight, c.loss.kd_weight = 1.0, 0.0
        c.optim.lr = 0.01 if student in LIGHT_STUDENTS else 0.05
    elif method == "kd":
        # mdistiller's kd.yaml over cfg.py: T 4, CE 0.1 / KD 0.9, one view, no swap.
        c.loss.ce_weight, c.loss.kd_weight = 0.1, 0.9
        c.loss.teacher_transform = "none"
        c.optim.lr = BASELINE_CIFAR_LR.get(pair, 0.05)
    elif method in ("dkd", "dkd+sld"):
        # The DKD yaml over cfg.py: CE 1, α 1, β per pair, T 4, warm-up 20. For DKD + SLD (no
        # source recipe) kd_weight is the pseudo-teacher term's weight: 1, DKD's own weight on its
        # distillation term, as SLD gives that term its KD weight (0.9).
        c.loss.ce_weight, c.loss.kd_weight = 1.0, 1.0
        c.loss.dkd.beta = DKD_BETA.get(pair, 8.0)
        c.loss.teacher_transform = "swap" if method == "dkd+sld" else "none"
        c.optim.lr = BASELINE_CIFAR_LR.get(pair, 0.05)
    elif method in ("mlkd", "mlkd+sld"):
        # The MLKD yaml over cfg.py: CE 0.1 / KD 0.9, base temperature 4, stages 150/180/210.
        c.loss.teacher_transform = "swap" if method == "mlkd+sld" else "none"
        c.optim.lr, c.num_epochs = MLKD_CIFAR.get(pair, (0.025, 480))
    elif method == "rkd":
        # mdistiller's rkd.yaml: CE 1 + RKD 1 on one view, no KD term, LR 0.05, 240 epochs.
        c.loss.ce_weight, c.loss.kd_weight = 1.0, 0.0
        c.loss.teacher_transform = "none"
        c.optim.lr = BASELINE_CIFAR_LR.get(pair, 0.05)
    elif method in ("sld", "rkd+sld"):
        c.optim.lr = SLD_CIFAR_LR.get(pair, 0.025)
    else:
        raise ValueError(f"unknown method {method!r}")
    return c


# The reference's ImageNet loss weights, (ce_weight, kd_weight) per (method, teacher, student)
# (Swapped-Logit-Distillation configs/imagenet/<pair>/<method>.yaml: SOLVER/SLD/KD CE and KD weights).
IMAGENET_LOSS_WEIGHTS = {
    ("sld", "imagenet_resnet34", "imagenet_resnet18"): (0.5, 0.5),
    ("sld", "imagenet_resnet50", "imagenet_mobilenet_v1"): (1.0, 0.5),
    ("kd", "imagenet_resnet34", "imagenet_resnet18"): (0.5, 0.5),
    ("kd", "imagenet_resnet50", "imagenet_mobilenet_v1"): (0.5, 0.5),
}
# The reference's ImageNet KD: Hinton's KD at T = 1, no swap (its kd.yaml).
IMAGENET_KD_TEMPERATURE = 1.0


def imagenet_config(
    method: str, teacher: str | None, student: str, *, gamma: int = 30
) -> ml_collections.ConfigDict:
    """An ImageNet config: batch 512, LR 0.2, wd 1e-4, 100 epochs, stages 30/60/90, and the
    reference's loss weights of the method and pair (:data:`IMAGENET_LOSS_WEIGHTS`; vanilla: CE 1).

    >>> c = imagenet_config("kd", "imagenet_resnet34", "imagenet_resnet18")
    >>> c.loss.ce_weight, c.loss.kd_weight, c.loss.kd_temperature, c.loss.teacher_transform
    (0.5, 0.5, 1.0, 'none')
    """
    c = base_config()
    c.dataset.name = "imagenet2012"
    c.dataset.download = False
    c.model = student
    c.method = method
    c.name = f"imagenet/{method}/{teacher + '_' if teacher else ''}{student}"
    if teacher is not None:
        c.teacher.arch = teacher
        c.teacher.checkpoint = f"teachers/imagenet/{teacher}"
    c.batch_size = 512
    c.eval_batch_size = 512
    c.num_epochs = 100
    c.optim.lr = 0.2
    c.optim.weight_decay = 1e-4
    c.optim.stages = (30, 60, 90)
    c.loss.gamma = gamma
    c.checkpoint_every_epochs = 1
    c.log_every_steps = 200
    if method == "vanilla":
        c.loss.ce_weight, c.loss.kd_weight = 1.0, 0.0
    elif (method, teacher, student) in IMAGENET_LOSS_WEIGHTS:
        c.loss.ce_weight, c.loss.kd_weight = IMAGENET_LOSS_WEIGHTS[(method, teacher, student)]
    if method == "kd":
        c.loss.teacher_transform = "none"
        c.loss.kd_temperature = IMAGENET_KD_TEMPERATURE
    return c


def digits_config(
    method: str, teacher: str | None, student: str, *, num_epochs: int = 10
) -> ml_collections.ConfigDict:
    """A run on the embedded offline ``digits`` set (16x16 RGB, 10 classes), scaled to a CPU.

    The schedule is the CIFAR recipe compressed to ``num_epochs``: LR stages at 5/8, 6/8 and 7/8
    of the run and γ at the 5/8 point, so every mechanism (LR decay, the γ gate) is exercised.
    """
    c = cifar_config(method, teacher, student)
    c.dataset.name = "digits"
    c.dataset.download = False
    c.name = f"digits/{method}/{teacher + '_' if teacher else ''}{student}"
    c.num_epochs = num_epochs
    c.optim.lr = 0.05
    c.optim.stages = tuple(int(round(num_epochs * f)) for f in (5 / 8, 6 / 8, 7 / 8))
    c.loss.gamma = int(round(num_epochs * 5 / 8))
    c.batch_size = 64
    c.eval_batch_size = 128
    c.checkpoint_every_epochs = num_epochs
    c.log_every_steps = 10
    if teacher is not None:
        c.teacher.checkpoint = ""
    return c


def ls_mlkd_config(teacher: str, student: str, *, sld: bool = False) -> ml_collections.ConfigDict:
    """LS-MLKD (MLKD with logit standardisation), or LS-MLKD + SLD with ``sld=True``.

    MLKD as :func:`cifar_config` builds it (the pair's MLKD yaml: LR, epochs, CE 0.1), with Sun et
    al.'s settings of the pair's run (:data:`LS_MLKD_LOGS`): the instance-level KD terms on z-scored
    logits, the base temperature B in place of 4 (temperatures (B, 3, 5, 2, 6)) and the KD weight W
    on the KD, batch- and class-level terms alike. With ``sld`` the teacher logits are swapped
    before every MLKD term and confidence mask (z-scoring commutes with the swap) and the γ-gated
    pseudo-teacher term of MLKD + SLD is added unchanged (raw logits, T = 1..6, weight 0.9).

    >>> ls = ls_mlkd_config("resnet32x4", "ShuffleV2")
    >>> (ls.optim.lr, ls.num_epochs, ls.loss.mlkd.kd_weight, ls.loss.mlkd.temperatures)
    (0.01, 960, 6.0, (2.0, 3.0, 5.0, 2.0, 6.0))
    """
    c = cifar_config("mlkd+sld" if sld else "mlkd", teacher, student)
    c.name = f"cifar100/{'ls_mlkd_sld' if sld else 'ls_mlkd'}/{teacher}_{student}"
    _, base_temperature, kd_weight = LS_MLKD_LOGS.get((teacher, student), ("", *LS_MLKD_DEFAULT))
    c.loss.mlkd.logit_standardization = True
    c.loss.mlkd.temperatures = (base_temperature, *MLKD_TEMPERATURES[1:])
    c.loss.mlkd.kd_weight = kd_weight
    return c


def ablation_config(step: str, *, alpha: float | None = None) -> ml_collections.ConfigDict:
    """One rung of the paper's ablation ladder on resnet32x4 -> resnet8x4 (method ``sld``).

    Every rung is the SLD recipe (two views, temperatures 1..6, CE 0.1 / KD 0.9, SLD's LR) with
    the swaps switched by config fields: ``loss.teacher_transform`` ("none" or "swap") and
    ``loss.gamma`` (the student swap is on for epochs > γ; γ = num_epochs never switches it on).

    Args:
      step: a name of :data:`ABLATION_LADDER`, or "conditional_swap" (full SLD whose teacher swap
        fires only where the top-1 and label probabilities differ by less than ``alpha``).
      alpha: the conditional-swap threshold in (0, 1] (only with "conditional_swap").
    """
    c = cifar_config("sld", "resnet32x4", "resnet8x4")
    c.name = f"cifar100/ablation/{step}"
    if step == "conditional_swap":
        c.loss.teacher_transform = "conditional_swap"
        c.loss.teacher_transform_kwargs.alpha = float(0.5 if alpha is None else alpha)
        c.name += f"_alpha{c.loss.teacher_transform_kwargs.alpha:g}"
        return c
    if step not in ABLATION_LADDER or alpha is not None:
        raise ValueError(
            f"unknown ablation step {step!r} (with alpha={alpha}); choose one of "
            f"{', '.join(ABLATION_LADDER)} or conditional_swap with alpha."
        )
    transform, gamma, _ = ABLATION_LADDER[step]
    c.loss.teacher_transform = transform
    c.loss.gamma = c.num_epochs if gamma is None else gamma
    return c


def grid_suite(
    rows: dict[str, tuple[str, str]],
    methods: tuple[str, ...],
    build,
    *,
    num_seeds: int = 1,
    paper: dict[str, dict[str, float]] | None = None,
) -> ml_collections.ConfigDict:
    """A suite of ``rows`` x ``methods`` runs named ``<row>/<method>`` (see sld_jax.train.suite).

    Args:
      rows: row name -> (teacher architecture, student architecture), in table order.
      methods: the method of each column, in table order (e.g. ``("kd", "dkd+sld")``).
      build: ``build(method, teacher, student)`` -> a run config (e.g. :func:`cifar_config`).
      num_seeds: seeds of every run (``num_seeds`` of each run config).
      paper: row name -> {method: reported top-1 in percent}; a cell the paper does not report
        is left out (its "paper" column stays empty).

    Returns:
      A suite config with ``suite``, ``runs`` and ``paper`` (run name -> top-1 %), plus the fields
      every suite has (``data_dir``, ``teacher_checkpoint``); ``name`` and ``description`` are
      the caller's to set.

    >>> g = grid_suite({"r": ("resnet32x4", "resnet8x4")}, ("kd", "sld"), cifar_config,
    ...                num_seeds=3, paper={"r": {"sld": 77.69}})
    >>> list(g.suite), g.runs["r/sld"].num_seeds, g.paper.to_dict()
    (['r/kd', 'r/sld'], 3, {'r/sld': 77.69})
    """
    c = suite_base()
    c.suite = tuple(f"{row}/{method}" for row in rows for method in methods)
    for row, (teacher, student) in rows.items():
        for method in methods:
            run = build(method, teacher, student)
            run.num_seeds = num_seeds
            c.runs[f"{row}/{method}"] = run
            reported = (paper or {}).get(row, {}).get(method)
            if reported is not None:
                c.paper[f"{row}/{method}"] = float(reported)
    return c


def suite_base() -> ml_collections.ConfigDict:
    """The fields of every suite config (sld_jax.train.suite), without runs."""
    c = ml_collections.ConfigDict()
    c.name = "suite"
    c.description = ""
    c.suite = ()
    c.runs = ml_collections.ConfigDict()
    # The run whose workdir is every other distillation run's teacher ("" when none).
    c.teacher_run = ""
    # Reported top-1 (%) per run name, shown beside the measured one; a run absent here has none.
    c.paper = ml_collections.ConfigDict()
    # TFDS data directory for every run (None: each run's dataset.data_dir).
    c.data_dir = ml_collections.config_dict.placeholder(str)
    # Teacher checkpoint for every distillation run (None: each run's teacher.checkpoint).
    c.teacher_checkpoint = ml_collections.config_dict.placeholder(str)
    # The table's comparisons (sld_jax.train.comparisons): baseline run (or grid method) names,
    # each compared with every other student of its row; None: "kd" where present, else "vanilla";
    # () for none. `comparisons`, when non-empty, lists (run, baseline) pairs instead.
    c.baselines = ml_collections.config_dict.placeholder(tuple)
    c.comparisons = ()
    return c


def sweep_suite(
    base: ml_collections.ConfigDict,
    *,
    field: str,
    values: tuple[float, ...],
    num_seeds: int = 3,
    teacher: ml_collections.ConfigDict | None = None,
    name: str = "sweep",
) -> ml_collections.ConfigDict:
    """A suite training ``base`` once per value of a numeric ``field``, ``num_seeds`` seeds each.

    The runs are named ``<last part of field>=<value>`` (e.g. ``gamma=150``, ``alpha=0p3`` for 0.3:
    a config key holds no dot) in the order of
    ``values``; the suite writes its table, the sweep's table (best test top-1 per value: mean ± std
    and 95 % interval over seeds) and ``sweep.png`` (sld_jax.train.suite_report). With ``teacher``
    (a vanilla run config of one seed), a run ``teacher`` trains first and is every run's teacher.

    Raises:
      ConfigError: ``field`` is not a field of ``base``, is not numeric, or ``values`` is empty,
        not numeric or repeats a value.

    >>> s = sweep_suite(digits_config("sld", "resnet20", "resnet8"), field="loss.gamma", values=(2, 5))
    >>> list(s.suite), s.runs["gamma=5"].loss.gamma, s.sweep.field
    (['gamma=2', 'gamma=5'], 5, 'loss.gamma')
    """
    from sld_jax.errors import ConfigError
    from sld_jax.train.validation import is_numeric

    node, parts = base, field.split(".")
    for i, part in enumerate(parts):
        if not hasattr(node, "keys") or part not in node:
            raise ConfigError(
                f"sweep field {field!r}: the run config has no field {'.'.join(parts[: i + 1])!r}; "
                "name a numeric field such as loss.gamma or optim.lr."
            )
        node = node[part]
    if isinstance(node, (tuple, list)) or not is_numeric(node):
        raise ConfigError(f"sweep field {field!r} holds {node!r}, not a number; sweep a numeric field.")
    values = tuple(values)
    if not values or not all(is_numeric(v) and not isinstance(v, (tuple, list)) for v in values):
        raise ConfigError(f"sweep values of {field!r} must be a non-empty tuple of numbers, got {values!r}.")
    if len(set(values)) != len(values):
        raise ConfigError(f"sweep values of {field!r} repeat a value: {values!r}.")
    if isinstance(node, int) and not all(float(v).is_integer() for v in values):
        raise ConfigError(f"sweep field {field!r} is a whole number; got values {values!r}.")
    c = suite_base()
    c.name = name
    c.description = (
        f"{base.name}: {field} swept over {', '.join(f'{v:g}' for v in values)}, {num_seeds} seeds each"
    )
    c.baselines = ()
    # A config key holds no ".": 0.1 is spelt 0p1 in a run name.
    runs = [f"{parts[-1]}={v:g}".replace(".", "p") for v in values]
    if teacher is not None:
        c.runs.teacher = teacher
        c.teacher_run = "teacher"
    for run_name, value in zip(runs, values):
        run = ml_collections.ConfigDict(base.to_dict())
        node = run
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = type(node[parts[-1]])(value)
        run.num_seeds = num_seeds
        run.name = f"{base.name}/{run_name}"
        c.runs[run_name] = run
    c.suite = (("teacher",) if teacher is not None else ()) + tuple(runs)
    c.sweep = ml_collections.ConfigDict({"field": field, "grid": values, "runs": tuple(runs)})
    return c


# The dry-run sizes of :func:`runlocal` (two steps of batch 8 make one epoch of 16 examples).
RUNLOCAL_MODEL = "resnet_tiny"
RUNLOCAL_TRAIN_EXAMPLES = 16
RUNLOCAL_TEST_EXAMPLES = 8
RUNLOCAL_BATCH_SIZE = 8


def _convert(name: str, text: str, default: Any) -> Any:
    """``text`` as the type of ``default`` (bool: true/false/1/0), with a clear error."""
    if isinstance(default, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"config argument {name}={text!r} must be true or false.")
    try:
        return type(default)(text) if default is not None else text
    except ValueError:
        raise ValueError(
            f"config argument {name}={text!r} must be a {type(default).__name__} "
            f"(like the default {default!r})."
        ) from None


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
    """A config file's argument (the text after ``:`` in ``--config path.py:ARG``) as fields.

    ``ARG`` is a comma-separated list: ``name=value`` sets field ``name``; a bare ``name`` of a
    boolean field sets it True (``runlocal``); any other bare item is the value of the first
    non-boolean field. Values take the type of the field's default.

    Args:
      arg: the argument, or None / "" for all defaults.
      **spec: the fields and their defaults, in order (e.g. ``alpha=0.5, runlocal=False``).

    Returns:
      A locked ``ConfigDict`` with one entry per field of ``spec``.

    Raises:
      ValueError: for an unknown name, a bare value with no field to take it, or a bad value.

    >>> a = parse_arg("0.3,runlocal", alpha=0.5, runlocal=False)
    >>> (a.alpha, a.runlocal)
    (0.3, True)
    >>> parse_arg("alpha=0.7", alpha=0.5, runlocal=False).to_dict()
    {'alpha': 0.7, 'runlocal': False}
    >>> parse_arg(None, runlocal=False).runlocal
    False
    >>> parse_arg("runlocl", runlocal=False)
    Traceback (most recent call last):
    ...
    ValueError: unknown config argument 'runlocl'; this config takes runlocal (comma-separated: a bare flag name, name=value, or a bare value for the first non-flag field).
    """
    values = dict(spec)
    positional = [k for k, v in spec.items() if not isinstance(v, bool)]
    usage = (
        f"this config takes {', '.join(spec) or 'no argument'} (comma-separated: a bare flag "
        "name, name=value, or a bare value for the first non-flag field)."
    )
    for item in (arg or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, eq, text = item.partition("=")
        name = name.strip()
        if eq:
            if name not in spec:
                raise ValueError(f"unknown config argument {name!r}; {usage}")
            values[name] = _convert(name, text.strip(), spec[name])
        elif isinstance(spec.get(item), bool):
            values[item] = True
        elif positional:
            values[positional[0]] = _convert(positional[0], item, spec[positional[0]])
        else:
            raise ValueError(f"unknown config argument {item!r}; {usage}")
    parsed = ml_collections.ConfigDict(values)
    parsed.lock()
    return parsed


def runlocal(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks ``config`` in place to a dry run and returns it (big_vision's ``runlocal``).

    The student and the teacher become ``resnet_tiny``; the run reads the first 16 train and 8
    test examples of its dataset, with batch 8, for one epoch of two steps (``max_steps = 2``),
    checkpointing and logging every epoch / step; ``_runlocal`` is appended to its name (and so to
    the default workdir). Everything else — dataset, method, losses, schedule fields — is kept, so
    the dry run exercises the config's own wiring. A suite config (``configs/digits/demo.py``)
    shrinks each of its runs. A distillation dry run still needs a teacher checkpoint of the tiny
    teacher: the dry run of any vanilla config of the same dataset writes one.

    >>> c = runlocal(cifar_config("sld", "resnet32x4", "resnet8x4"))
    >>> (c.model, c.teacher.arch, c.batch_size, c.max_steps, c.num_epochs, c.name)
    ('resnet_tiny', 'resnet_tiny', 8, 2, 1, 'cifar100/sld/resnet32x4_resnet8x4_runlocal')
    """
    config.name = f"{config.name}_runlocal"
    if "suite" in config:
        for name in config.suite:
            runlocal(config.runs[name])
        return config
    config.model = RUNLOCAL_MODEL
    config.teacher.arch = RUNLOCAL_MODEL
    config.dataset.limit_train = RUNLOCAL_TRAIN_EXAMPLES
    config.dataset.limit_test = RUNLOCAL_TEST_EXAMPLES
    config.batch_size = RUNLOCAL_BATCH_SIZE
    config.eval_batch_size = RUNLOCAL_BATCH_SIZE
    config.num_epochs = 1
    config.max_steps = RUNLOCAL_TRAIN_EXAMPLES // RUNLOCAL_BATCH_SIZE
    config.checkpoint_every_epochs = 1
    config.log_every_steps = 1
    return config


def finish(
    config: ml_collections.ConfigDict, arg: str | ml_collections.ConfigDict | None = None
) -> ml_collections.ConfigDict:
    """A config file's last step: applies its argument (see the module docstring) to ``config``.

    Args:
      config: the built config (a run or a suite).
      arg: the ``get_config`` argument as given (None, "" or "runlocal"), or the result of
        :func:`parse_arg` for a config file that takes fields of its own.

    Returns:
      ``config``, shrunk by :func:`runlocal` when the argument says ``runlocal``.

    >>> finish(cifar_config("kd", "resnet56", "resnet20"), "runlocal").model
    'resnet_tiny'
    >>> finish(cifar_config("kd", "resnet56", "resnet20")).model
    'resnet20'
    """
    args = parse_arg(arg, runlocal=False) if arg is None or isinstance(arg, str) else arg
    return runlocal(config) if args.runlocal else config
