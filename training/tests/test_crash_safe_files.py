"""The evaluation cache and the metrics log survive a kill at any moment (SIGKILL: no cleanup runs), and a
damaged cache entry is recomputed instead of failing every later evaluation."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from reddino_train.eval.cache import cached_array, cached_result, digest
from reddino_train.train.metrics import COLUMNS, MetricsCSV

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL")


def test_truncated_feature_cache_entry_is_recomputed(tmp_path):
    """What a kill during the old ``np.save`` left: every later eval with that cache failed until deleted."""
    X = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / f"features-{digest('k')}.npy"
    np.save(path, X)
    path.write_bytes(path.read_bytes()[:100])
    np.testing.assert_array_equal(cached_array(tmp_path, "k", lambda: X), X)
    np.testing.assert_array_equal(np.load(path), X)  # repaired
    assert cached_array(tmp_path, "k", lambda: pytest.fail("recomputed a good entry")).shape == (3, 4)


def test_damaged_result_cache_entry_is_recomputed(tmp_path):
    res = {"folds": [{"acc": 0.5}], "pred": np.array([1, 0])}
    (tmp_path / f"result-{digest('r')}.npz").write_bytes(b"PK\x03\x04 half a zip")
    got = cached_result(tmp_path, "r", lambda: res)
    assert got["folds"] == res["folds"]
    assert cached_result(tmp_path, "r", lambda: pytest.fail("recomputed"))["folds"] == res["folds"]


def test_a_kill_while_the_cache_is_written_leaves_no_entry(tmp_path, run_killed):
    code = """
        import numpy as np
        from reddino_train.eval import cache
        real = np.save
        def save_then_die(f, a):
            real(f, a[: len(a) // 2])
            die()
        cache.np.save = save_then_die
        cache.cached_array(folder, "k", lambda: np.ones((1000, 64), np.float32))
    """
    assert run_killed(code, folder=tmp_path) == -9
    assert not (tmp_path / f"features-{digest('k')}.npy").exists()
    np.testing.assert_array_equal(cached_array(tmp_path, "k", lambda: np.ones((1000, 64), np.float32)),
                                  np.ones((1000, 64), np.float32))


def _metrics(path, steps):
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows({"step": s, "loss": 1.0 / s} for s in steps)


def _steps(path):
    with path.open(newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def test_a_kill_while_resume_rewrites_the_metrics_keeps_every_row(tmp_path, run_killed):
    """Resume rewrote metrics.csv in place: a kill in that window kept 0-990 of 2,900 rows."""
    path = tmp_path / "metrics.csv"
    _metrics(path, range(1, 2901))
    code = """
        import csv
        from reddino_train.train.metrics import MetricsCSV
        real = csv.DictWriter.writerows
        def half_then_die(self, rows):
            real(self, rows[: len(rows) // 3])
            die()
        csv.DictWriter.writerows = half_then_die
        MetricsCSV(path, truncate_after=2500)
    """
    assert run_killed(code, path=path) == -9
    assert _steps(path) == list(range(1, 2901))
    log = MetricsCSV(path, truncate_after=2500)  # the resume that follows
    log.write({"step": 2501, "loss": 0.1})
    log.close()
    assert _steps(path) == list(range(1, 2502))
