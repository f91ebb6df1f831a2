"""The frameworks around the objectives: MoCo's queue and key encoder, split BatchNorm, memory
banks, CMC's Lab streams, the Ring annealing and the MoCHi warm-up."""

import copy
import math

import pytest
import torch
from torch import nn

from hardneg_bench.losses import moco
from hardneg_bench.methods import METHODS, Batch, get_method
from hardneg_bench.methods.memory_bank import MemoryBank
from hardneg_bench.methods.mochi import MoCHiParams
from hardneg_bench.methods.ring_fractions import RingFractions
from hardneg_bench.models import EncoderSpec, build_encoder, projection_head
from hardneg_bench.models.colour import rgb_to_lab
from hardneg_bench.models.split_batchnorm import SplitBatchNorm2d


def make_method(name: str, dataset_size: int = 32, **params):
    entry = get_method(name)
    spec = EncoderSpec("tiny", "auto", 16, lab_split=entry.cls.lab_split, input_mean=(0.5,) * 3, input_std=(0.25,) * 3)
    return entry.cls(build_encoder(spec), lambda d: projection_head(d, 32, 8, batchnorm=False), entry.params(**params), dataset_size)


def batch(size: int = 4, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    views = torch.randn(2, size, 3, 16, 16, generator=generator)
    return Batch(views[0], views[1], torch.randperm(32, generator=generator)[:size], torch.zeros(size, dtype=torch.long))


def step(method, b: Batch, lr: float = 0.1):
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=lr)
    loss = method.loss(b)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    method.after_optimizer_step()
    return loss


def test_moco_enqueues_after_the_step_and_updates_the_key_encoder_by_ema():
    torch.manual_seed(0)
    method = make_method("moco-v2", queue_size=12, momentum=0.9).train()
    key_before = copy.deepcopy(method.key_backbone.state_dict())
    queue_before = method.queue.clone()
    b = batch()
    method.loss(b)
    assert torch.equal(method.queue, queue_before)  # the loss saw the queue without this batch's keys
    keys, labels = method._new_keys
    keys = keys.clone()
    method._new_keys = None
    torch.manual_seed(0)
    method.key_backbone.load_state_dict(key_before)
    step(method, b)
    assert torch.allclose(method.queue[:4], keys) and torch.equal(method.queue[4:], queue_before[4:])
    assert torch.equal(method.queue_labels[:4], labels) and bool((method.queue_labels[4:] == -1).all())
    assert int(method.queue_pointer) == 4
    for name, key_param in method.key_backbone.named_parameters():
        query_param = dict(method.backbone.named_parameters())[name]
        assert torch.allclose(key_param, 0.9 * key_before[name] + 0.1 * query_param)
    assert not any(p.requires_grad for p in method.key_backbone.parameters())
    for _ in range(2):
        step(method, b)
    assert int(method.queue_pointer) == 0  # 12 = 3 batches of 4: wrapped around


def test_moco_rejects_a_queue_smaller_than_the_batch():
    method = make_method("moco-v2", queue_size=2)
    with pytest.raises(ValueError, match="queue_size"):
        method.loss(batch(4))


def test_split_batchnorm_normalises_each_sub_batch_and_is_plain_batchnorm_in_eval():
    torch.manual_seed(1)
    bn = SplitBatchNorm2d(3, num_splits=4)
    nn.init.uniform_(bn.weight)
    nn.init.uniform_(bn.bias)
    x = torch.randn(8, 3, 5, 5) * 2 + 1
    out = bn(x)
    for k in range(4):
        group = x[k::4]
        mean = group.mean(dim=(0, 2, 3), keepdim=True)
        var = group.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        expected = (group - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, 3, 1, 1) + bn.bias.view(1, 3, 1, 1)
        assert torch.allclose(out[k::4], expected, atol=1e-5)
    split_means = torch.stack([x[k::4].mean(dim=(0, 2, 3)) for k in range(4)])
    assert torch.allclose(bn.running_mean, 0.1 * split_means.mean(0), atol=1e-6)
    plain = nn.BatchNorm2d(3)
    plain.load_state_dict(bn.state_dict())
    assert torch.allclose(bn.eval()(x), plain.eval()(x))


def test_memory_bank_update_follows_its_momentum():
    torch.manual_seed(2)
    for momentum in (0.0, 0.5):
        bank = MemoryBank(10, 4, momentum)
        old = bank.entries.clone()
        z = torch.randn(3, 4) * 5
        idx = torch.tensor([7, 0, 3])
        bank.update(idx, z)
        mixed = momentum * old[idx] + (1 - momentum) * z / z.norm(dim=1, keepdim=True)
        assert torch.allclose(bank.entries[idx], mixed / mixed.norm(dim=1, keepdim=True))
        untouched = [i for i in range(10) if i not in idx.tolist()]
        assert torch.equal(bank.entries[untouched], old[untouched])
        assert torch.allclose(old.norm(dim=1), torch.ones(10))


@pytest.mark.parametrize("name,banks", [("ir", ["bank"]), ("cmc", ["bank_l", "bank_ab"])])
def test_bank_methods_write_the_step_embeddings_after_the_step(name, banks):
    torch.manual_seed(3)
    method = make_method(name, n_negatives=5, bank_momentum=0.0).train()
    b = batch()
    before = [getattr(method, bank).entries.clone() for bank in banks]
    method.loss(b)
    assert all(torch.equal(getattr(method, bank).entries, old) for bank, old in zip(banks, before))
    written = [getattr(method, bank).staged[1] for bank in banks]
    method.after_optimizer_step()
    for bank, z in zip(banks, written):
        assert torch.allclose(getattr(method, bank).entries[b.indices], torch.nn.functional.normalize(z, dim=1))
        assert torch.equal(getattr(method, bank).labels[b.indices], b.labels)


def test_srgb_to_lab_matches_the_cie_values_of_the_primaries():
    colours = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [0, 0, 0]]).view(5, 3, 1, 1)
    expected = torch.tensor([[53.24, 80.09, 67.20], [87.73, -86.18, 83.18], [32.30, 79.19, -107.86], [100.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(rgb_to_lab(colours.double()).view(5, 3).float(), expected, atol=0.02)


def test_cmc_encoder_has_two_half_width_streams_and_reloads(tmp_path):
    spec = EncoderSpec("tiny", "auto", 16, width=0.5, lab_split=True, input_mean=(0.4, 0.5, 0.6), input_std=(0.2, 0.25, 0.3))
    encoder = build_encoder(spec).eval()
    assert encoder.l_stream.features[0].in_channels == 1 and encoder.ab_stream.features[0].in_channels == 2
    assert encoder.feature_dim == 2 * 64
    images = torch.randn(3, 3, 16, 16)
    torch.save({"spec": spec.to_dict(), "state": encoder.state_dict()}, tmp_path / "e.pt")
    saved = torch.load(tmp_path / "e.pt", weights_only=True)
    rebuilt = build_encoder(EncoderSpec(**saved["spec"]))
    rebuilt.load_state_dict(saved["state"])
    assert torch.equal(rebuilt.eval()(images), encoder(images))
    l_features, ab_features = encoder.streams(images)
    assert torch.equal(torch.cat([l_features, ab_features], 1), encoder(images))


def test_ring_annealing_goes_linearly_from_the_whole_queue_to_the_ring():
    constant = RingFractions(outer=0.1, inner=0.1)
    assert constant.outer_at(0) == constant.outer_at(50) == 0.1
    annealed = RingFractions(outer=0.1, inner=0.1, anneal_epochs=10)
    assert [round(annealed.outer_at(e), 6) for e in (0, 5, 10, 20)] == [1.0, 0.55, 0.1, 0.1]


def test_mochi_is_moco_during_its_warm_up():
    torch.manual_seed(4)
    method = make_method("mochi", queue_size=16, n_hard=4, n_mix=2, n_mix_query=2, warmup_epochs=2)
    q, k = torch.randn(4, 8), torch.randn(4, 8)
    for epoch, same in ((0, True), (1, True), (2, False)):
        method.on_epoch_start(epoch)
        torch.manual_seed(5)
        assert torch.allclose(method.objective(q, k, method.queue), moco(q, k, method.queue, method.params.temperature)) == same


def test_bad_method_parameters_name_the_key():
    from hardneg_bench.config import ConfigError

    with pytest.raises(ConfigError, match="n_hard"):
        MoCHiParams(queue_size=16, n_hard=32)
    with pytest.raises(ConfigError, match="inner"):
        get_method("ring").params(inner=1.0)
    assert math.isclose(get_method("ring").params().temperature, 0.07)


SMALL = {  # parameters that fit a batch of 4 and a queue of 64
    "moco-v2": dict(queue_size=64),
    "mochi": dict(queue_size=64, n_hard=16, n_mix=8, n_mix_query=4, warmup_epochs=0),
    "ring": dict(queue_size=64),
    "sscl": dict(n_hard=4, n_synthetic=4),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_objective_runs_in_float32_under_bf16_autocast(name, monkeypatch):
    """The encoders run in bf16; every objective sees float32 embeddings with autocast off, so its
    similarities and log-sum-exps are float32 (the loss it returns is float32)."""
    torch.manual_seed(0)
    method = make_method(name, dataset_size=32, **SMALL.get(name, {})).train()
    seen = {}
    original = method.objective

    def recording(*args):
        seen["dtypes"] = {a.dtype for a in args if torch.is_tensor(a) and a.is_floating_point()}
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        return original(*args)

    monkeypatch.setattr(method, "objective", recording)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = method.loss(batch())
    assert seen == {"dtypes": {torch.float32}, "autocast": False}
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
