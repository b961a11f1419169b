"""The suite runner: runs in order with their seeds, reuse of finished runs, grids, the table.

``loop.run`` and the checkpoint reader are replaced by fakes (no training): what is checked is the
suite's wiring (run directories, teachers, seeds, reuse) and the table it writes.
"""

import importlib.util
import os
import pathlib

import pytest

from sld_jax.errors import ConfigError
from sld_jax.train import checkpoint as ckpt_lib
from sld_jax.train import loop, saved_runs, seeds, suite, validation
from sld_jax.train import workdir as workdir_lib

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"
ROW = "resnet32x4_resnet8x4"


def load(rel, arg=None):
    path = CONFIG_DIR / rel
    spec = importlib.util.spec_from_file_location(f"cfg_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def history(top1s, num_epochs):
    """A history of two records, the best (epoch 1) and the last (epoch ``num_epochs``, at least 2)."""
    best, last = top1s
    return [{"epoch": 1, "test_top1": best}, {"epoch": max(2, num_epochs), "test_top1": last}]


def seed_results(config, base=0.90, step=0.02):
    """Per-seed results of a finished run: seed k has best ``base + k * step`` and last 1 % less."""
    out = []
    for k in range(config.get("num_seeds", 1)):
        h = history((base + k * step, base + k * step - 0.01), config.num_epochs)
        out.append({"seed": config.seed + k, "history": h, "best": h[0], "last": h[-1]})
    return out


class FakeLoop:
    """Stands in for ``loop.run``: records each call and returns per-seed results (new form)."""

    def __init__(self, *, old_form=False):
        self.calls = []
        self.old_form = old_form

    def __call__(self, config, workdir):
        validation.validate(config)  # what loop.run checks first
        self.calls.append((config, workdir))
        per_seed = seed_results(config)
        result = {"history": per_seed[0]["history"], "best": per_seed[0]["best"], "last": per_seed[0]["last"]}
        if not self.old_form:
            result.update(seeds=per_seed, summary=seeds.summary(per_seed))
        return {**result, "preempted": False, "workdir": workdir}


@pytest.fixture
def fake_loop(monkeypatch):
    fake = FakeLoop()
    monkeypatch.setattr(loop, "run", fake)
    return fake


@pytest.fixture
def saved(monkeypatch):
    """Fake checkpoint metadata by run directory (no entry: no checkpoint)."""
    metas = {}

    def load_run_variables(workdir, *, which="best", fallback=True):
        if workdir not in metas:
            raise ckpt_lib.CheckpointError(f"no checkpoint in {workdir}")
        return {}, metas[workdir]

    monkeypatch.setattr(saved_runs, "load_run_variables", load_run_variables)
    return metas


def mark_finished(run_dir, run_config):
    """What a finished run leaves besides its checkpoint: config.json and finished.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / workdir_lib.CONFIG_FILE).write_text(run_config.to_json())
    workdir_lib.mark_finished(str(run_dir), step=1, best_step=1, teacher=None)


def table_line(text, name):
    return next(line for line in text.splitlines() if line.startswith(f"| {name} |"))


def test_demo_trains_teacher_once_then_students_with_three_seeds(fake_loop, saved, tmp_path):
    config = load("digits/demo.py", "runlocal")
    results = suite.run_suite(config, str(tmp_path))
    names = [os.path.relpath(w, tmp_path) for _, w in fake_loop.calls]
    assert names == ["teacher", "vanilla", "kd", "sld"]
    assert [c.get("num_seeds", 1) for c, _ in fake_loop.calls] == [1, 3, 3, 3]
    teachers = {
        os.path.basename(w): c.teacher.checkpoint for c, w in fake_loop.calls if c.method != "vanilla"
    }
    assert teachers == {"kd": str(tmp_path / "teacher"), "sld": str(tmp_path / "teacher")}
    assert [len(results[n]) for n in config.suite] == [1, 3, 3, 3]
    text = (tmp_path / "summary.md").read_text()
    assert text.splitlines()[2].endswith("| paper (%) | best vs vanilla (pp) | best vs kd (pp) |")
    # The teacher is compared with nothing; the baselines' own cells are empty.
    assert (
        table_line(text, "teacher")
        == "| teacher | resnet_tiny | vanilla | 1 | 90.00 | 89.00 | 90.00–90.00 |  |  |  |"
    )
    # Seeds 90 / 92 / 94 %: mean 92, sample std 2; last 1 % below; no paper number: empty cell.
    # Every student's seeds are equal here: difference 0, never "better".
    same = "+0.00 [+0.00, +0.00] p=1 not resolved (no difference)"
    assert (
        table_line(text, "sld")
        == f"| sld | resnet_tiny | sld | 3 | 92.00 ± 2.00 | 91.00 ± 2.00 | 90.00–94.00 |  | {same} | {same} |"
    )
    assert table_line(text, "kd").endswith(f"|  | {same} |  |")  # vanilla vs kd is kd vs vanilla
    assert "**" not in text  # no grid rows
    for name in ("comparisons.json", "comparison.png"):
        assert (tmp_path / name).is_file(), name


def test_a_result_without_seeds_reads_as_one_seed(monkeypatch, saved, tmp_path):
    fake = FakeLoop(old_form=True)
    monkeypatch.setattr(loop, "run", fake)
    results = suite.run_suite(load("digits/demo.py", "runlocal"), str(tmp_path))
    assert {n: len(r) for n, r in results.items()} == {"teacher": 1, "vanilla": 1, "kd": 1, "sld": 1}
    assert "| kd | resnet_tiny | kd | 1 | 90.00 | 89.00 |" in (tmp_path / "summary.md").read_text()


def test_finished_runs_are_reused_and_unfinished_ones_resume(fake_loop, saved, tmp_path):
    config = load("digits/demo.py", "runlocal")
    runs = config.runs
    # The teacher finished before the seed axis (old metadata: one history); vanilla finished all
    # three seeds (0.50, 0.60, 0.70 best); kd stopped inside its epoch; sld has no checkpoint.
    teacher_history = history((0.8, 0.8), runs.teacher.num_epochs)
    saved[str(tmp_path / "teacher")] = {"history": teacher_history, "best": teacher_history[0]}
    done = seed_results(runs.vanilla, base=0.5, step=0.1)
    saved[str(tmp_path / "vanilla")] = {
        "seeds": [r["seed"] for r in done],
        "histories": [r["history"] for r in done],
        "bests": [r["best"] for r in done],
    }
    saved[str(tmp_path / "kd")] = {"seeds": [0, 1, 2], "histories": [[], [], []], "bests": [None] * 3}
    # Finished = its last outputs written (finished.json) with the suite's config of the run.
    for name in ("teacher", "vanilla", "kd"):
        mark_finished(tmp_path / name, suite.run_config(config, name, str(tmp_path)))
    suite.run_suite(config, str(tmp_path))
    assert [os.path.basename(w) for _, w in fake_loop.calls] == ["kd", "sld"]
    text = (tmp_path / "summary.md").read_text()
    assert table_line(text, "teacher").startswith("| teacher | resnet_tiny | vanilla | 1 | 80.00 | 80.00 |")
    assert table_line(text, "vanilla").startswith("| vanilla | resnet_tiny | vanilla | 3 | 60.00 ± 10.00 |")
    # A checkpoint of fewer seeds than the run asks for is not finished.
    assert suite.finished(str(tmp_path / "teacher"), runs.kd) is None


def test_a_finished_run_is_reused_only_when_it_is_the_same_run(fake_loop, saved, tmp_path):
    """A run is finished once its outputs are written (finished.json), and then reused only with
    the config it was trained with: a changed field is refused, naming it."""
    config = load("digits/demo.py", "runlocal")
    teacher_history = history((0.8, 0.8), config.runs.teacher.num_epochs)
    saved[str(tmp_path / "teacher")] = {"history": teacher_history, "best": teacher_history[0]}
    # Every epoch checkpointed but killed before its summary (no finished.json): trained again.
    suite.run_suite(config, str(tmp_path))
    assert [os.path.basename(w) for _, w in fake_loop.calls] == ["teacher", "vanilla", "kd", "sld"]
    # Finished with the suite's config: reused; finished with another learning rate: refused.
    mark_finished(tmp_path / "teacher", suite.run_config(config, "teacher", str(tmp_path)))
    fake_loop.calls.clear()
    suite.run_suite(config, str(tmp_path))
    assert [os.path.basename(w) for _, w in fake_loop.calls] == ["vanilla", "kd", "sld"]
    config.runs.teacher.optim.lr = 0.5
    with pytest.raises(workdir_lib.RunMismatchError, match=r"another config .*optim\.lr.* delete"):
        suite.run_suite(config, str(tmp_path))


def test_grid_expands_rows_by_methods_with_the_paper_beside(fake_loop, saved, tmp_path):
    config = load("cifar100/tables/resnet32x4_resnet8x4.py", "runlocal")
    config.teacher_checkpoint = "workdirs/tiny_teacher"
    methods = ("kd", "dkd", "dkd+sld", "mlkd", "mlkd+sld", "sld")
    assert list(config.suite) == [f"{ROW}/{m}" for m in methods]
    suite.run_suite(config, str(tmp_path))
    assert [(c.method, os.path.relpath(w, tmp_path)) for c, w in fake_loop.calls] == [
        (m, f"{ROW}/{m}") for m in methods
    ]
    assert {c.teacher.checkpoint for c, _ in fake_loop.calls} == {"workdirs/tiny_teacher"}
    assert {c.num_seeds for c, _ in fake_loop.calls} == {3}
    text = (tmp_path / "summary.md").read_text()
    lines = text.splitlines()
    group = lines.index(f"| **{ROW}** |" + " |" * 8)  # 8 columns and "best vs kd" (the default)
    assert lines[group + 1].startswith(f"| {ROW}/kd |")
    assert table_line(text, f"{ROW}/kd").endswith("| 90.00–94.00 |  |  |")  # KD: no reported number
    assert table_line(text, f"{ROW}/dkd+sld").endswith(
        "| 92.00 ± 2.00 | 91.00 ± 2.00 | 90.00–94.00 | 77.74 | +0.00 [+0.00, +0.00] p=1 not resolved (no difference) |"
    )
    assert "| 77.69 | +0.00" in table_line(text, f"{ROW}/sld")


def test_full_table_config_keeps_each_methods_reference_config():
    table = load("cifar100/tables/resnet32x4_resnet8x4.py")
    assert table.runs[f"{ROW}/sld"].teacher.checkpoint == "teachers/cifar100/resnet32x4"
    for method in ("dkd+sld", "mlkd"):
        single = load(f"cifar100/{method.replace('+', '_')}/{ROW}.py")
        run = table.runs[f"{ROW}/{method}"]
        assert run.to_dict() | {"num_seeds": 1} == single.to_dict()
    assert load("cifar100/tables/resnet32x4_resnet8x4.py", "num_seeds=5").runs[f"{ROW}/kd"].num_seeds == 5


def test_suite_config_errors_say_what_to_fix():
    config = load("digits/demo.py", "runlocal")
    config.runs.teacher.num_seeds = 2
    with pytest.raises(ConfigError, match=r"teacher run 'teacher' must train one seed.*num_seeds=1"):
        suite.check(config)
    config = load("digits/demo.py", "runlocal")
    config.paper["kdd"] = 70.0
    with pytest.raises(ConfigError, match=r"paper names runs \['kdd'\]"):
        suite.check(config)


def test_every_run_is_validated_before_the_first_trains(fake_loop, tmp_path):
    """A bad value in the last run of a suite is one error naming the run and its override, before
    anything trains or any directory is created."""
    config = load("digits/demo.py", "runlocal")
    config.runs.sld.dataset.name = "bogus"
    with pytest.raises(
        ConfigError, match=r"run 'sld' of the suite: unknown dataset 'bogus'.*runs\.sld\.dataset"
    ):
        suite.run_suite(config, str(tmp_path / "suite"))
    config = load("digits/demo.py", "runlocal")
    config.runs.kd.batch_size = 100_000
    with pytest.raises(
        ConfigError, match=r"run 'kd'.*larger than the training set.*--config\.runs\.kd\.batch_size="
    ):
        suite.run_suite(config, str(tmp_path / "suite"))
    assert fake_loop.calls == [] and not (tmp_path / "suite").exists()
