"""A published number is marked † exactly when it was not measured as we measure ours: every
evaluation setting it depends on is compared (each one proven below by changing it alone), an
unstated setting counts as a difference, the footnote names each field, the records' short-form
fields still load, every built-in record states every setting it needs, and the template of the
missing records lists them for the reader to fill in.

The tables here are built in the test, with every setting written out, so that they do not follow
the experiment tables' YAML files.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from fake_ledger import table_ledger
from hardneg_bench.config import ConfigError
from hardneg_bench.data.registry import get_dataset
from hardneg_bench.reports.protocols import KNN_SETTINGS, LINEAR_SETTINGS, UNSTATED, our_settings, required_settings
from hardneg_bench.reports.published import load_published, template_text
from hardneg_bench.recipes import resolve_config
from hardneg_bench.reports.table_report import DIFFERENT_PROTOCOL, table_cells, wide_layout
from hardneg_bench.reports.tables import PaperTable, TableRow

PRETRAIN_AUGMENT = {
    "crop_size": None,
    "crop_scale": [0.2, 1.0],
    "crop_ratio": [0.75, 1.3333333333],
    "flip_p": 0.5,
    "jitter": [0.4, 0.4, 0.4, 0.1],
    "jitter_p": 0.8,
    "grayscale_p": 0.2,
    "grayscale_before_jitter": False,
    "blur_p": 0.5,
    "blur_sigma": [0.1, 2.0],
    "blur_kernel_fraction": 0.1,
}
COMMON = {
    "pretrain": {"epochs": 2, "batch_size": 64, "augment": PRETRAIN_AUGMENT},
    "probe": {
        "protocol": "paper",
        "epochs": 30,
        "batch_size": 128,
        "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9, "weight_decay": 1.0e-4, "nesterov": False},
        "schedule": {"name": "step", "milestones": [10, 20], "gamma": 0.1, "warmup_epochs": 0},
        "augment": None,  # the pretraining augmentation
        "image_size": None,  # CIFAR-10's 32 px, no resize
        "test_resize": None,
        "drop_last": False,
        "encoder_batchnorm": "train",
        "classifier_init": "normal",
        "report_epoch": "best",
    },
    "knn": {"k": 20, "temperature": 0.07, "feature": "head"},
}
"""Every evaluation setting of the test tables' cells (SimCLR on CIFAR-10), written out."""

AS_RUN = {
    "linear": {
        "probe.protocol": "paper",
        "probe.epochs": 30,
        "probe.batch_size": 128,
        "probe.optimizer.name": "sgd",
        "probe.optimizer.lr": 0.5,
        "probe.optimizer.momentum": 0.9,
        "probe.optimizer.weight_decay": 1.0e-4,
        "probe.optimizer.nesterov": False,
        "probe.schedule.name": "step",
        "probe.schedule.milestones": [10, 20],
        "probe.schedule.gamma": 0.1,
        "probe.schedule.warmup_epochs": 0,
        "probe.augment.crop_size": 32,
        "probe.augment.crop_scale": [0.2, 1.0],
        "probe.augment.crop_ratio": [0.75, 1.3333333333],
        "probe.augment.flip_p": 0.5,
        "probe.augment.jitter": [0.4, 0.4, 0.4, 0.1],
        "probe.augment.jitter_p": 0.8,
        "probe.augment.grayscale_p": 0.2,
        "probe.augment.grayscale_before_jitter": False,
        "probe.augment.blur_p": 0.5,
        "probe.augment.blur_sigma": [0.1, 2.0],
        "probe.augment.blur_kernel_fraction": 0.1,
        "probe.image_size": 32,
        "probe.test_resize": None,
        "probe.drop_last": False,
        "probe.encoder_batchnorm": "train",
        "probe.classifier_init": "normal",
        "probe.report_epoch": "best",
        "normalization": "cifar10",
    },
    "knn": {"knn.k": 20, "knn.temperature": 0.07, "knn.feature": "head", "knn.report_epoch": "last", "probe.image_size": 32, "probe.test_resize": None, "normalization": "cifar10"},
}
"""A source's protocol as COMMON runs it, as a record states it (by hand, not computed)."""


@dataclass(frozen=True)
class Change:
    """One setting changed alone, and the footnote line that must name it."""

    metric: str
    name: str
    value: Any
    expected: str
    key: str | None
    """The config key set to ``value`` with ``--set``; None: the record's value changes instead
    (the setting has no config key: the dataset and the method fix our normalisation, our kNN
    always measures the final encoder)."""
    context: dict = field(default_factory=dict)
    """Settings both sides take first, where the setting acts only with them (the trust
    coefficient of LARS)."""


def _ours(metric: str, name: str, value: Any, theirs_vs_ours: str, key: str | None = None, context: dict | None = None) -> Change:
    """``name`` changed in our run (with ``--set key=value``, ``key`` defaulting to ``name``)."""
    return Change(metric, name, value, f"{name}: {theirs_vs_ours}", key or name, context or {})


def _augment(name: str, value: Any, theirs_vs_ours: str) -> Change:
    """A setting of the probe's augmentation, changed in the pretraining augmentation that the
    probe's ``augment: null`` takes."""
    return _ours("linear", f"probe.augment.{name}", value, theirs_vs_ours, key=f"pretrain.augment.{name}")


def _theirs(metric: str, name: str, value: Any, theirs_vs_ours: str) -> Change:
    """``name`` changed in the record."""
    return Change(metric, name, value, f"{name}: {theirs_vs_ours}", None)


CHANGES = [
    _ours("linear", "probe.protocol", "fast", "paper (theirs) vs fast (ours)", context={"probe.encoder_batchnorm": "eval"}),  # train-mode BatchNorm needs the paper protocol
    _ours("linear", "probe.epochs", 40, "30 (theirs) vs 40 (ours)"),
    _ours("linear", "probe.batch_size", 256, "128 (theirs) vs 256 (ours)"),
    _ours("linear", "probe.optimizer.name", "adam", "sgd (theirs) vs adam (ours)"),
    _ours("linear", "probe.optimizer.lr", 0.3, "0.5 (theirs) vs 0.3 (ours)"),
    _ours("linear", "probe.optimizer.momentum", 0.5, "0.9 (theirs) vs 0.5 (ours)"),
    _ours("linear", "probe.optimizer.weight_decay", 0.0, "0.0001 (theirs) vs 0.0 (ours)"),
    _ours("linear", "probe.optimizer.nesterov", True, "false (theirs) vs true (ours)"),
    _ours("linear", "probe.optimizer.lars_trust_coefficient", 0.02, "0.001 (theirs) vs 0.02 (ours)", context={"probe.optimizer.name": "lars", "probe.optimizer.lars_trust_coefficient": 0.001}),
    _ours("linear", "probe.schedule.name", "constant", "step (theirs) vs constant (ours)"),
    _ours("linear", "probe.schedule.milestones", [10, 25], "[10, 20] (theirs) vs [10, 25] (ours)"),
    _ours("linear", "probe.schedule.gamma", 0.2, "0.1 (theirs) vs 0.2 (ours)"),
    _ours("linear", "probe.schedule.final_lr_factor", 0.01, "0.0 (theirs) vs 0.01 (ours)", context={"probe.schedule.name": "cosine", "probe.schedule.final_lr_factor": 0.0}),
    _ours("linear", "probe.schedule.warmup_epochs", 2.0, "0 (theirs) vs 2.0 (ours)"),
    _ours("linear", "probe.schedule.warmup_start_factor", 0.1, "0.0 (theirs) vs 0.1 (ours)", context={"probe.schedule.warmup_epochs": 2.0, "probe.schedule.warmup_start_factor": 0.0}),
    _augment("crop_size", 24, "32 (theirs) vs 24 (ours)"),
    _augment("crop_scale", [0.08, 1.0], "[0.2, 1.0] (theirs) vs [0.08, 1.0] (ours)"),
    _augment("crop_ratio", [0.5, 2.0], "[0.75, 1.3333333333] (theirs) vs [0.5, 2.0] (ours)"),
    _augment("flip_p", 0.0, "0.5 (theirs) vs 0.0 (ours)"),
    _augment("jitter", [0.4, 0.4, 0.4, 0.4], "[0.4, 0.4, 0.4, 0.1] (theirs) vs [0.4, 0.4, 0.4, 0.4] (ours)"),
    _augment("jitter_p", 1.0, "0.8 (theirs) vs 1.0 (ours)"),
    _augment("grayscale_p", 0.0, "0.2 (theirs) vs 0.0 (ours)"),
    _augment("grayscale_before_jitter", True, "false (theirs) vs true (ours)"),
    _augment("blur_p", 0.0, "0.5 (theirs) vs 0.0 (ours)"),
    _augment("blur_sigma", [0.1, 1.0], "[0.1, 2.0] (theirs) vs [0.1, 1.0] (ours)"),
    _augment("blur_kernel_fraction", 0.2, "0.1 (theirs) vs 0.2 (ours)"),
    _ours("linear", "probe.image_size", 28, "32 (theirs) vs 28 (ours)"),
    _ours("linear", "probe.test_resize", 36, "null (theirs) vs 36 (ours)", context={"probe.image_size": 32}),
    _ours("linear", "probe.drop_last", True, "false (theirs) vs true (ours)"),
    _ours("linear", "probe.encoder_batchnorm", "eval", "train (theirs) vs eval (ours)"),
    _ours("linear", "probe.classifier_init", "pytorch", "normal (theirs) vs pytorch (ours)"),
    _ours("linear", "probe.report_epoch", "last", "best (theirs) vs last (ours)"),
    _theirs("linear", "normalization", "cifar10-kuangliu", "cifar10-kuangliu (theirs) vs cifar10 (ours)"),
    _ours("knn", "knn.k", 10, "20 (theirs) vs 10 (ours)"),
    _ours("knn", "knn.temperature", 0.1, "0.07 (theirs) vs 0.1 (ours)"),
    _ours("knn", "knn.feature", "backbone", "head (theirs) vs backbone (ours)"),
    _theirs("knn", "knn.report_epoch", "best", "best (theirs) vs last (ours)"),
    _ours("knn", "probe.image_size", 28, "32 (theirs) vs 28 (ours)"),
    _ours("knn", "probe.test_resize", 36, "null (theirs) vs 36 (ours)", context={"probe.image_size": 32}),
    _theirs("knn", "normalization", "imagenet", "imagenet (theirs) vs cifar10 (ours)"),
]


def _set(key: str, value: Any) -> str:
    """A ``--set`` override (its value is read as YAML, which JSON is)."""
    return f"{key}={json.dumps(value)}"


def _record(settings: dict, kind: str = "linear", record_id: str = "mine", **changes: Any) -> dict:
    protocol = {"kind": kind, "mode": "offline", "settings": settings, "details": "as the test says"}
    base = {"id": record_id, "paper": "A paper", "table": "Table 1", "row": "SimCLR", "method": "simclr", "dataset": "cifar10", "backbone": "resnet18", "metric": "top-1", "protocol": protocol, "value": 90.0, "source": "a paper, Table 1"}
    return {**base, **changes}


def _published(tmp_path, records: list[dict], name: str = "mine.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"records": records}))
    return load_published(path)


def _table(metric: str, rows: tuple[TableRow, ...] = (TableRow("SimCLR", "simclr", published={"cifar10": "mine"}),)) -> PaperTable:
    return PaperTable(name="protocol-check", title="protocol check", source="this test", metric=metric, datasets=("cifar10",), rows=rows, common=COMMON)


def _report(table: PaperTable, published, overrides: list[str]):
    """The report of ``table`` (run with ``overrides``) from a ledger of one seed per cell: its
    cells, the published column of each, and the footnotes."""
    records, _ = table_ledger(table, 1, random.Random(0), overrides)
    cells = table_cells(table, records, published, overrides)
    assert all(c.n == 1 for c in cells)  # each cell found its result in the ledger
    wide, notes = wide_layout(table, cells)
    return cells, list(wide["cifar10 published"]), notes


def test_every_setting_is_changed_alone_below():
    assert [c.name for c in CHANGES if c.metric == "linear"] == list(LINEAR_SETTINGS)
    assert [c.name for c in CHANGES if c.metric == "knn"] == list(KNN_SETTINGS)


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: f"{c.metric}:{c.name}")
def test_a_cell_is_marked_exactly_when_one_setting_differs_and_its_footnote_names_it(tmp_path, change):
    table = _table(change.metric)
    context = [_set(name, value) for name, value in change.context.items()]
    stated = {**AS_RUN[change.metric], **change.context}
    published = _published(tmp_path, [_record(stated, kind=change.metric)])

    (cell,), (shown,), notes = _report(table, published, context)
    assert cell.protocol_differences == () and shown == "90.00 [1]" and DIFFERENT_PROTOCOL not in notes[0]

    if change.key is None:  # what the source did differs
        published = _published(tmp_path, [_record({**stated, change.name: change.value}, kind=change.metric)], "changed.yaml")
    else:  # what we ran differs
        context.append(_set(change.key, change.value))
    (cell,), (shown,), notes = _report(table, published, context)
    assert cell.protocol_differences == (change.expected,)
    assert shown == f"90.00{DIFFERENT_PROTOCOL} [1]" and f"{DIFFERENT_PROTOCOL} protocol differs: {change.expected} (as the test says)" in notes[0]


def test_cells_compared_with_one_record_under_different_settings_get_a_footnote_each(tmp_path):
    rows = (TableRow("SimCLR", "simclr", published={"cifar10": "mine"}), TableRow("SimCLR, last epoch", "simclr", config={"probe": {"report_epoch": "last"}}, published={"cifar10": "mine"}))
    published = _published(tmp_path, [_record(AS_RUN["linear"])])
    _, shown, notes = _report(_table("linear", rows), published, [])
    assert shown == ["90.00 [1]", f"90.00{DIFFERENT_PROTOCOL} [2]"]
    assert DIFFERENT_PROTOCOL not in notes[0] and "probe.report_epoch: best (theirs) vs last (ours)" in notes[1]


@pytest.mark.parametrize("left_out", [{"probe.report_epoch": UNSTATED}, {}], ids=["unstated", "absent"])
def test_a_setting_the_source_does_not_state_is_a_difference(tmp_path, left_out):
    stated = {k: v for k, v in AS_RUN["linear"].items() if k != "probe.report_epoch"}
    published = _published(tmp_path, [_record({**stated, **left_out})])
    (cell,), (shown,), notes = _report(_table("linear"), published, [])
    assert cell.protocol_differences == ("probe.report_epoch: not stated by the source",) and DIFFERENT_PROTOCOL in shown
    unknown_mode = _published(tmp_path, [_record(AS_RUN["linear"], protocol={"kind": "linear", "mode": "unstated", "settings": AS_RUN["linear"]})], "mode.yaml")
    assert _report(_table("linear"), unknown_mode, [])[0][0].protocol_differences == ("mode: not stated by the source",)


def test_a_setting_that_cannot_act_on_both_sides_is_not_compared_but_what_switches_it_is(tmp_path):
    adam = {k: v for k, v in AS_RUN["linear"].items() if k not in ("probe.optimizer.momentum", "probe.optimizer.nesterov")}
    published = _published(tmp_path, [_record({**adam, "probe.optimizer.name": "adam"})])
    (cell,), _, _ = _report(_table("linear"), published, [])
    assert cell.protocol_differences == ("probe.optimizer.name: adam (theirs) vs sgd (ours)",)  # no momentum line: Adam has none
    fast = {k: v for k, v in AS_RUN["linear"].items() if not k.startswith("probe.augment.")}
    published = _published(tmp_path, [_record({**fast, "probe.protocol": "fast", "probe.encoder_batchnorm": "eval"})], "fast.yaml")
    (cell,), _, _ = _report(_table("linear"), published, [])
    assert cell.protocol_differences == ("probe.protocol: fast (theirs) vs paper (ours)", "probe.encoder_batchnorm: eval (theirs) vs train (ours)")


# ---------------------------------------------------------------------------------------------
# The records' short-form fields


@pytest.mark.parametrize(
    "protocol, folded",
    [
        ({"kind": "linear", "mode": "offline", "epoch": "best"}, {"probe.report_epoch": "best"}),
        ({"kind": "linear", "mode": "offline", "epoch": "unstated", "k": None, "temperature": None}, {}),  # as the JSON of earlier versions wrote them
        ({"kind": "linear", "mode": "offline", "epoch": "last", "settings": {"probe.report_epoch": "last", "probe.epochs": 90}}, {"probe.report_epoch": "last", "probe.epochs": 90}),
        ({"kind": "knn", "mode": "online", "epoch": "best", "k": 200, "temperature": 0.1}, {"knn.report_epoch": "best", "knn.k": 200, "knn.temperature": 0.1}),
        ({"kind": "knn", "mode": "offline", "k": 200, "settings": {"knn.k": "unstated"}}, {"knn.k": 200}),
        ({"kind": "detection", "mode": "offline", "epoch": "last"}, {}),  # detection is compared by kind and mode only
    ],
)
def test_epoch_k_and_temperature_are_read_as_settings(tmp_path, protocol, folded):
    record = _published(tmp_path, [_record({}, protocol=protocol)])["mine"]
    assert record.protocol.settings == folded


@pytest.mark.parametrize(
    "protocol, fragment",
    [
        ({"kind": "linear", "mode": "offline", "epoch": "last", "settings": {"probe.report_epoch": "best"}}, "'records[mine].protocol.epoch' is last but settings.probe.report_epoch is best"),
        ({"kind": "knn", "mode": "offline", "k": 10, "settings": {"knn.k": 200}}, "'records[mine].protocol.k' is 10 but settings.knn.k is 200"),
        ({"kind": "linear", "mode": "offline", "k": 200}, "'records[mine].protocol.k' applies to knn protocols only"),
        ({"kind": "linear", "mode": "offline", "epoch": "first"}, "'records[mine].protocol.epoch' must be one of last, best, unstated"),
        ({"kind": "linear", "mode": "offline", "settings": {"probe.epoch": 100}}, "'records[mine].protocol.settings' names 'probe.epoch', not a setting of a linear protocol (did you mean 'probe.epochs'?)"),
        ({"kind": "linear", "mode": "offline", "settings": {"knn.k": 200}}, "'records[mine].protocol.settings' names 'knn.k', not a setting of a linear protocol"),
        ({"kind": "linear", "mode": "offline", "settings": {"probe.epochs": "many"}}, "'records[mine].protocol.settings.probe.epochs' must be int or unstated, got 'many'"),
        ({"kind": "linear", "mode": "offline", "settings": {"normalization": "cifar"}}, "'records[mine].protocol.settings.normalization' must be one of imagenet, cifar10"),
        ({"kind": "detection", "mode": "offline", "settings": {"probe.epochs": 1}}, "not a setting of a detection protocol"),
    ],
)
def test_a_contradicting_or_unknown_setting_is_a_one_line_error_naming_the_record(tmp_path, protocol, fragment):
    with pytest.raises(ConfigError) as err:
        _published(tmp_path, [_record({}, protocol=protocol)])
    assert fragment in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# The built-in records and the template


BUILT_IN = load_published()


@pytest.mark.parametrize("record", [r for r in BUILT_IN.values() if r.value is not None], ids=lambda r: r.id)
def test_every_built_in_number_states_every_setting_it_needs_or_says_unstated(record):
    settings = record.protocol.settings
    assert [name for name in required_settings(record.protocol.kind, settings) if name not in settings] == []
    if record.protocol.kind == "detection":
        assert settings == {}


def test_the_template_lists_every_setting_a_missing_record_needs_and_loads_back_filled_in(tmp_path):
    linear = {"kind": "linear", "mode": "offline", "epoch": "best", "settings": {"probe.protocol": "paper", "probe.optimizer.name": "sgd"}}
    knn = {"kind": "knn", "mode": "offline", "k": 200}
    missing = {"value": None, "missing": "read it in Table 1 of the paper"}
    records = _published(tmp_path, [_record({}, protocol=linear, **missing), _record({}, record_id="mine-knn", protocol=knn, **missing)])
    template = tmp_path / "template.yaml"
    template.write_text(template_text([records["mine"], records["mine-knn"]], template))

    listed = {r["id"]: r["protocol"]["settings"] for r in yaml.safe_load(template.read_text())["records"]}
    given = {"probe.protocol": "paper", "probe.optimizer.name": "sgd", "probe.report_epoch": "best"}
    # every linear setting that can act with SGD (not LARS's trust coefficient), the unknown ones unstated
    assert listed["mine"] == {name: given.get(name, UNSTATED) for name in LINEAR_SETTINGS if name != "probe.optimizer.lars_trust_coefficient"}
    assert listed["mine-knn"] == {name: 200 if name == "knn.k" else UNSTATED for name in KNN_SETTINGS}

    loaded = load_published(template)
    assert {k: loaded[k].protocol.settings for k in listed} == listed
    filled = template.read_text().replace("probe.optimizer.lr: unstated", "probe.optimizer.lr: 0.1", 1)
    template.write_text(filled)
    assert load_published(template)["mine"].protocol.settings["probe.optimizer.lr"] == 0.1


# ---------------------------------------------------------------------------------------------
# Our side


def test_our_settings_are_the_evaluation_as_it_runs():
    folder = resolve_config("simclr", "imagenet100", flags={"probe": {"image_size": None, "test_resize": None, "augment": None}, "pretrain": {"augment": {"crop_size": None, "crop_scale": [0.3, 1.0]}}})
    ours = our_settings(folder, "linear")
    assert list(ours) == list(LINEAR_SETTINGS)
    assert (ours["probe.image_size"], ours["probe.test_resize"], ours["probe.augment.crop_size"], ours["probe.augment.crop_scale"], ours["normalization"]) == (224, 256, 224, [0.3, 1.0], "imagenet")

    stl = resolve_config("simclr", "stl10", flags={"probe": {"image_size": None, "augment": {"crop_size": 32}}})
    ours = our_settings(stl, "knn")
    assert list(ours) == list(KNN_SETTINGS)
    assert (ours["probe.image_size"], ours["probe.test_resize"], ours["knn.report_epoch"]) == (96, None, "last")
    assert our_settings(stl, "linear")["probe.augment.crop_size"] == 32

    assert our_settings(resolve_config("cmc", "cifar10"), "linear")["normalization"] == "cmc-lab"  # CMC converts every image to L*a*b*
    shapes = get_dataset("shapes")
    assert our_settings(resolve_config("simclr", "shapes"), "linear")["normalization"] == {"mean": list(shapes.mean), "std": list(shapes.std)}
