"""The whole chain on tiny files in each real dataset's on-disk format, through the CLI: the real
loaders, both batch paths (in-memory tensors and image-folder DataLoader), both probe protocols,
and transfer between datasets."""

from cli_runner import cli, ledger
from fake_datasets import write_fake_cifar, write_fake_imagenet, write_fake_stl10
from inprocess_cli import invoke

from hardneg_bench.data import imagenet
from hardneg_bench.data.imagenet100 import class_list

SMALL = ["--backbone", "tiny", "--epochs", "1", "--batch-size", "16", "--set", "probe.epochs=2", "--set", "random_init_baseline=false", "--no-progress"]


def evaluations(runs) -> dict[tuple[str, str], float]:
    return {(r["stage"], r["eval_dataset"]): r["metrics"]["test_accuracy"] for r in ledger(runs) if r["stage"] != "pretrain"}


def test_cifar100_transfers_to_cifar10_with_the_paper_probe(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    write_fake_cifar(data, 10, n_train=40, n_test=20)
    write_fake_cifar(data, 100, n_train=40, n_test=20)
    result = cli("run", "-m", "simclr", "-d", "cifar100", *SMALL, "--set", "probe.protocol=paper", "--data-root", str(data), runs=runs)
    assert result.returncode == 0, result.stderr
    found = evaluations(runs)
    assert set(found) == {("probe", "cifar100"), ("knn", "cifar100"), ("transfer", "cifar10")}
    assert all(0 <= v <= 100 for v in found.values())
    probe = next(r for r in ledger(runs) if r["stage"] == "probe")
    assert probe["protocol"] == "paper" and probe["config"]["probe"]["augment"]["crop_scale"] == [0.08, 1.0]


def test_stl10_pretrains_on_train_and_unlabeled(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    write_fake_stl10(data, n_train=20, n_test=10, n_unlabeled=30)
    write_fake_cifar(data, 10, n_train=20, n_test=10)
    result = cli("run", "-m", "simclr", "-d", "stl10", *SMALL, "--data-root", str(data), runs=runs)
    assert result.returncode == 0, result.stderr
    pretrain = next(r for r in ledger(runs) if r["stage"] == "pretrain")
    assert pretrain["config"]["pretrain"]["augment"]["crop_size"] == 96
    header, epoch = (runs / "pretrain" / pretrain["key"] / "metrics.csv").read_text().splitlines()
    # 50 pretraining images (20 train + 30 unlabeled) in batches of 16: 3 steps, not 20 // 16 = 1
    assert dict(zip(header.split(","), epoch.split(",")))["steps"] == "3"
    assert set(evaluations(runs)) == {("probe", "stl10"), ("knn", "stl10"), ("transfer", "cifar10")}


def test_imagenet100_from_class_folders(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    write_fake_imagenet(data, list(class_list()), n_per_class=1)
    sizes = ["--set", "pretrain.augment.crop_size=32", "--set", "probe.image_size=32", "--workers", "1"]
    result = cli("run", "-m", "simclr", "-d", "imagenet100", *SMALL, *sizes, "--data-root", str(data), runs=runs)
    assert result.returncode == 0, result.stderr
    assert set(evaluations(runs)) == {("probe", "imagenet100"), ("knn", "imagenet100")}


def test_imagenet_from_class_folders(tmp_path, monkeypatch):
    """ImageNet-1K through the whole chain, on a 4-class stand-in (the class count check patched
    to 4; the probe keeps its 1000 outputs); `list datasets` shows it with its ILSVRC-2012 sizes."""
    data, runs = tmp_path / "data", tmp_path / "runs"
    monkeypatch.setattr(imagenet, "NUM_CLASSES", 4)
    write_fake_imagenet(data, ["n04000000", "n01000000", "n03000000", "n02000000"], n_per_class=5)
    sizes = ["--set", "pretrain.augment.crop_size=32", "--set", "probe.image_size=32", "--workers", "0"]
    result = invoke(monkeypatch, "run", "-m", "simclr", "-d", "imagenet", *SMALL, *sizes, "--device", "cpu", "--data-root", str(data), runs=runs)
    assert result.exit_code == 0, result.stderr
    assert set(evaluations(runs)) == {("probe", "imagenet"), ("knn", "imagenet")}
    listed = invoke(monkeypatch, "list", "datasets", runs=runs).stdout
    assert "imagenet " in listed and "1,281,167 / 1,281,167 / 50,000" in listed


def test_missing_transfer_dataset_fails_before_pretraining(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    write_fake_cifar(data, 100, n_train=40, n_test=20)  # cifar10, its transfer target, is absent
    result = cli("run", "-m", "simclr", "-d", "cifar100", *SMALL, "--no-download", "--data-root", str(data), runs=runs)
    assert result.returncode == 2 and "cifar10 not found" in result.stderr
    assert not runs.exists() or not any(runs.rglob("*.pt"))
