"""`regbench export`: a long CSV pandas reads, TensorBoard event files read back with TensorBoard's own
EventAccumulator (scalars, per-step losses, HParams sessions grouped by seed group), and MLflow runs read
back with MLflow's client from a local SQLite store. The TensorBoard and MLflow tests skip without the
optional packages (`pip install 'regbench[tensorboard]'` / `'regbench[mlflow]'`; the dev extra has both)."""

from __future__ import annotations

import pytest
from conftest import tiny
from typer.testing import CliRunner

import regbench
from regbench.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """tiny × seeds 1, 2 and tiny_l2 × seed 1 (steps logged every 3 steps), 2 epochs each."""
    root = tmp_path_factory.mktemp("export") / "runs"
    for seed in (1, 2):
        regbench.train(tiny(seed=seed, train__log_every=3), root, quiet=True)
    regbench.train(tiny(name="tiny_l2", seed=1, regularizer__l2_decay=0.01, train__log_every=3), root, quiet=True)
    return root


def test_csv_is_one_row_per_run_and_epoch_with_the_differing_keys(runs, tmp_path):
    pd = pytest.importorskip("pandas")
    out = tmp_path / "runs.csv"
    res = runner.invoke(app, ["export", "csv", str(runs), "-o", str(out)])
    assert res.exit_code == 0 and "Wrote 6 rows (3 runs)" in res.stdout, res.output
    df = pd.read_csv(out)
    assert len(df) == 6 and sorted(df.epoch.unique()) == [1, 2]
    assert "regularizer.l2_decay" in df.columns and "optimizer.lr" not in df.columns  # only what differs
    assert df[df.name == "tiny"].group.unique().tolist() == ["tiny"]  # a seed group's label; a lone run's own
    assert sorted(df[df.group == "tiny"].seed.unique()) == [1, 2]
    run = regbench.load_run(df.path[0])
    assert df[df.path == df.path[0]].val_acc.tolist() == pytest.approx([m["val_acc"] for m in run.metrics])
    # the README's one-liner for a single run
    one = pd.read_json(run.path / "metrics.jsonl", lines=True)
    assert one.train_loss.tolist() == pytest.approx(df[df.path == df.path[0]].train_loss.tolist())


def test_tensorboard_export_reads_back_with_event_accumulator(runs, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    res = runner.invoke(app, ["export", "tensorboard", str(runs), "-o", str(tmp_path / "tb")])
    assert res.exit_code == 0, res.output
    groups = {}
    for run in regbench.compare(runs).runs:
        folder = next((tmp_path / "tb").glob(f"*/{run.name}"))
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        assert {"train_loss", "val_acc", "lr", "step/loss"} <= set(acc.Tags()["scalars"])
        vals = acc.Scalars("val_acc")
        assert [e.step for e in vals] == [1, 2]
        assert [e.value for e in vals] == pytest.approx([m["val_acc"] for m in run.metrics], rel=1e-6)
        steps = [e.step for e in acc.Scalars("step/loss")]
        assert steps and steps[0] == 0 and all(s % 3 == 0 for s in steps)
        content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        groups[run.name] = (info.group_name, info.hparams["seed"].number_value)
    lone = next(n for n in groups if n.startswith("tiny_l2"))
    assert sorted(groups.values()) == [("tiny", 1.0), ("tiny", 2.0), (lone, 1.0)]  # a config's seeds: one trial


def test_mlflow_export_reads_back_with_the_client(runs, tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = runner.invoke(app, ["export", "mlflow", str(runs), "--tracking-uri", uri, "--experiment", "lab"])
    assert res.exit_code == 0 and "Logged 3 runs" in res.stdout, res.output
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lab")
    found = client.search_runs([exp.experiment_id])
    assert len(found) == 3 and exp.artifact_location.startswith((tmp_path / "mlartifacts").as_uri())
    for mr in found:
        run = regbench.load_run(mr.data.tags["regbench.path"])
        assert mr.info.run_name == run.name and mr.info.status == "FINISHED"
        assert mr.data.tags["regbench.group"] in (run.config["name"], run.name)  # seed group, or the lone run
        assert mr.data.tags["regbench.status"] == "completed" and mr.data.tags["regbench.seed"] == str(
            run.config["seed"]
        )
        assert mr.data.params["optimizer.lr"] == str(run.config["optimizer"]["lr"])
        assert mr.data.params["model.layers.0.chn"] == "4"  # nested layer parameters are params too
        hist = client.get_metric_history(mr.info.run_id, "val_acc")
        assert [(m.step, m.value) for m in sorted(hist, key=lambda m: m.step)] == [
            (m["epoch"], pytest.approx(m["val_acc"])) for m in run.metrics
        ]
        files = {a.path for a in client.list_artifacts(mr.info.run_id)}
        assert {"config.yaml", "metrics.jsonl", "summary.json", "model.pt", "curves.png"} <= files
        assert "checkpoint.pt" not in files
    again = runner.invoke(app, ["export", "mlflow", str(runs), "--tracking-uri", uri, "--experiment", "lab"])
    assert again.exit_code == 0 and "Logged 0 runs" in again.stdout and again.stderr.count("skipped:") == 3


def test_missing_optional_package_is_one_line(runs, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tb(name, *a, **k):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tb)
    monkeypatch.delitem(__import__("sys").modules, "tensorboard", raising=False)
    res = runner.invoke(app, ["export", "tensorboard", str(runs), "-o", str(tmp_path / "tb")])
    assert res.exit_code == 2
    assert "error: export tensorboard needs the tensorboard package: pip install 'regbench[tensorboard]'" in res.output
