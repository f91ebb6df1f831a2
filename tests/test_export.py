"""`hardneg-bench export`: a finished pretraining's encoder as a torchvision ResNet state dict.

The pretrainings here are not trained (that would take minutes for a ResNet on a CPU): the
pipeline's own stage machinery (Pipeline._stage: config.yaml, encoder.pt, result.json, ledger line)
records an encoder built as a pretraining builds it, its BatchNorm parameters and running
statistics drawn at random so that evaluation mode differs from a fresh network's."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
import torchvision

from hardneg_bench.config import config_key
from hardneg_bench.data.normalization import NORMALIZATIONS
from hardneg_bench.engine.pretrain import ENCODER, encoder_record, load_encoder
from hardneg_bench.engine.runtime import Runtime
from hardneg_bench.engine.trainer import encoder_spec, head_spec
from hardneg_bench.models import build_encoder, projection_head
from hardneg_bench.pipeline import Pipeline, environment, pretrain_stage, run_dataset
from hardneg_bench.recipes import cli_flags, resolve_config
from hardneg_bench.store import RunStore, atomic_torch_save

from inprocess_cli import invoke

CPU = Runtime(torch.device("cpu"), num_workers=0, show_progress=False)


def finished_pretraining(runs, cfg) -> dict:
    """The ledger record of a finished pretraining of ``cfg`` whose encoder.pt holds an encoder
    built as pretraining builds it, with random BatchNorm affine parameters and statistics."""
    spec = run_dataset(cfg, cfg.dataset)
    config, label = pretrain_stage(cfg)

    def compute(run_dir):
        torch.manual_seed(cfg.seed)
        backbone = build_encoder(encoder_spec(cfg, spec))
        with torch.no_grad():
            for module in backbone.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.weight.uniform_(0.5, 1.5), module.bias.normal_(0, 0.1)
                    module.running_mean.normal_(0, 0.1), module.running_var.uniform_(0.5, 1.5)
                    module.num_batches_tracked.fill_(7)
        projector = projection_head(**head_spec(cfg, backbone.feature_dim))
        atomic_torch_save(encoder_record(cfg, spec, backbone, projector), run_dir / ENCODER)
        return {"epochs_trained": cfg.pretrain.epochs}

    return Pipeline(cfg, RunStore(runs), CPU, runs / "no-data")._stage("pretrain", config, label, compute)


def torchvision_resnet(backbone: str, stem: str) -> torch.nn.Module:
    """torchvision's model as the README says to build it for a state dict of ours."""
    m = getattr(torchvision.models, backbone)()
    m.fc = torch.nn.Identity()
    if stem == "cifar":
        m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = torch.nn.Identity()
    return m.eval()


def one_line_error(done, code: int = 2) -> str:
    assert done.exit_code == code, done.output
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


@pytest.mark.parametrize("backbone,stem,dim", [("resnet18", "cifar", 512), ("resnet50", "imagenet", 2048)])
def test_an_exported_resnet_loads_strictly_into_torchvision_and_gives_our_features(backbone, stem, dim, tmp_path, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "exported"
    cfg = resolve_config("simclr", "shapes", overrides=[f"model.backbone={backbone}", f"model.stem={stem}", "model.normalization=cifar10-kuangliu", "pretrain.epochs=3"])
    record = finished_pretraining(runs, cfg)
    done = invoke(monkeypatch, "export", "--key", record["key"][:7], "--out", str(out), runs=runs)
    assert done.exit_code == 0, done.output
    name = f"simclr-shapes-{backbone}-{record['key']}"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}{s}" for s in (".json", ".pth", ".safetensors"))
    assert all(str(out / f"{name}{s}") in done.stdout for s in (".json", ".pth", ".safetensors"))

    meta = json.loads((out / f"{name}.json").read_text())
    pth = torch.load(out / f"{name}.pth", weights_only=True)
    safe = safetensors.torch.load_file(out / f"{name}.safetensors")
    torchvision_keys = {k for k in getattr(torchvision.models, backbone)().state_dict() if not k.startswith("fc.")}
    assert set(pth) == set(safe) == torchvision_keys

    ours = load_encoder(runs / "pretrain" / record["key"] / ENCODER, torch.device("cpu"))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = ours(x)
        for state in (pth, safe):
            model = torchvision_resnet(backbone, stem)
            model.load_state_dict(state, strict=True)
            model.to(memory_format=torch.channels_last)  # as load_encoder lays ours out: the same kernels, so 1e-5 holds
            torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)
        scope = {"torch": torch, "torchvision": torchvision, "state_dict": safe}  # the JSON's own recipe
        exec(meta["load"], scope)
        torch.testing.assert_close(scope["m"].eval().to(memory_format=torch.channels_last)(x), expected, atol=1e-5, rtol=0)
    assert (meta["stem"] == "cifar") == ("m.maxpool = torch.nn.Identity()" in meta["load"]) == (stem == "cifar")

    trained = run_dataset(cfg, "shapes")
    assert (meta["input_mean"], meta["input_std"]) == (list(trained.mean), list(trained.std)) == tuple(map(list, NORMALIZATIONS["cifar10-kuangliu"]))
    assert meta["input_normalization"] == "cifar10-kuangliu" and meta["input_size"] == 32 and meta["feature_dim"] == dim == expected.shape[1]
    assert (meta["method"], meta["dataset"], meta["backbone"], meta["stage_key"]) == ("simclr", "shapes", backbone, record["key"])
    assert meta["config"] == json.loads(json.dumps(record["config"])) and meta["config"]["model"]["normalization"] == "cifar10-kuangliu"
    assert (meta["hardneg_bench_version"], meta["git_commit"]) == (environment()["hardneg_bench"], environment()["git_commit"])


def test_the_readme_export_command_finds_the_pretraining_run_made(tmp_path, monkeypatch):
    """The README's line, as written: the stage `run` with the same options made (a CIFAR-10
    ResNet-18 here recorded, not trained), exported into encoders/ under the working folder, with
    CIFAR-10's own statistics; other options name a pretraining that was not run."""
    runs = tmp_path / "runs"
    monkeypatch.chdir(tmp_path)
    cfg = resolve_config("simclr", "cifar10", flags=cli_flags(200, None, "resnet18", None))
    record = finished_pretraining(runs, cfg)
    done = invoke(monkeypatch, *"export --method simclr --dataset cifar10 --backbone resnet18 --epochs 200 --out encoders".split(), runs=runs)
    assert done.exit_code == 0, done.output
    meta = json.loads((tmp_path / "encoders" / f"simclr-cifar10-resnet18-{record['key']}.json").read_text())
    cifar10 = run_dataset(cfg, "cifar10")
    assert meta["stage_key"] == record["key"] == config_key(pretrain_stage(cfg)[0])
    assert (meta["input_mean"], meta["input_std"], meta["input_normalization"]) == (list(cifar10.mean), list(cifar10.std), "dataset")

    missing = invoke(monkeypatch, *"export --method simclr --dataset cifar10 --backbone resnet18 --epochs 100 --out elsewhere".split(), runs=runs)
    assert "has not been run" in one_line_error(missing) and not (tmp_path / "elsewhere").exists()


def test_existing_files_are_not_written_over_without_force(tmp_path, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "out"
    cfg = resolve_config("simclr", "shapes", overrides=["model.backbone=resnet18", "pretrain.epochs=1"])
    key = finished_pretraining(runs, cfg)["key"]
    args = ("export", "--key", key, "--out", str(out), "--name", "enc")
    assert invoke(monkeypatch, *args, runs=runs).exit_code == 0
    (out / "enc.json").write_text("mine\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = invoke(monkeypatch, *args, runs=runs)
    assert "enc.json" in one_line_error(again) and "--force" in again.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written, not even the other two
    forced = invoke(monkeypatch, *args, "--force", runs=runs)
    assert forced.exit_code == 0, forced.output
    assert json.loads((out / "enc.json").read_text())["stage_key"] == key
    assert sorted(p.name for p in out.iterdir()) == ["enc.json", "enc.pth", "enc.safetensors"]  # no temporary file left


def test_what_cannot_be_exported_is_one_line_and_exit_2(tmp_path, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "out"
    store = RunStore(runs)
    tiny = finished_pretraining(runs, resolve_config("simclr", "shapes", overrides=["model.backbone=tiny", "pretrain.epochs=1"]))["key"]
    wide = finished_pretraining(runs, resolve_config("simclr", "shapes", overrides=["model.backbone=resnet18", "model.width=2", "pretrain.epochs=1"]))["key"]
    cmc = finished_pretraining(runs, resolve_config("cmc", "shapes", overrides=["model.backbone=resnet18", "pretrain.epochs=1"]))["key"]
    unfinished_cfg = resolve_config("simclr", "shapes", overrides=["model.backbone=resnet18", "pretrain.epochs=2"])
    unfinished = config_key(pretrain_stage(unfinished_cfg)[0])
    store.write_config("pretrain", unfinished, pretrain_stage(unfinished_cfg)[0])  # started, killed before result.json
    probe = {"stage": "probe", "key": "ab12cd34ef56ab78", "parent": tiny, "method": "simclr", "dataset": "shapes", "metrics": {}}
    store.finish(probe)
    cases = {
        ("--key", "ffffffff"): "no finished stage has the key 'ffffffff'",
        ("--key", unfinished[:8]): f"the pretraining {unfinished} has not finished",
        ("--method", "simclr", "--dataset", "shapes", "--backbone", "resnet18", "--epochs", "2"): f"(key {unfinished}) has not finished",
        ("--key", tiny): "the tiny backbone is not a torchvision model",
        ("--key", wide): "width 2 has other layer widths",
        ("--key", cmc): "CMC's encoder is two resnet18 streams",
        ("--key", probe["key"]): f"is a probe stage; export takes a pretraining stage's key (this one evaluates the encoder {tiny})",
        ("--key", tiny, "--method", "simclr"): "either --key or --method/--dataset",
        ("--method", "simclr"): "say which pretraining to export",
        ("--key", wide, "--name", "a/b"): "is not a file name",
    }
    for args, fragment in cases.items():
        done = invoke(monkeypatch, "export", *args, "--out", str(out), runs=runs)
        assert fragment in one_line_error(done), (args, done.stderr)
    assert not out.exists()
