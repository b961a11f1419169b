"""The fault hooks of real kills and the chaos soak's comparison (``python -m sld_jax.bench chaos``).

The soak itself trains the demo many times (minutes; its figures are in docs/reliability.md);
here: that ``SLD_JAX_KILL_AT`` really SIGKILLs a process at the named point and step, and
that the soak's comparison of two workdirs finds each kind of difference it claims to find.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

from sld_jax.bench import chaos
from sld_jax.train import kill_points
from sld_jax.train import workdir as workdir_lib


@pytest.mark.parametrize(("wanted", "killed"), [("best_saved@3", True), ("best_saved@4", False), ("", False)])
def test_the_environment_hook_sigkills_at_the_named_point_and_step(wanted, killed):
    code = "from sld_jax.train import kill_points; kill_points.reached('best_saved', 3); print('alive')"
    env = {**os.environ, kill_points.ENV: wanted}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == (-signal.SIGKILL if killed else 0), proc.stderr
    assert ("alive" in proc.stdout) is not killed


def _suite_workdir(root, *, best=8, metrics="a", table="| x | 1 |"):
    """A finished two-run suite workdir as the soak reads it."""
    for name in ("teacher", "kd"):
        run = root / name
        (run / "best" / str(best)).mkdir(parents=True)
        (run / workdir_lib.CONFIG_FILE).write_text("{}")
        (run / workdir_lib.METRICS_FILE).write_text(metrics)
        (run / workdir_lib.FINISHED_FILE).write_text(
            json.dumps({"step": 16, "best_step": best, "teacher": None})
        )
    (root / "summary.md").write_text(f"# s\n\n| run |\n{table}\n\nWall time 1.0 min\n")
    return str(root)


def test_the_soak_comparison_names_every_kind_of_difference(tmp_path):
    reference = _suite_workdir(tmp_path / "ref")
    assert chaos.run_dirs(reference) == ["kd", "teacher"]
    same = _suite_workdir(tmp_path / "same")
    with open(os.path.join(same, "summary.md"), "a") as f:
        f.write("Wall time 9.9 min\n")  # only the table counts
    assert chaos.compare(reference, same) == []
    assert chaos.compare(reference, _suite_workdir(tmp_path / "t", table="| x | 2 |")) == [
        "the summary tables differ"
    ]
    problems = chaos.compare(reference, _suite_workdir(tmp_path / "b", best=16, metrics="b"))
    assert "kd: best/ holds steps [16] vs [8]" in problems and "teacher: metrics.jsonl differs" in problems
    assert any(p.startswith("kd: finished.json") for p in problems)
    os.remove(tmp_path / "b" / "kd" / workdir_lib.FINISHED_FILE)
    assert "kd: finished.json None vs" in " ".join(chaos.compare(reference, str(tmp_path / "b")))


def test_the_soak_refuses_impossible_settings():
    with pytest.raises(SystemExit):
        chaos.parse_args(["--kills", "-1"])
    with pytest.raises(SystemExit):
        chaos.parse_args(["--min-delay", "5", "--max-delay", "1"])
    assert chaos.parse_args(["--", "--config.runs.kd.num_epochs=2"]).overrides == [
        "--config.runs.kd.num_epochs=2"
    ]
