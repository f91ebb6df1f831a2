"""Each method recipe against its official code, value by value.

The tables below were written from reading the official repositories at the commits named (not
from experiments/methods/*.yaml): for each (method, dataset) whose recipe claims a source, every
key that source fixes, with its value there. A recipe may depart from its source only where
DEPARTURES lists the key with the recipe's value and the reason, which the recipe also states
beside the value ("departs: ..."). So a value inherited by accident (Ring's split BatchNorm from
MoCo-v2's ImageNet recipe, issue 13 item 12) fails here.
"""

import pytest

from hardneg_bench.config import to_dict
from hardneg_bench.recipes import experiments_dir, resolve_config

RING = "mhw32/contrastive-ring-public@fb3e1c2"
MOCO = "facebookresearch/moco@132aea9"
CMC = "HobbitLong/CMC@7b227be"
SYNCO = "giakoumoglou/synco@79a9c42"

# The Ring code's common recipe (configs under config/pretrain/, scripts/run.py, src/systems/systems.py,
# src/models/resnet2.py, src/datasets/datasets.py, config/transfer.json).
RING_CODE = {
    "model.backbone": ("resnet18", f"{RING} model_params.resnet_version (torchvision resnet18)"),
    "model.stem": ("imagenet", f"{RING} src/models/resnet2.py: 7x7 stem unless conv3x3, which no config sets"),
    "model.width": (1.0, f"{RING} torchvision resnet18"),
    "model.bn_splits": (1, f"{RING} scripts/run.py: one GPU (gpus=--gpu-device, dp backend); shuffle_bn only permutes the batch there"),
    "model.projector_layers": (2, f"{RING} src/models/resnet2.py CustomResNet: l1, relu, l2"),
    "model.projector_hidden_dim": (512, f"{RING} src/models/resnet2.py l1 = Linear(num_ftrs, num_ftrs), 512 for resnet18"),
    "model.projector_out_dim": (128, f"{RING} model_params.out_dim"),
    "model.projector_batchnorm": (False, f"{RING} src/models/resnet2.py: no BatchNorm in the head"),
    "pretrain.epochs": (200, f"{RING} num_epochs"),
    "pretrain.batch_size": (256, f"{RING} optim_params.batch_size"),
    "pretrain.optimizer.name": ("sgd", f"{RING} systems.py configure_optimizers: torch.optim.SGD"),
    "pretrain.optimizer.lr": (0.03, f"{RING} optim_params.learning_rate"),
    "pretrain.optimizer.momentum": (0.9, f"{RING} optim_params.momentum"),
    "pretrain.optimizer.weight_decay": (1e-4, f"{RING} optim_params.weight_decay"),
    "pretrain.optimizer.nesterov": (False, f"{RING} torch.optim.SGD default"),
    "pretrain.schedule.name": ("step", f"{RING} optim_params.scheduler MoCoLRScheduler (cosine off)"),
    "pretrain.schedule.milestones": ([136, 166], f"{RING} scripts/run.py: int(0.68 * 200), int(0.83 * 200)"),
    "pretrain.schedule.gamma": (0.1, f"{RING} src/utils/callbacks.py: lr *= 0.1 per milestone"),
    "pretrain.schedule.warmup_epochs": (0.0, f"{RING} no warm-up"),
    "pretrain.augment.crop_size": (224, f"{RING} load_default_transforms: RandomResizedCrop(224, ...)"),
    "pretrain.augment.crop_scale": ([0.2, 1.0], f"{RING} RandomResizedCrop scale=(0.2, 1.)"),
    "pretrain.augment.flip_p": (0.5, f"{RING} RandomHorizontalFlip()"),
    "pretrain.augment.jitter": ([0.4, 0.4, 0.4, 0.4], f"{RING} ColorJitter(0.4, 0.4, 0.4, 0.4)"),
    "pretrain.augment.jitter_p": (1.0, f"{RING} ColorJitter not inside RandomApply"),
    "pretrain.augment.grayscale_p": (0.2, f"{RING} RandomGrayscale(p=0.2)"),
    "pretrain.augment.blur_p": (0.0, f"{RING} no GaussianBlur in the default transforms"),
    "probe.protocol": ("paper", f"{RING} TransferSystem trains on the pretraining train transforms"),
    "probe.epochs": (100, f"{RING} config/transfer.json num_epochs"),
    "probe.batch_size": (256, f"{RING} config/transfer.json optim_params.batch_size"),
    "probe.optimizer.name": ("sgd", f"{RING} TransferSystem.configure_optimizers: SGD"),
    "probe.optimizer.lr": (0.01, f"{RING} config/transfer.json optim_params.learning_rate"),
    "probe.optimizer.momentum": (0.9, f"{RING} config/transfer.json optim_params.momentum"),
    "probe.optimizer.weight_decay": (1e-5, f"{RING} config/transfer.json optim_params.weight_decay"),
    "probe.schedule.name": ("constant", f"{RING} TransferSystem: no scheduler"),
    "probe.augment": (None, f"{RING} TransferSystem: the pretraining transforms"),
}
RING_CODE_STL10 = {"pretrain.split": ("train", f"{RING} src/datasets/stl10.py: split='train' (5k)")}
RING_RING = {
    "method_params.outer": (0.1, f"{RING} loss_params.thres_outer"),
    "method_params.inner": (0.1, f"{RING} loss_params.thres_inner"),
    "method_params.anneal_epochs": (0, f"{RING} every *_anneal flag false"),
}
RING_MOCO = {  # config/pretrain/mocov2/moco.json
    "method_params.temperature": (0.07, f"{RING} moco.json loss_params.t"),
    "method_params.queue_size": (4096, f"{RING} moco.json loss_params.k"),
    "method_params.momentum": (0.999, f"{RING} moco.json loss_params.m"),
}
RING_MOCO_RING = {  # config/pretrain/mocov2/moco_ring.json
    **RING_RING,
    "method_params.temperature": (0.07, f"{RING} moco_ring.json loss_params.t"),
    "method_params.queue_size": (65536, f"{RING} moco_ring.json loss_params.k"),
    "method_params.momentum": (0.999, f"{RING} moco_ring.json loss_params.m"),
}
RING_NCE = {  # config/pretrain/nce/nce.json (nce_ring.json: the same plus the ring)
    "method_params.temperature": (0.07, f"{RING} nce.json loss_params.t"),
    "method_params.n_negatives": (4095, f"{RING} nce.json loss_params.k = 4096 with the positive"),
    "method_params.bank_momentum": (0.0, f"{RING} nce.json loss_params.m"),
}

# MoCo-v2 on ImageNet: main_moco.py with the README's v2 flags, moco/builder.py, main_lincls.py.
MOCO_V2 = {
    "method_params.temperature": (0.2, f"{MOCO} --moco-t 0.2 (README, v2)"),
    "method_params.queue_size": (65536, f"{MOCO} --moco-k"),
    "method_params.momentum": (0.999, f"{MOCO} --moco-m"),
    "model.backbone": ("resnet50", f"{MOCO} -a resnet50"),
    "model.stem": ("imagenet", f"{MOCO} torchvision resnet50"),
    "model.projector_layers": (2, f"{MOCO} --mlp: Linear(2048, 2048), ReLU, fc"),
    "model.projector_hidden_dim": (None, f"{MOCO} --mlp: hidden = dim_mlp (the feature width)"),
    "model.projector_out_dim": (128, f"{MOCO} --moco-dim"),
    "model.projector_batchnorm": (False, f"{MOCO} --mlp head has no BatchNorm"),
    "model.bn_splits": (8, f"{MOCO} README: 8 GPUs, batch 256, shuffle-BN: BatchNorm per GPU over 32"),
    "pretrain.epochs": (200, f"{MOCO} --epochs 200"),
    "pretrain.batch_size": (256, f"{MOCO} --batch-size 256"),
    "pretrain.optimizer.name": ("sgd", f"{MOCO} torch.optim.SGD"),
    "pretrain.optimizer.lr": (0.03, f"{MOCO} --lr 0.03"),
    "pretrain.optimizer.momentum": (0.9, f"{MOCO} --momentum"),
    "pretrain.optimizer.weight_decay": (1e-4, f"{MOCO} --wd"),
    "pretrain.schedule.name": ("cosine", f"{MOCO} --cos"),
    "pretrain.augment.crop_size": (224, f"{MOCO} RandomResizedCrop(224, ...)"),
    "pretrain.augment.crop_scale": ([0.2, 1.0], f"{MOCO} --aug-plus scale=(0.2, 1.)"),
    "pretrain.augment.jitter": ([0.4, 0.4, 0.4, 0.1], f"{MOCO} --aug-plus ColorJitter(0.4, 0.4, 0.4, 0.1)"),
    "pretrain.augment.jitter_p": (0.8, f"{MOCO} --aug-plus RandomApply p=0.8"),
    "pretrain.augment.grayscale_p": (0.2, f"{MOCO} RandomGrayscale(p=0.2)"),
    "pretrain.augment.blur_p": (0.5, f"{MOCO} --aug-plus GaussianBlur, p=0.5"),
    "pretrain.augment.blur_sigma": ([0.1, 2.0], f"{MOCO} moco/loader.py GaussianBlur([.1, 2.])"),
    "pretrain.augment.flip_p": (0.5, f"{MOCO} RandomHorizontalFlip()"),
    "probe.protocol": ("paper", f"{MOCO} main_lincls.py trains on augmented crops"),
    "probe.epochs": (100, f"{MOCO} main_lincls.py --epochs"),
    "probe.batch_size": (256, f"{MOCO} main_lincls.py -b"),
    "probe.optimizer.name": ("sgd", f"{MOCO} main_lincls.py SGD"),
    "probe.optimizer.lr": (30.0, f"{MOCO} main_lincls.py --lr 30"),
    "probe.optimizer.momentum": (0.9, f"{MOCO} main_lincls.py --momentum"),
    "probe.optimizer.weight_decay": (0.0, f"{MOCO} main_lincls.py --wd 0"),
    "probe.schedule.name": ("step", f"{MOCO} main_lincls.py --schedule"),
    "probe.schedule.milestones": ([60, 80], f"{MOCO} main_lincls.py --schedule 60 80"),
    "probe.schedule.gamma": (0.1, f"{MOCO} main_lincls.py adjust_learning_rate x0.1"),
    "probe.augment.crop_scale": ([0.08, 1.0], f"{MOCO} main_lincls.py RandomResizedCrop(224) default scale"),
    "probe.augment.jitter_p": (0.0, f"{MOCO} main_lincls.py: crop and flip only"),
    "probe.augment.grayscale_p": (0.0, f"{MOCO} main_lincls.py: crop and flip only"),
    "probe.augment.blur_p": (0.0, f"{MOCO} main_lincls.py: crop and flip only"),
}
MOCHI = {  # no official code: SynCo's defaults for the MoCHi types
    "method_params.n_hard": (1024, f"{SYNCO} main_synco.py --n-hard"),
    "method_params.n_mix": (256, f"{SYNCO} main_synco.py --n3 (mixup: MoCHi type 1)"),
    "method_params.n_mix_query": (256, f"{SYNCO} main_synco.py --n1 (interpolation with the query: MoCHi type 2)"),
    "method_params.warmup_epochs": (10, f"{SYNCO} main_synco.py --warmup-epochs"),
}

# CMC: train_CMC.py --model resnet50v1 --softmax, the README's ResNet command, LinearProbing.py.
CMC_CODE = {
    "method_params.temperature": (0.07, f"{CMC} train_CMC.py --nce_t"),
    "method_params.n_negatives": (16384, f"{CMC} train_CMC.py --nce_k"),
    "method_params.bank_momentum": (0.5, f"{CMC} train_CMC.py --nce_m"),
    "model.backbone": ("resnet50", f"{CMC} --model resnet50v1"),
    "model.width": (0.5, f"{CMC} models/resnet.py ResNetV1: width=0.5"),
    "model.stem": ("imagenet", f"{CMC} models/resnet.py: 7x7 stride-2 conv and max-pool"),
    "model.projector_layers": (1, f"{CMC} models/resnet.py: fc = Linear(., low_dim), then l2norm"),
    "model.projector_out_dim": (128, f"{CMC} train_CMC.py --feat_dim"),
    "model.bn_splits": (4, f"{CMC} README: ResNets on 4 GPUs; MyResNetsCMC wraps the streams in nn.DataParallel"),
    "pretrain.epochs": (240, f"{CMC} train_CMC.py --epochs"),
    "pretrain.batch_size": (128, f"{CMC} train_CMC.py --batch_size (README ResNet command)"),
    "pretrain.optimizer.name": ("sgd", f"{CMC} train_CMC.py set_optimizer: SGD"),
    "pretrain.optimizer.lr": (0.03, f"{CMC} train_CMC.py --learning_rate"),
    "pretrain.optimizer.momentum": (0.9, f"{CMC} train_CMC.py --momentum"),
    "pretrain.optimizer.weight_decay": (1e-4, f"{CMC} train_CMC.py --weight_decay"),
    "pretrain.schedule.name": ("step", f"{CMC} util.py adjust_learning_rate"),
    "pretrain.schedule.milestones": ([120, 160, 200], f"{CMC} train_CMC.py --lr_decay_epochs"),
    "pretrain.schedule.gamma": (0.1, f"{CMC} train_CMC.py --lr_decay_rate"),
    "pretrain.augment.crop_size": (224, f"{CMC} RandomResizedCrop(224, ...)"),
    "pretrain.augment.crop_scale": ([0.2, 1.0], f"{CMC} train_CMC.py --crop_low 0.2"),
    "pretrain.augment.flip_p": (0.5, f"{CMC} RandomHorizontalFlip()"),
    "pretrain.augment.jitter_p": (0.0, f"{CMC} train_CMC.py: no colour augmentation"),
    "pretrain.augment.grayscale_p": (0.0, f"{CMC} train_CMC.py: no colour augmentation"),
    "pretrain.augment.blur_p": (0.0, f"{CMC} train_CMC.py: no blur"),
    "probe.protocol": ("paper", f"{CMC} LinearProbing.py trains on augmented crops"),
    "probe.epochs": (60, f"{CMC} LinearProbing.py --epochs"),
    "probe.batch_size": (256, f"{CMC} LinearProbing.py --batch_size"),
    "probe.optimizer.name": ("sgd", f"{CMC} LinearProbing.py SGD"),
    "probe.optimizer.lr": (30.0, f"{CMC} README: --learning_rate 30 --layer 6 for resnet50v1"),
    "probe.optimizer.momentum": (0.9, f"{CMC} LinearProbing.py --momentum"),
    "probe.optimizer.weight_decay": (0.0, f"{CMC} LinearProbing.py --weight_decay"),
    "probe.schedule.name": ("step", f"{CMC} util.py adjust_learning_rate"),
    "probe.schedule.milestones": ([30, 40, 50], f"{CMC} LinearProbing.py --lr_decay_epochs"),
    "probe.schedule.gamma": (0.2, f"{CMC} LinearProbing.py --lr_decay_rate"),
    "probe.augment": (None, f"{CMC} LinearProbing.py: RandomResizedCrop(224, scale=(0.2, 1.)) + flip, the pretraining crops"),
}

CIFAR_STL = ("cifar10", "cifar100", "stl10")
SOURCES: dict[tuple[str, str], dict] = {
    **{("moco-v2", d): {**RING_CODE, **RING_MOCO, **(RING_CODE_STL10 if d == "stl10" else {})} for d in CIFAR_STL},
    **{("ring", d): {**RING_CODE, **RING_MOCO_RING, **(RING_CODE_STL10 if d == "stl10" else {})} for d in CIFAR_STL},
    **{("ir", d): {**RING_CODE, **RING_NCE, **(RING_CODE_STL10 if d == "stl10" else {})} for d in CIFAR_STL},
    **{("ir-ring", d): {**RING_CODE, **RING_NCE, **RING_RING, **(RING_CODE_STL10 if d == "stl10" else {})} for d in CIFAR_STL},
    ("moco-v2", "imagenet100"): MOCO_V2,
    ("mochi", "imagenet100"): {**MOCO_V2, **MOCHI},
    ("cmc", "imagenet100"): CMC_CODE,
    ("cmc-ring", "imagenet100"): {**CMC_CODE, **RING_RING},  # no CMC + Ring code: CMC's and the Ring code's ring
}

_STEM = "the CIFAR stem at the native 32 / 96 px, as the other CIFAR recipes (ring-table1 up-samples to 224 with the 7x7 stem)"
_PROBE = "the suite's default probe caches un-augmented features (the paper tables set protocol paper)"
DEPARTURES: dict[tuple[str, str, str], tuple[object, str]] = {}
for _method in ("moco-v2", "ring", "ir", "ir-ring"):
    for _dataset in CIFAR_STL:
        DEPARTURES[(_method, _dataset, "model.stem")] = ("auto", _STEM)
        DEPARTURES[(_method, _dataset, "pretrain.augment.crop_size")] = (96 if _dataset == "stl10" else None, _STEM)
        DEPARTURES[(_method, _dataset, "probe.protocol")] = ("fast", _PROBE)
    DEPARTURES[(_method, "stl10", "pretrain.split")] = ("pretrain", "STL-10's train+unlabeled (ring-table1 pretrains on the 5k train split as the code)")
for _method in ("moco-v2", "mochi", "cmc", "cmc-ring"):
    DEPARTURES[(_method, "imagenet100", "probe.protocol")] = ("fast", _PROBE)


def resolved(method: str, dataset: str) -> dict:
    """The recipe's resolved config as flat ``section.key`` -> plain value."""
    flat: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        flat[prefix] = value

    walk("", to_dict(resolve_config(method, dataset)))
    return flat


def same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(a - b) <= 1e-12 * max(1.0, abs(b))
    return a == b


@pytest.mark.parametrize("method,dataset", sorted(SOURCES))
def test_recipe_values_are_those_of_its_official_code(method, dataset):
    recipe = resolved(method, dataset)
    wrong = []
    for key, (value, source) in SOURCES[(method, dataset)].items():
        departure = DEPARTURES.get((method, dataset, key))
        expected = value if departure is None else departure[0]
        if not same(recipe[key], expected):
            why = f"departure: {departure[1]}" if departure else f"source: {source}"
            wrong.append(f"{key} = {recipe[key]!r}, expected {expected!r} ({why})")
    assert not wrong, f"{method} on {dataset}:\n" + "\n".join(wrong)


def test_departures_are_real_and_stated_in_the_recipe():
    """Every listed departure differs from its source's value, and the recipe files say so
    ("departs:" in a comment of the method's recipe or of the one it extends)."""
    for (method, dataset, key), (ours, _) in DEPARTURES.items():
        assert not same(ours, SOURCES[(method, dataset)][key][0]), (method, dataset, key)
    for method in {m for m, _, _ in DEPARTURES}:
        texts, name = [], method
        while name:
            text = (experiments_dir() / "methods" / f"{name}.yaml").read_text()
            texts.append(text)
            name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("extends:")), None)
        assert any("departs:" in t for t in texts), method


def test_the_headline_ring_run_uses_plain_batchnorm_as_the_ring_code():
    """The issue's case: `run --method ring --dataset cifar10` inherited MoCo-v2's 8 BatchNorm
    groups, while the Ring code trains on one GPU with plain BatchNorm."""
    for dataset in CIFAR_STL:
        assert resolve_config("ring", dataset).model.bn_splits == 1
        assert resolve_config("moco-v2", dataset).model.bn_splits == 1
    assert resolve_config("moco-v2", "imagenet100").model.bn_splits == 8  # MoCo-v2's 8 GPUs


def test_ring_run_on_cifar10_records_the_ring_code_recipe(tmp_path):
    """What a user of `run --method ring --dataset cifar10` gets, read from the run's ledger: the
    Ring code's BatchNorm, augmentation and probe optimiser (sizes cut to a CPU smoke run)."""
    from cli_runner import cli, ledger
    from fake_datasets import write_fake_cifar

    data, runs = tmp_path / "data", tmp_path / "runs"
    write_fake_cifar(data, 10, n_train=64, n_test=16)
    small = ["--backbone", "tiny", "--epochs", "1", "--batch-size", "16", "--set", "method_params.queue_size=32", "--set", "probe.epochs=2",
             "--set", "random_init_baseline=false", "--set", "transfer=[]", "--no-progress", "--no-download"]
    result = cli("run", "--method", "ring", "--dataset", "cifar10", *small, "--data-root", str(data), runs=runs)
    assert result.returncode == 0, result.stderr
    records = {r["stage"]: r["config"] for r in ledger(runs)}
    assert records["pretrain"]["model"]["bn_splits"] == 1
    augment = records["pretrain"]["pretrain"]["augment"]
    assert (augment["jitter"], augment["jitter_p"], augment["blur_p"]) == ([0.4, 0.4, 0.4, 0.4], 1.0, 0.0)
    probe = records["probe"]["probe"]["optimizer"]
    assert (probe["name"], probe["lr"], probe["weight_decay"]) == ("sgd", 0.01, 1e-5)
