"""Command-line entry points: ``sld-train``, ``sld-eval`` and ``sld-import-teacher``.

Thin wrappers: flags -> config -> :mod:`sld_jax.train.loop`. JAX is configured here (multi-host
initialisation, logging), never at import time of the library.

A user error (:class:`sld_jax.errors.UserError`: config, data, teacher, checkpoint, workdir) is
printed as one line and exits with status 2; ``--verbose`` (or ``SLD_JAX_VERBOSE=1``) shows its
traceback and the orbax/absl log lines that are hidden by default. Any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import os
import sys
from pathlib import Path

from sld_jax.errors import ConfigError, UserError

DEFAULT_CONFIG = "configs/digits/demo.py"
VERBOSE_ENV = "SLD_JAX_VERBOSE"
USER_ERROR_EXIT = 2
INTERRUPTED_EXIT = 130  # the shell's status for a process ended by SIGINT


class ConfigFileNotFoundError(UserError, FileNotFoundError):
    """The ``--config`` file does not exist."""


def _verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def _user_error_message(e: BaseException) -> str | None:
    """The one-line message of a user error, or None for a bug (which keeps its traceback)."""
    lines = str(e).strip().splitlines() or [type(e).__name__]
    if isinstance(e, UserError):
        return lines[0]
    if type(e).__name__ == "DataLossError":  # tf.errors.DataLossError: a corrupt TFDS record
        return (
            f"a dataset record is corrupt ({lines[0][:200]}); delete the dataset's directory "
            "under data_dir (or $TFDS_DATA_DIR) and prepare it again."
        )
    return None


def _prog() -> str:
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "sld_jax"


def one_line_user_errors(main):
    """Wraps a ``main(argv)``: user errors -> one line on stderr and exit status 2; a Ctrl-C that
    reaches it (outside training, or a second one during it) -> one line and status 130.

    ``--verbose`` is removed from ``argv`` and sets ``SLD_JAX_VERBOSE=1``, under which user errors
    keep their traceback too.
    """

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        argv = list(sys.argv[1:] if argv is None else argv)
        if "--verbose" in argv:
            argv = [a for a in argv if a != "--verbose"]
            os.environ[VERBOSE_ENV] = "1"
        try:
            return main(argv)
        except KeyboardInterrupt:
            if _verbose():
                raise
            print(
                f"{_prog()}: interrupted; the checkpoints saved before it are kept: rerun the same "
                "command to resume (one Ctrl-C during training saves first).",
                file=sys.stderr,
            )
            return INTERRUPTED_EXIT
        except Exception as e:
            message = _user_error_message(e)
            if message is None or _verbose():
                raise
            print(f"{_prog()}: error: {message} (traceback: rerun with --verbose)", file=sys.stderr)
            return USER_ERROR_EXIT

    return wrapper


def _repo_configs_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "configs"


def resolve_config_path(path: str | None) -> str:
    """Finds a config file: as given, relative to the cwd, or relative to the repository root."""
    path = path or DEFAULT_CONFIG
    spec, colon, arg = path.partition(":")
    candidates = [Path(spec), _repo_configs_dir().parent / spec, _repo_configs_dir() / spec]
    for c in candidates:
        if c.is_file():
            return str(c) + colon + arg
    raise ConfigFileNotFoundError(
        f"config file {spec!r} not found (looked in the current directory and in "
        f"{_repo_configs_dir()}); list the configs with `ls {_repo_configs_dir()}`."
    )


def _config_key_error(argv: list[str], config) -> str | None:
    """A message naming the nearest valid key for a mistyped ``--config.a.b=v`` override."""
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        dotted = arg[len("--config.") :].split("=", 1)[0]
        node, parts = config, dotted.split(".")
        for i, part in enumerate(parts):
            keys = list(node.keys()) if hasattr(node, "keys") else []
            if part not in keys:
                near = difflib.get_close_matches(part, keys, n=1)
                prefix = ".".join(parts[:i])
                where = f"config.{prefix}" if prefix else "config"
                hint = f"; did you mean --config.{(prefix + '.') if prefix else ''}{near[0]}?" if near else ""
                return f"unknown config key {dotted!r}: {where} has no field {part!r}{hint}"
            node = node[part]
    return None


def _define_flags(fv) -> None:
    """The flags of ``sld-train`` and ``sld-eval`` besides ``--config`` (one parser for both)."""
    from absl import flags

    flags.DEFINE_string("workdir", None, "run directory (checkpoints, logs, summary)", flag_values=fv)
    flags.DEFINE_string("which", "best", "sld-eval: 'best' or 'last' checkpoint", flag_values=fv)
    flags.DEFINE_bool(
        "distributed", False, "call jax.distributed.initialize() (pods/clusters)", flag_values=fv
    )
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process)", flag_values=fv)
    flags.DEFINE_integer("num_processes", None, "number of processes (multi-process)", flag_values=fv)
    flags.DEFINE_integer("process_id", None, "this process's id (multi-process)", flag_values=fv)


def _parse_flags(argv: list[str]):
    """``argv`` (program name first) parsed by :func:`_define_flags`'s flags; a bad flag is a
    :class:`ConfigError`."""
    from absl import flags

    fv = flags.FlagValues()
    _define_flags(fv)
    try:
        fv(argv)
    except flags.Error as e:
        raise ConfigError(str(e).strip().splitlines()[0]) from None
    return fv


def _load_config(argv: list[str]):
    """Parses ``--config PATH`` and ``--config.x=y`` overrides with ml_collections' config_flags."""
    from absl import flags
    from ml_collections import config_flags

    fv = flags.FlagValues()
    config_path = None
    rest = [argv[0]]
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "--config" and i + 1 < len(argv):
            config_path = argv[i + 1]
            i += 2
            continue
        if a.startswith("--config="):
            config_path = a.split("=", 1)[1]
        else:
            rest.append(a)
        i += 1
    config_path = resolve_config_path(config_path)
    config_file = config_path.partition(":")[0]
    # config_flags loads every config file as the module "config_config", re-executing a loaded one
    # in place: a second file of a process (tests, notebooks) would keep the first's get_config.
    sys.modules.pop("config_config", None)
    try:
        # sys_argv=rest: config_flags looks for `--config.x=y` overrides in this argv (not
        # sys.argv, which still holds the `--config PATH` removed above: with it the file would
        # never be parsed and every override would be an unknown flag).
        config_flags.DEFINE_config_file(
            "config", config_path, flag_values=fv, lock_config=True, sys_argv=rest
        )
        _define_flags(fv)
        fv(rest)
    except SyntaxError as e:
        raise ConfigError(
            f"config file {config_file} does not parse ({e.msg}, line {e.lineno}); fix that line."
        ) from None
    except (flags.Error, AttributeError, KeyError) as e:
        # A mistyped override: name the nearest valid key, read from the config without overrides.
        plain = flags.FlagValues()
        try:
            config_flags.DEFINE_config_file(
                "config", config_path, flag_values=plain, lock_config=True, sys_argv=rest[:1]
            )
            config = plain["config"].value
        except AttributeError as bad:
            if "get_config" not in str(bad):
                raise
            raise ConfigError(
                f"config file {config_file} has no get_config(arg=None); define one that returns the "
                "config (as every file under configs/ does)."
            ) from None
        except flags.Error as bad:  # get_config itself failed (e.g. a bad path.py:ARG): its last line
            raise ConfigError(str(bad).strip().splitlines()[-1].split(": ", 1)[-1]) from None
        raise ConfigError(str(_config_key_error(rest, config) or e)) from e
    return fv


def _init_runtime(fv) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    _quiet_libraries()
    import jax

    from sld_jax import compile_cache

    compile_cache.configure()  # reruns, resumes and a suite's later runs load their programs
    if fv.distributed or fv.coordinator_address:
        kwargs = {}
        if fv.coordinator_address:
            kwargs = dict(
                coordinator_address=fv.coordinator_address,
                num_processes=fv.num_processes,
                process_id=fv.process_id,
            )
        jax.distributed.initialize(**kwargs)
        if jax.process_index() != 0:  # only process 0 reports progress; the others warn/err only
            logging.getLogger().setLevel(logging.WARNING)
    del jax


def _quiet_libraries() -> None:
    """orbax/absl/TF log lines (hundreds on a failed save) only with --verbose."""
    level = logging.WARNING if _verbose() else logging.CRITICAL
    # asyncio: orbax's write tasks of a failed save log "Task exception was never retrieved" (the
    # failure itself is the one-line error).
    for noisy in ("absl", "orbax", "tensorflow", "asyncio"):
        logging.getLogger(noisy).setLevel(level)
    logging.getLogger("jax._src").setLevel(logging.WARNING)
    if not _verbose():
        sys.unraisablehook = _drop_orbax_leftovers


def _drop_orbax_leftovers(unraisable) -> None:
    """Hides what orbax leaves behind after a corrupt checkpoint or a failed save (already reported
    as one line): its pending read coroutines, and its writer threads' callbacks into the closed
    event loop of the failed save."""
    if "_read_array_index" in repr(getattr(unraisable, "object", "")):
        return
    if isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value):
        return
    sys.__unraisablehook__(unraisable)


def _process_index() -> int:
    import jax

    return jax.process_index()


def _default_workdir(config) -> str:
    """``workdirs/<config.name>`` with characters other than letters, digits, ``._-`` replaced."""
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in str(config.name))
    return os.path.join("workdirs", safe)


@one_line_user_errors
def train_main(argv: list[str] | None = None) -> int:
    """``sld-train [--config PATH] [--config.key=value ...] [--workdir DIR]``.

    Without ``--config`` it runs the offline digits demo (``configs/digits/demo.py``).
    """
    argv = [sys.argv[0]] + list(sys.argv[1:] if argv is None else argv)
    fv = _load_config(argv)
    _init_runtime(fv)
    config = fv.config
    workdir = fv.workdir or _default_workdir(config)
    if "suite" in config:
        from sld_jax.train import suite

        suite.run_suite(config, workdir)
        return 0
    from sld_jax.train import loop

    result = loop.run(config, workdir)  # validates the config before anything is created
    if result["preempted"]:
        if _process_index() == 0:
            print(
                f"stopped by {result['stopped_by']} after saving step {int(result['state'].step[0])}; rerun the "
                f"same command to resume from {workdir}."
            )
        return 0
    if len(result["seeds"]) > 1 and result["summary"] and _process_index() == 0:
        from sld_jax.train.seeds import format_mean_std

        best, last = result["summary"]["best_top1"], result["summary"]["last_top1"]
        print(
            f"{config.name}, {best['n']} seeds: best test top-1 {format_mean_std(best['values'])}% "
            f"(min {100 * best['min']:.2f}, max {100 * best['max']:.2f}), last "
            f"{format_mean_std(last['values'])}%; summary in {os.path.join(result['workdir'], 'summary.md')}"
        )
    elif result["best"] is not None and _process_index() == 0:
        print(
            f"{config.name}: best test top-1 {100 * result['best']['test_top1']:.2f}% "
            f"(epoch {result['best']['epoch']}), last {100 * result['last']['test_top1']:.2f}%; "
            f"summary in {os.path.join(result['workdir'], 'summary.md')}"
        )
    return 0


@one_line_user_errors
def eval_main(argv: list[str] | None = None) -> int:
    """``sld-eval --workdir DIR [--which best|last]``: evaluates a saved run on its test split."""
    fv = _parse_flags([sys.argv[0]] + list(sys.argv[1:] if argv is None else argv))
    workdir, which = fv.workdir, fv.which
    import ml_collections

    from sld_jax.train import workdir as workdir_lib

    saved = (
        workdir_lib.read_config(
            workdir,
            fix="restore it, or rerun its sld-train command with --config.resume_policy=override (which rewrites it).",
        )
        if workdir
        else None
    )
    if saved is None:
        raise ConfigError(
            f"--workdir must name an sld-train run directory with a config.json (got {workdir!r})."
        )
    config = ml_collections.ConfigDict(saved)
    from sld_jax.train.evaluate import evaluate
    from sld_jax.train.validation import check_which

    check_which(which)
    logging.basicConfig(level=logging.INFO)
    _quiet_libraries()
    from sld_jax import compile_cache

    compile_cache.configure()
    result = evaluate(config, workdir, which=which)
    print(json.dumps(result))
    return 0


@one_line_user_errors
def import_teacher_main(argv: list[str] | None = None) -> int:
    """``sld-import-teacher --arch ARCH --checkpoint PATH --out DIR [--num-classes N] [--overwrite]``.

    See :mod:`sld_jax.models.torch_import`; a missing ``--checkpoint`` is reported before a
    missing torch installation.
    """
    from sld_jax.models import torch_import

    return torch_import.import_teacher(argv)


if __name__ == "__main__":
    sys.exit(train_main())
