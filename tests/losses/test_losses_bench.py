"""Smoke test of ``python -m sld_jax.bench loss`` on a tiny size (speed is measured, not tested)."""

from sld_jax.bench import loss


def test_loss_benchmark_prints_its_table(capsys):
    assert loss.main(["--sizes", "4x5", "--min-time", "0.01", "--repeats", "1", "--clock", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| sld_objective | 4 | 5 | off |" in out and "| sld_objective | 4 | 5 | on |" in out
    assert "machine:" in out and "load average" in out
