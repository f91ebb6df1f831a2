"""Detectors of MoCo's detection configs built from torchvision parts (hardneg_bench.detection.models).

The numbers below are written out from the configs (no network in CI), each with the line it comes
from; the models are checked against them by reading their modules, not the spec."""

from dataclasses import replace

import pytest
import torch
from torch import nn
from torchvision.models import resnet50
from torchvision.models.detection import fasterrcnn_resnet50_fpn, keypointrcnn_resnet50_fpn, maskrcnn_resnet50_fpn
from torchvision.models.resnet import Bottleneck
from torchvision.ops import FrozenBatchNorm2d

from hardneg_bench.config import ConfigError
from hardneg_bench.detection.models import COCO_R50_C4, VOC_R50_C4, DetectorSpec, build_detector, load_encoder, tiny
from hardneg_bench.models.backbones import ScaledResNet, resnet

pytestmark = pytest.mark.usefixtures("one_thread")

MOCO = "facebookresearch/moco@132aea9 detection/configs/"
D2 = "facebookresearch/detectron2@02b5c4e detectron2/config/defaults.py"
CONFIG = {  # what pascal_voc_R_50_C4_24k_moco.yaml resolves to, and where each value is set
    "num_classes": (20, MOCO + "pascal_voc_R_50_C4_24k.yaml ROI_HEADS.NUM_CLASSES: 20"),
    "min_size_train": ((480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800), MOCO + "pascal_voc_R_50_C4_24k.yaml INPUT.MIN_SIZE_TRAIN"),
    "min_size_test": (800, MOCO + "pascal_voc_R_50_C4_24k.yaml INPUT.MIN_SIZE_TEST: 800"),
    "max_size_train": (1333, D2 + ":61 _C.INPUT.MAX_SIZE_TRAIN = 1333"),
    "max_size_test": (1333, D2 + ":65 _C.INPUT.MAX_SIZE_TEST = 1333"),
    "pixel_mean": ((123.675, 116.280, 103.530), MOCO + "pascal_voc_R_50_C4_24k_moco.yaml PIXEL_MEAN (FORMAT: RGB)"),
    "pixel_std": ((58.395, 57.120, 57.375), MOCO + "pascal_voc_R_50_C4_24k_moco.yaml PIXEL_STD"),
    "anchor_sizes": ((32, 64, 128, 256, 512), D2 + ":180 ANCHOR_GENERATOR.SIZES = [[32, 64, 128, 256, 512]]"),
    "anchor_aspect_ratios": ((0.5, 1.0, 2.0), D2 + ":187 ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]"),
    "rpn_iou_thresholds": ((0.3, 0.7), D2 + ":218 RPN.IOU_THRESHOLDS = [0.3, 0.7]"),
    "rpn_batch_size_per_image": (256, D2 + ":221 RPN.BATCH_SIZE_PER_IMAGE = 256"),
    "rpn_positive_fraction": (0.5, D2 + ":223 RPN.POSITIVE_FRACTION = 0.5"),
    "rpn_pre_nms_topk_train": (12000, D2 + ":234 RPN.PRE_NMS_TOPK_TRAIN = 12000"),
    "rpn_pre_nms_topk_test": (6000, MOCO + "Base-RCNN-C4-BN.yaml RPN.PRE_NMS_TOPK_TEST: 6000"),
    "rpn_post_nms_topk_train": (2000, D2 + ":242 RPN.POST_NMS_TOPK_TRAIN = 2000"),
    "rpn_post_nms_topk_test": (1000, MOCO + "Base-RCNN-C4-BN.yaml RPN.POST_NMS_TOPK_TEST: 1000"),
    "rpn_nms_thresh": (0.7, D2 + ":245 RPN.NMS_THRESH = 0.7"),
    "roi_iou_threshold": (0.5, D2 + ":263 ROI_HEADS.IOU_THRESHOLDS = [0.5]"),
    "roi_batch_size_per_image": (512, D2 + ":269 ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512"),
    "roi_positive_fraction": (0.25, D2 + ":271 ROI_HEADS.POSITIVE_FRACTION = 0.25"),
    "score_thresh_test": (0.05, D2 + ":280 ROI_HEADS.SCORE_THRESH_TEST = 0.05"),
    "nms_thresh_test": (0.5, D2 + ":283 ROI_HEADS.NMS_THRESH_TEST = 0.5"),
    "bbox_reg_weights": ((10.0, 10.0, 5.0, 5.0), D2 + ":302 ROI_BOX_HEAD.BBOX_REG_WEIGHTS"),
    "pooler_resolution": (14, D2 + ":305 ROI_BOX_HEAD.POOLER_RESOLUTION = 14"),
    "pooler_sampling_ratio": (0, D2 + ":306 ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0"),
    "detections_per_image": (100, D2 + ":614 TEST.DETECTIONS_PER_IMAGE = 100"),
}
BLOCKS = (3, 4, 6, 3)  # D2:484 RESNETS.DEPTH = 50; detectron2 modeling/backbone/resnet.py:646-652 {50: [3, 4, 6, 3]}
RES4_CHANNELS, RES5_CHANNELS = 1024, 2048  # D2:506 RES2_OUT_CHANNELS = 256, x4 in res4, x8 in res5 (roi_heads.py:431-435)
STRIDE = 16  # res4: the stem's conv and max-pool, res3 and res4 each halve
FPN_ANCHORS = ((32,), (64,), (128,), (256,), (512,))  # detectron2 configs/Base-RCNN-FPN.yaml ANCHOR_GENERATOR.SIZES


@pytest.fixture(scope="module")
def c4():
    torch.manual_seed(0)
    return build_detector(VOC_R50_C4)


def _count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


def test_voc_spec_is_the_config():
    for field, (value, source) in CONFIG.items():
        assert getattr(VOC_R50_C4, field) == value, source
    assert COCO_R50_C4.task == "mask" and COCO_R50_C4.num_classes == 80  # coco_R_50_C4_2x.yaml MASK_ON: True; D2:255
    assert COCO_R50_C4.min_size_train == (640, 672, 704, 736, 768, 800)  # coco_R_50_C4_2x.yaml INPUT.MIN_SIZE_TRAIN


def test_c4_modules_carry_the_config_numbers(c4):
    v = {field: value for field, (value, _) in CONFIG.items()}
    rpn, roi = c4.rpn, c4.roi_heads
    assert rpn.anchor_generator.sizes == (v["anchor_sizes"],) and rpn.anchor_generator.aspect_ratios == (v["anchor_aspect_ratios"],)
    assert (rpn.proposal_matcher.low_threshold, rpn.proposal_matcher.high_threshold) == v["rpn_iou_thresholds"]
    assert rpn.fg_bg_sampler.batch_size_per_image == v["rpn_batch_size_per_image"]
    assert rpn.fg_bg_sampler.positive_fraction == v["rpn_positive_fraction"]
    assert rpn._pre_nms_top_n == {"training": v["rpn_pre_nms_topk_train"], "testing": v["rpn_pre_nms_topk_test"]}
    assert rpn._post_nms_top_n == {"training": v["rpn_post_nms_topk_train"], "testing": v["rpn_post_nms_topk_test"]}
    assert rpn.nms_thresh == v["rpn_nms_thresh"]
    assert roi.proposal_matcher.low_threshold == roi.proposal_matcher.high_threshold == v["roi_iou_threshold"]
    assert roi.fg_bg_sampler.batch_size_per_image == v["roi_batch_size_per_image"]
    assert roi.fg_bg_sampler.positive_fraction == v["roi_positive_fraction"]
    assert roi.box_coder.weights == v["bbox_reg_weights"]
    assert (roi.score_thresh, roi.nms_thresh, roi.detections_per_img) == (v["score_thresh_test"], v["nms_thresh_test"], v["detections_per_image"])
    pool = roi.box_roi_pool
    assert pool.output_size == (v["pooler_resolution"],) * 2 and pool.sampling_ratio == v["pooler_sampling_ratio"]
    assert pool.aligned and pool.spatial_scale == 1 / STRIDE  # ROIAlignV2 (D2:308) on res4
    assert roi.box_predictor.cls_score.out_features == v["num_classes"] + 1  # + background
    assert roi.mask_predictor is None  # pascal_voc_R_50_C4_24k.yaml MASK_ON: False
    transform = c4.transform
    assert [round(m * 255, 3) for m in transform.image_mean] == list(v["pixel_mean"])
    assert [round(s * 255, 3) for s in transform.image_std] == list(v["pixel_std"])
    assert (transform.min_size, transform.max_size) == (v["min_size_train"], v["max_size_train"])
    c4.eval()
    assert (transform.min_size, transform.max_size) == ((v["min_size_test"],), v["max_size_test"])
    c4.train()


def test_c4_blocks_split_between_backbone_and_res5_head(c4):
    names = [name for name, _ in c4.backbone.named_children()]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"]  # stem, res2, res3, res4
    assert [len(c4.backbone.layer1), len(c4.backbone.layer2), len(c4.backbone.layer3)] == list(BLOCKS[:3])
    assert c4.backbone.conv1.kernel_size == (7, 7)
    res5 = c4.roi_heads.box_head.layer4
    assert len(res5) == BLOCKS[3]
    first = res5[0]  # stride 2 on the 3x3 convolution: STRIDE_IN_1X1: False (pascal_voc_R_50_C4_24k_moco.yaml)
    assert (first.conv1.stride, first.conv2.stride, first.downsample[0].stride) == ((1, 1), (2, 2), (2, 2))
    assert all(block.conv2.stride == (1, 1) for block in res5[1:])
    features = c4.backbone(torch.randn(1, 3, 64, 96))
    assert features.shape == (1, RES4_CHANNELS, 64 // STRIDE, 96 // STRIDE) and c4.backbone.out_channels == RES4_CHANNELS


def test_c4_roi_align_is_aligned_at_stride_16():
    """On a feature map whose value is its column, RoIAlign with aligned=True returns the column of
    each bin's centre, box / 16 - 0.5 (one sample per bin: adaptive, ceil(4 / 14))."""
    model = build_detector(tiny(VOC_R50_C4))
    feature = torch.arange(8.0).expand(1, 2, 8, 8).contiguous()  # image 128 x 128 px
    box = torch.tensor([[32.0, 32.0, 96.0, 96.0]])
    out = model.roi_heads.box_roi_pool({"0": feature}, [box], [(128, 128)])
    start, bin_width = 32 / STRIDE - 0.5, (96 - 32) / STRIDE / 14
    expected = torch.tensor([start + (j + 0.5) * bin_width for j in range(14)])
    assert out.shape == (1, 2, 14, 14)
    torch.testing.assert_close(out[0, 0], expected.expand(14, 14))


def test_c4_res5_head_with_extra_norm(c4):
    head = c4.roi_heads.box_head
    assert isinstance(head.norm, nn.BatchNorm2d) and head.norm.num_features == RES5_CHANNELS
    assert c4.roi_heads.box_predictor.cls_score.in_features == RES5_CHANNELS
    out = head(torch.randn(6, RES4_CHANNELS, 14, 14))
    assert out.shape == (6, RES5_CHANNELS, 7, 7)
    # in training the norm (weight 1, bias 0) standardises each channel of res5's ReLU output
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(RES5_CHANNELS), atol=1e-4, rtol=0)
    assert out.min() < 0


def test_c4_nothing_frozen_and_every_batchnorm_trains(c4):
    c4.train()
    assert all(p.requires_grad for p in c4.parameters())  # Base-RCNN-C4-BN.yaml BACKBONE.FREEZE_AT: 0
    batchnorms = [m for m in c4.modules() if isinstance(m, nn.BatchNorm2d)]
    # stem 1, three per bottleneck, one per stage's projection shortcut, MoCo's extra norm 1
    assert len(batchnorms) == 1 + sum(3 * n + 1 for n in BLOCKS) + 1 == 54
    assert all(m.training and m.track_running_stats for m in batchnorms) and _count(c4, FrozenBatchNorm2d) == 0


def test_c4_predictors_initialised_as_detectron2(c4):
    """fast_rcnn.py:241-244: class scores N(0, 0.01), box deltas N(0, 0.001), biases 0."""
    predictor = c4.roi_heads.box_predictor
    assert abs(predictor.cls_score.weight.std().item() - 0.01) < 5e-4
    assert abs(predictor.bbox_pred.weight.std().item() - 0.001) < 5e-5
    assert not predictor.cls_score.bias.any() and not predictor.bbox_pred.bias.any()


@pytest.mark.parametrize(
    "task,num_classes,reference",
    [("box", 20, fasterrcnn_resnet50_fpn), ("mask", 80, maskrcnn_resnet50_fpn), ("keypoint", 1, keypointrcnn_resnet50_fpn)],
)
def test_fpn_is_torchvisions_construction(task, num_classes, reference):
    ours = build_detector(replace(VOC_R50_C4, arch="fpn", task=task, num_classes=num_classes))
    # without weights torchvision trains all five stages (trainable_backbone_layers=5) with plain BatchNorm
    theirs = reference(weights=None, weights_backbone=None, num_classes=num_classes + 1)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    for model in (ours, theirs):
        assert all(p.requires_grad for p in model.parameters()) and _count(model, FrozenBatchNorm2d) == 0
    assert _count(ours, nn.BatchNorm2d) == _count(theirs, nn.BatchNorm2d) == 1 + sum(3 * n + 1 for n in BLOCKS)
    assert ours.rpn.anchor_generator.sizes == FPN_ANCHORS
    if task == "box":
        levels = ours.backbone(torch.randn(1, 3, 64, 64))
        assert {name: tuple(f.shape[1:]) for name, f in levels.items()} == {
            "0": (256, 16, 16), "1": (256, 8, 8), "2": (256, 4, 4), "3": (256, 2, 2), "pool": (256, 1, 1)
        }  # strides 4, 8, 16, 32 (res2-res5) and 64 (max-pooled), 256 channels (D2:150 FPN.OUT_CHANNELS)


def test_transform_resizes_to_train_and_test_sizes_and_normalises():
    model = build_detector(replace(tiny(VOC_R50_C4), min_size_train=(48,), max_size_train=400, min_size_test=64, max_size_test=400))
    image = torch.full((3, 32, 40), 0.5)
    images, _ = model.transform([image])
    assert images.image_sizes == [(48, 60)] and images.tensors.shape[-2:] == (48, 64)  # padded to a multiple of 16
    model.eval()
    images, _ = model.transform([image])
    assert images.image_sizes == [(64, 80)] and images.tensors.shape[-2:] == (64, 80)
    expected = torch.tensor([(0.5 * 255 - m) / s for m, s in zip(CONFIG["pixel_mean"][0], CONFIG["pixel_std"][0])])
    torch.testing.assert_close(images.tensors[0, :, 10, 10], expected)


def _encoder(width=0.0625):
    """A tiny torchvision-named ResNet with every tensor random (BatchNorm's too), as pretraining leaves it."""
    encoder = ScaledResNet(Bottleneck, [1, 1, 1, 1], width, nn.BatchNorm2d)
    state = {k: torch.rand_like(v, dtype=torch.float) if v.is_floating_point() else v + 3 for k, v in encoder.state_dict().items()}
    return {**state, "fc.weight": torch.randn(10, 256), "fc.bias": torch.randn(10)}


PREFIXES = {  # where convert-pretrain-to-detectron2.py's stem, res2-res5 go in each detector
    "c4": {"conv1": "backbone.", "bn1": "backbone.", "layer1": "backbone.", "layer2": "backbone.", "layer3": "backbone.", "layer4": "roi_heads.box_head."},
    "fpn": {name: "backbone.body." for name in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")},
}


@pytest.mark.parametrize("arch", ["c4", "fpn"])
def test_load_encoder_copies_every_tensor(arch):
    model = build_detector(tiny(replace(VOC_R50_C4, arch=arch)))
    encoder = _encoder()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loaded = load_encoder(model, encoder)
    assert loaded.missing == () and loaded.unexpected == ("fc.bias", "fc.weight")
    after = model.state_dict()
    copied = set()
    for key, value in encoder.items():
        if key.startswith("fc."):
            continue
        target = PREFIXES[arch][key.split(".")[0]] + key
        assert torch.equal(after[target], value), target
        copied.add(target)
    assert all(torch.equal(after[k], before[k]) for k in after if k not in copied)  # RPN, heads, extra norm untouched
    if arch == "c4":
        assert "roi_heads.box_head.norm.weight" not in copied


def test_load_encoder_without_batch_counters_reports_them():
    model = build_detector(tiny(VOC_R50_C4))
    encoder = {k: v for k, v in _encoder().items() if not k.endswith("num_batches_tracked")}
    loaded = load_encoder(model, encoder)
    assert len(loaded.missing) == 1 + sum(3 * 1 + 1 for _ in range(4)) and all(k.endswith("num_batches_tracked") for k in loaded.missing)


def test_load_supervised_torchvision_resnet50_into_c4(c4):
    encoder = resnet50().state_dict()  # torchvision's layout; random here (no download in CI)
    loaded = load_encoder(c4, encoder)
    assert loaded.missing == () and loaded.unexpected == ("fc.bias", "fc.weight")
    state = c4.state_dict()
    assert torch.equal(state["backbone.layer3.5.conv2.weight"], encoder["layer3.5.conv2.weight"])
    assert torch.equal(state["roi_heads.box_head.layer4.0.downsample.1.running_mean"], encoder["layer4.0.downsample.1.running_mean"])


@pytest.mark.parametrize(
    "encoder,message",
    [
        (lambda: resnet("resnet50", "cifar").state_dict(), "CIFAR stem"),
        (lambda: resnet("resnet18", "imagenet").state_dict(), r"lacks \d+ weights of the detector's backbone \(a ResNet-50\)"),
        (lambda: {k: v for k, v in resnet50().state_dict().items() if k != "layer3.0.conv2.weight"}, "lacks 1 weights .* first layer3.0.conv2.weight"),
    ],
)
def test_load_encoder_refuses_what_is_not_a_resnet50_backbone(c4, encoder, message):
    with pytest.raises(ConfigError, match=message):
        load_encoder(c4, encoder())


def test_load_encoder_refuses_another_width():
    message = r"is not a ResNet with \(1, 1, 1, 1\) blocks and 128 channels: layer1.0.conv1.weight has shape \(8, 64, 1, 1\), the detector's backbone \(4, 64, 1, 1\)"
    with pytest.raises(ConfigError, match=message):
        load_encoder(build_detector(tiny(VOC_R50_C4)), _encoder(width=0.125))


def test_spec_refuses_keypoints_on_c4_and_unknown_names():
    with pytest.raises(ConfigError, match="needs arch 'fpn'"):
        DetectorSpec(task="keypoint")
    with pytest.raises(ConfigError, match="arch 'c5'"):
        DetectorSpec(arch="c5")


def _targets(task):
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 6:50, 4:40] = 1
    masks[1, 10:30, 20:60] = 1
    keypoints = torch.cat([torch.rand(2, 17, 2) * 30 + 10, torch.ones(2, 17, 1)], dim=2)
    target = {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [20.0, 10.0, 60.0, 30.0]]), "labels": torch.tensor([1, 1 if task == "keypoint" else 2])}
    extra = {"mask": {"masks": masks}, "keypoint": {"keypoints": keypoints}}.get(task, {})
    return [{**target, **extra} for _ in range(2)]


EXTRA_LOSS = {"box": set(), "mask": {"loss_mask"}, "keypoint": {"loss_keypoint"}}
EXTRA_OUTPUT = {"box": set(), "mask": {"masks"}, "keypoint": {"keypoints", "keypoints_scores"}}


@pytest.mark.parametrize("arch,task", [("c4", "box"), ("c4", "mask"), ("fpn", "box"), ("fpn", "mask"), ("fpn", "keypoint")])
def test_tiny_detector_trains_and_detects(arch, task):
    torch.manual_seed(0)
    model = build_detector(tiny(replace(VOC_R50_C4, arch=arch, task=task, num_classes=1 if task == "keypoint" else 20)))
    images = [torch.rand(3, 64, 64) for _ in range(2)]
    losses = model(images, _targets(task))
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} | EXTRA_LOSS[task]
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    model.roi_heads.score_thresh = 0.0  # an untrained model's scores are about 1 / 21
    with torch.no_grad():
        detections = model(images)
    for found in detections:
        n = len(found["boxes"])
        assert set(found) == {"boxes", "labels", "scores"} | EXTRA_OUTPUT[task] and 0 < n <= 100
        assert found["boxes"].min() >= 0 and found["boxes"].max() <= 64
        if task == "mask":
            assert found["masks"].shape == (n, 1, 64, 64)
        if task == "keypoint":
            assert found["keypoints"].shape == (n, 17, 3)


def test_c4_mask_head_shares_res5_in_training():
    """detectron2's Res5ROIHeads runs res5 once in training (box and mask share it) and once more at
    test time, on the predicted boxes."""
    torch.manual_seed(0)
    model = build_detector(tiny(COCO_R50_C4))
    calls = []
    model.roi_heads.box_head.register_forward_hook(lambda module, inputs, output: calls.append(len(output)))
    model([torch.rand(3, 64, 64) for _ in range(2)], _targets("mask"))
    assert len(calls) == 1
    model.eval()
    with torch.no_grad():
        model([torch.rand(3, 64, 64)])
    assert len(calls) == 3
