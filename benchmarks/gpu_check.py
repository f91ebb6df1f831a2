"""One command that runs every CUDA path of hardneg-bench and measures its speed targets.

On a GPU machine, from the checkout (nothing is downloaded; torch, torchvision and the package's
dependencies must be installed):

    PYTHONPATH=. python benchmarks/gpu_check.py --out gpu-check

and in CI, on the CPU, at tiny sizes (so that the check cannot rot between GPU sessions):

    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu-check

Everything measured goes to ``--out``: ``gpu_check.json`` (every figure), ``gpu_check.md`` (each
figure beside its target), ``pytest.log`` and ``commands.log`` (the output of every command run).
Both files are rewritten after each section, so a run stopped from outside keeps what it measured.

The sections, in order of value; one whose estimate does not fit in the time left is not started
("not run: time budget"), and ``--only``/``--skip`` choose sections for a second call:

1. ``pytest``: every test marked ``cuda`` (the tests that run on a CUDA GPU only);
2. ``steps``: every method, a few bf16 training steps of its CIFAR-10 recipe (its backbone and
   batch) through the full pipeline (data on the device, batched augmentation), and one STL-10
   (96 px) and one ImageNet-100 (224 px) ResNet-50 case: losses finite, the objective given
   float32 inputs with autocast off, the encoders in bf16, no host synchronisation inside a step
   (``torch.cuda.set_sync_debug_mode("error")``), peak GPU memory, ms/step;
3. ``compiled``: the same for SimCLR and MoCo-v2 with ``--compile``, and SimCLR's compiled epoch;
4. ``end_to_end``: ``hardneg-bench run --method ring --dataset cifar10 --epochs 2`` on CIFAR-10 and
   CIFAR-100 files written here in the real pickle layout at full size (random images), then
   ``report``; then the same run stopped by SIGTERM in epoch 2 and resumed, against the first;
5. ``torchrun``: ``torchrun --standalone --nproc_per_node=1`` end to end (the process group: NCCL);
6. ``bench``: the GPU-speed targets (SimCLR ResNet-18 CIFAR-10 batch 512 epoch time, full pipeline
   over model only, over the PIL reference, data wait; STL-10 and ImageNet-100 ResNet-50 epochs;
   the fast probe on 50k images) and the model FLOP utilisation of the SimCLR step;
7. ``step_ratios``: the step time of each hard-negative method over its base framework's;
8. ``detection``: a few fine-tuning iterations of Faster R-CNN R50-C4 (MoCo's VOC detector) and
   Mask R-CNN R50-C4 (its COCO detector) on random COCO-sized images (2 an iteration at
   800 x 1067; 64 px with --quick): ms/iteration, peak memory, losses finite and in float32, the
   backbone in bf16, and one test image's time.

Targets are GPU targets: on the CPU the figures are shown and labelled, never judged.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks"), str(REPO / "tests")]

from hardneg_bench.bench import bench, objective_inputs, synthetic_images  # noqa: E402
from hardneg_bench.data.registry import get_dataset  # noqa: E402
from hardneg_bench.config import DETECTION_SCHEDULES  # noqa: E402
from hardneg_bench.detection.models import COCO_R50_C4, VOC_R50_C4, DetectorSpec, build_detector, tiny  # noqa: E402
from hardneg_bench.detection.solver import lr_factor  # noqa: E402
from hardneg_bench.detection.train import DetectorTrainer  # noqa: E402
from hardneg_bench.engine.batches import on_device, pretraining_batches  # noqa: E402
from hardneg_bench.engine.runtime import Runtime, device_name, resolve_device  # noqa: E402
from hardneg_bench.engine.trainer import Trainer  # noqa: E402
from hardneg_bench.methods import METHODS  # noqa: E402
from hardneg_bench.methods.hardness import HardnessTally  # noqa: E402
from hardneg_bench.recipes import resolve_config  # noqa: E402
from hardneg_bench.store import atomic_write_text, load_checkpoint  # noqa: E402
from step_time import step_ratios  # noqa: E402

from fake_datasets import write_fake_cifar  # noqa: E402

IMAGENET100_TRAIN_IMAGES_AT_MOST = 130_000
"""ImageNet-1k has at most 1,300 training images per class (732 to 1,300), so ImageNet-100's
training split has at most 130,000: the epoch-time figure is an upper bound."""


# -- the record --------------------------------------------------------------------------------


@dataclass
class Section:
    name: str
    title: str
    estimate_s: float
    """Seconds it is expected to take on the check's device and sizes (started only if they fit)."""
    status: str = "not run"
    reason: str = ""
    seconds: float = 0.0
    figures: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)
    targets: list = field(default_factory=list)

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        """A condition the section asserts (a failed one fails the section)."""
        self.checks.append({"what": what, "ok": bool(ok), "detail": detail})
        return bool(ok)

    def target(self, what: str, value: float | None, unit: str, bound: float, at_most: bool, judged: bool) -> None:
        """A speed target: ``value`` against ``bound`` (at most or at least); judged on a GPU only."""
        met = None if value is None or not judged else (value <= bound if at_most else value >= bound)
        self.targets.append({"what": what, "value": value, "unit": unit, "target": f"{'<=' if at_most else '>='} {bound:g}", "met": met})


class Check:
    """The run: device, sizes, deadline, output folder, and the sections with what they found."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.quick = args, args.quick
        self.device = resolve_device(args.device)
        self.cuda = self.device.type == "cuda"
        self.started = time.monotonic()
        self.deadline = self.started + args.budget
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="hardneg-gpu-check-"))
        self.sections: list[Section] = []
        self.log = self.out / "commands.log"
        self.log.write_text("")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, name: str, title: str, estimate: tuple[float, float], body: Callable[["Check", Section], None]) -> None:
        """Run one section (``estimate``: seconds on a GPU at full size, and with --quick)."""
        section = Section(name, title, estimate[1] if self.quick else estimate[0])
        self.sections.append(section)
        chosen = (not self.args.only or name in self.args.only) and name not in self.args.skip
        if not chosen:
            section.reason = "not chosen (--only/--skip)"
        elif self.left() < section.estimate_s:
            section.reason = f"time budget: {self.left():.0f} s left, the section needs about {section.estimate_s:.0f} s"
        else:
            started = time.monotonic()
            try:
                body(self, section)
                section.status = "passed" if all(c["ok"] for c in section.checks) else "failed"
            except Exception as err:  # a section that breaks is a finding, not the end of the check
                section.status, section.reason = "failed", f"{type(err).__name__}: {err}"
                section.figures["traceback"] = traceback.format_exc()[-4000:]
            section.seconds = round(time.monotonic() - started, 1)
            free_device_memory()
        print(f"[{time.monotonic() - self.started:6.1f} s] {name}: {section.status}{f' ({section.reason})' if section.reason else ''}", flush=True)
        self.write()

    def command(self, args: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run a command from the checkout (the package on PYTHONPATH); its output goes to commands.log."""
        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **(env or {})}
        timeout = max(timeout, 30 if self.quick else 60)  # a command started is given time to finish
        started = time.monotonic()
        try:
            done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=full_env, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            done = subprocess.CompletedProcess(args, 124, err.stdout or "", (err.stderr or "") + f"\n[timed out after {timeout:.0f} s]")
        with self.log.open("a") as log:
            log.write(f"$ {' '.join(args)}  # exit {done.returncode}, {time.monotonic() - started:.1f} s\n{done.stdout}{done.stderr}\n")
        return done

    def cli(self, args: list[str], runs: Path, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
        return self.command([sys.executable, "-m", "hardneg_bench", *args, "--runs-dir", str(runs)], timeout, env)

    def header(self) -> dict:
        return {
            "check": "hardneg-bench GPU check",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "device": device_name(self.device),
            "cuda": torch.version.cuda if self.cuda else None,
            "torch": torch.__version__,
            "quick": self.quick,
            "budget_s": self.args.budget,
            "elapsed_s": round(time.monotonic() - self.started, 1),
            "git_commit": git_commit(),
        }

    def write(self) -> None:
        record = {**self.header(), "sections": [vars(s) for s in self.sections]}
        atomic_write_text(self.out / "gpu_check.json", json.dumps(record, indent=1, default=str) + "\n")
        atomic_write_text(self.out / "gpu_check.md", markdown(record, self.cuda))


def git_commit() -> str | None:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() or None


def free_device_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def no_host_sync(device: torch.device):
    """On a GPU, any operation inside that makes the host wait for the device raises."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


# -- 1. pytest ---------------------------------------------------------------------------------


def pytest_section(check: Check, s: Section) -> None:
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py") if "mark.cuda" in p.read_text())
    s.figures["files"] = files
    done = check.command([sys.executable, "-m", "pytest", *files, "-m", "cuda", "-q", "-rA", "-p", "no:cacheprovider"], min(300, check.left() - 5))
    (check.out / "pytest.log").write_text(done.stdout + done.stderr)
    summary = next((line for line in reversed(done.stdout.splitlines()) if " in " in line and ("passed" in line or "skipped" in line or "failed" in line or "error" in line)), "")
    counts = {word: int(n) for n, word in (part.strip().split(" ")[:2] for part in summary.strip("= ").split(" in ")[0].split(",") if part.strip()[:1].isdigit())}
    s.figures.update(summary=summary.strip("= "), **{k: counts.get(k, 0) for k in ("passed", "failed", "skipped", "error", "errors")})
    if check.cuda:
        s.check("every CUDA test ran and passed", done.returncode == 0 and counts.get("passed", 0) > 0 and not counts.get("skipped"), summary)
    else:
        s.check("the CUDA tests are collected and skipped without a GPU", done.returncode == 0 and counts.get("skipped", 0) > 0 and not counts.get("passed"), summary)


# -- 2, 3. training steps ----------------------------------------------------------------------


def step_case(check: Check, method: str, dataset: str, overrides: list[str], compile_: bool = False, warmup: int = 3, steps: int = 5) -> dict:
    """A few training steps of ``method`` with its recipe for ``dataset`` (and ``overrides``)
    through the full pipeline; what they showed."""
    device = check.device
    cfg = resolve_config(method, dataset, overrides=overrides)
    spec, batch = get_dataset(dataset), cfg.pretrain.batch_size
    if check.cuda:
        torch.cuda.reset_peak_memory_stats(device)
    runtime = Runtime(device, num_workers=0, show_progress=False, compile=compile_)
    bank = spec.split_sizes.get(cfg.pretrain.split) or batch * (warmup + steps + 1)
    trainer = Trainer.build(cfg, spec, bank, steps_per_epoch=warmup + steps + 1, runtime=runtime)
    model = trainer.model.train()
    model.on_epoch_start(10**6)  # past warm-ups and annealing: the full objective
    batches = pretraining_batches(on_device(synthetic_images(spec, batch * (warmup + steps + 1)), device), cfg.pretrain.augment, spec, batch, device, 0, 0, model.views)
    started = time.perf_counter()
    first = next(batches)
    trainer.step(first)
    sync(device)
    first_step = time.perf_counter() - started
    for _ in range(warmup - 1):
        trainer.step(next(batches))
    inputs, autocast_in_objective = objective_inputs(trainer, first)
    dtypes = sorted({str(a.dtype).replace("torch.", "") for a in inputs if torch.is_tensor(a) and a.is_floating_point()})
    tally, losses, sync_error = HardnessTally(), [], None
    sync(device)
    started = time.perf_counter()
    try:
        with no_host_sync(device):
            for _ in range(steps):
                b = next(batches)
                losses.append(trainer.step(b, lambda b: tally.add(model.hardness(b))))
    except RuntimeError as err:  # the sync debug mode's error names the synchronising call
        sync_error = str(err).splitlines()[0]
    sync(device)
    seconds = time.perf_counter() - started
    values = torch.stack(losses).float().cpu() if losses else torch.empty(0)
    out = {
        "method": method,
        "dataset": dataset,
        "backbone": f"{cfg.model.backbone}" + (f" x{cfg.model.width:g}" if cfg.model.width != 1 else ""),
        "batch": batch,
        "crop": cfg.pretrain.augment.crop_size or spec.image_size,
        "precision": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "fp32",
        "compiled": compile_,
        "optimizer": type(trainer.optimizer).__name__ + (" (fused)" if trainer.optimizer.defaults.get("fused") else ""),
        "ms_per_step": 1000 * seconds / steps if not sync_error else None,
        "images_per_s": batch * steps / seconds if not sync_error else None,
        "first_step_s": round(first_step, 2),
        "peak_memory_mib": round(torch.cuda.max_memory_allocated(device) / 2**20) if check.cuda else None,
        "weights_mib": round(sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]) / 2**20),
        "losses": [round(v, 5) for v in values.tolist()],
        "loss_dtype": str(losses[0].dtype).replace("torch.", "") if losses else None,
        "objective_input_dtypes": dtypes,
        "autocast_in_objective": autocast_in_objective,
        "host_sync": sync_error,
    }
    del trainer, model, batches, first, inputs, losses
    free_device_memory()
    return out


def judge_steps(check: Check, s: Section, case: dict) -> None:
    label = f"{case['method']} on {case['dataset']} ({case['backbone']}, batch {case['batch']}{', compiled' if case['compiled'] else ''})"
    s.check(f"{label}: losses finite", bool(case["losses"]) and all(math.isfinite(v) for v in case["losses"]), str(case["losses"]))
    s.check(f"{label}: objective in float32, autocast off", case["objective_input_dtypes"] == ["float32"] and not case["autocast_in_objective"] and case["loss_dtype"] == "float32", f"inputs {case['objective_input_dtypes']}, autocast {case['autocast_in_objective']}")
    if check.cuda:
        s.check(f"{label}: encoders in bf16", case["precision"] == "bfloat16", case["precision"])
        s.check(f"{label}: no host synchronisation in a step", case["host_sync"] is None, case["host_sync"] or "")
        s.check(f"{label}: fused optimizer", case["optimizer"].endswith("(fused)") or case["optimizer"] == "LARS", case["optimizer"])


def step_cases(check: Check) -> list[tuple[str, str, list[str]]]:
    if check.quick:
        tiny = ["model.backbone=tiny", "pretrain.batch_size=48"]  # SSCL's 64 hardest of 2B - 2 negatives
        return [*((m, "shapes", tiny) for m in sorted(METHODS)), ("simclr", "stl10", ["model.backbone=tiny", "pretrain.batch_size=8"]), ("moco-v2", "imagenet100", ["model.backbone=tiny", "pretrain.batch_size=8"])]
    # STL-10's recipe (ResNet-50, CIFAR stem at 96 px) at batch 64: at its batch of 256 the saved
    # activations alone (about 95 GiB in bf16, counted on the CPU) outgrow an 80 GB GPU
    return [*((m, "cifar10", []) for m in sorted(METHODS)), ("simclr", "stl10", ["pretrain.batch_size=64"]), ("moco-v2", "imagenet100", [])]


def steps_section(check: Check, s: Section) -> None:
    s.figures["cases"] = []
    for method, dataset, overrides in step_cases(check):
        if check.left() < (3 if check.quick else 15):
            s.figures["not_run"] = s.figures.get("not_run", []) + [f"{method} on {dataset}"]
            continue
        try:
            case = step_case(check, method, dataset, overrides, warmup=1 if check.quick else 3, steps=2 if check.quick else 5)
        except Exception as err:  # one method that breaks does not hide the others
            s.check(f"{method} on {dataset}: steps ran", False, f"{type(err).__name__}: {err}")
            free_device_memory()
            continue
        s.figures["cases"].append(case)
        judge_steps(check, s, case)
    s.check("every case ran", "not_run" not in s.figures, ", ".join(s.figures.get("not_run", [])))


def compiled_section(check: Check, s: Section) -> None:
    """SimCLR's and MoCo-v2's steps compiled (checked as eager steps are), and SimCLR's compiled
    epoch. With --quick on the CPU the backend is dynamo's ``eager`` (the code is traced, nothing
    is generated): compiling with inductor takes minutes on two cores."""
    if check.quick:
        original = torch.nn.Module.compile
        torch.nn.Module.compile = lambda self, **kwargs: original(self, backend="eager", **kwargs)
        s.figures["backend"] = "eager (--quick)"
    try:
        tiny = ["model.backbone=tiny", "pretrain.batch_size=48"]
        # SimCLR as bench times it below (its compiled graphs are then reused), MoCo-v2 as its recipe
        cases = [("simclr", ["model.backbone=resnet18", "pretrain.batch_size=512"]), ("moco-v2", [])]
        s.figures["cases"] = []
        for method, overrides in cases:
            case = step_case(check, method, "shapes" if check.quick else "cifar10", tiny if check.quick else overrides, compile_=True, warmup=1 if check.quick else 3, steps=2 if check.quick else 5)
            s.figures["cases"].append(case)
            judge_steps(check, s, case)
        s.figures["bench"] = figures = simclr_cifar_bench(check, compile_=True)
        s.target(f"{label(figures)}, compiled: epoch", figures["epoch_seconds"], "s", 1.0, True, check.cuda)
    finally:
        if check.quick:
            torch.nn.Module.compile = original


# -- 4. end to end -----------------------------------------------------------------------------


def ledger(runs: Path) -> list[dict]:
    path = runs / "ledger.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def numbers(records: list[dict], method: str) -> dict:
    """Each stage's figures of ``method``'s records, by stage (and evaluation dataset)."""
    out = {}
    for r in records:
        if r["method"] == method:
            m = r["metrics"]
            key = r["stage"] + (f" {r['eval_dataset']}" if r.get("eval_dataset") else "")
            out[key] = {k: m[k] for k in ("final_loss", "test_accuracy", "images_per_s", "train_seconds", "process_group", "processes") if k in m}
    return out


def end_to_end_section(check: Check, s: Section) -> None:
    root = check.work / "data"
    n_train, n_test = (640, 128) if check.quick else (50_000, 10_000)
    started = time.monotonic()
    for classes in (10, 100):
        write_fake_cifar(root, classes, n_train, n_test)
    s.figures["data"] = f"CIFAR-10 and CIFAR-100 pickles, {n_train:,} + {n_test:,} random images each, written in {time.monotonic() - started:.1f} s"
    size = ["--backbone", "tiny", "--batch-size", "64", "--set", "probe.epochs=5"] if check.quick else []
    run = ["run", "--method", "ring", "--dataset", "cifar10", "--epochs", "2", "--data-root", str(root), "--no-download", "--no-progress", "--device", str(check.device), *size]
    batch = 64 if check.quick else resolve_config("ring", "cifar10").pretrain.batch_size
    steps = n_train // batch

    straight = check.work / "runs-straight"
    done = check.cli(run, straight, check.left() - 5)
    s.check("run: exit 0", done.returncode == 0, done.stderr.strip()[-500:])
    records = ledger(straight)
    stages = sorted({r["stage"] for r in records})
    s.check("run: pretrain, probe, knn and transfer recorded", stages == ["knn", "pretrain", "probe", "transfer"], str(stages))
    s.figures["run"] = {"command": "hardneg-bench " + " ".join(run), "numbers": numbers(records, "ring"), "random_init": numbers(records, "random-init"), "printed": done.stdout.strip()[-2000:]}

    shown = check.cli(["report", "--runs", "--format", "markdown", "--no-write"], straight, check.left() - 5)
    s.check("report: exit 0, shows the ring row", shown.returncode == 0 and "ring" in shown.stdout, shown.stderr.strip()[-300:])
    s.figures["report"] = shown.stdout.strip()[-3000:]

    stopped = check.work / "runs-stopped"
    kill_at = steps + steps // 2
    resumed_run = [*run, "--set", "random_init_baseline=false"]
    done = check.cli(resumed_run, stopped, check.left() - 5, env={"HARDNEG_BENCH_KILL_AT": f"step:{kill_at}:SIGTERM"})
    s.check("SIGTERM in epoch 2: exit 143", done.returncode == 143, f"exit {done.returncode}: {done.stderr.strip()[-300:]}")
    checkpoints = list(stopped.glob("pretrain/*/checkpoint.pt"))
    state = load_checkpoint(checkpoints[0], checkpoints[0].parent.name, torch.device("cpu")) if checkpoints else None
    where = (state["epoch"], state["step"]) if state else None
    s.check("a checkpoint of that very step", where == (1, steps // 2), f"checkpoint at (epoch, step) {where}, expected (1, {steps // 2})")
    done = check.cli(resumed_run, stopped, check.left() - 5)
    s.check("resumed: exit 0", done.returncode == 0, done.stderr.strip()[-500:])
    straight_numbers, resumed_numbers = numbers(records, "ring"), numbers(ledger(stopped), "ring")
    s.figures["resumed"] = resumed_numbers
    compare_resumed(check, s, straight_numbers, resumed_numbers)


def compare_resumed(check: Check, s: Section, straight: dict, resumed: dict) -> None:
    """On the CPU the resumed run must give exactly the uninterrupted run's numbers. GPU kernels
    are not bit-deterministic (cuDNN's autotuned convolutions, atomic additions), so on a GPU the
    differences are reported and must stay within run-to-run noise: 1% of the loss, 1 point of
    accuracy."""
    deltas = {}
    for stage in sorted(set(straight) | set(resumed)):
        for name in ("final_loss", "test_accuracy"):
            if name in straight.get(stage, {}):
                a, b = straight[stage][name], resumed.get(stage, {}).get(name)
                deltas[f"{stage} {name}"] = None if b is None else b - a
    s.figures["resumed_minus_straight"] = deltas
    exact = bool(deltas) and all(d == 0 for d in deltas.values())
    s.figures["exactly_equal"] = exact
    if not check.cuda:
        s.check("resumed run equals the uninterrupted one exactly", exact, str(deltas))
        return
    loss = straight.get("pretrain", {}).get("final_loss")
    within = bool(deltas) and all(d is not None and abs(d) <= (0.01 * abs(loss) if "loss" in k else 1.0) for k, d in deltas.items())
    s.check("resumed run equals the uninterrupted one within GPU noise (1% loss, 1 point)", within, str(deltas))


# -- 5. torchrun -------------------------------------------------------------------------------


def torchrun_section(check: Check, s: Section) -> None:
    root = check.work / "data"
    if not (root / "cifar-10-batches-py").is_dir():
        n_train, n_test = (640, 128) if check.quick else (50_000, 10_000)
        for classes in (10, 100):
            write_fake_cifar(root, classes, n_train, n_test)
    runs = check.work / "runs-torchrun"
    size = ["--backbone", "tiny", "--batch-size", "64", "--set", "probe.epochs=5"] if check.quick else ["--backbone", "resnet18"]
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "hardneg_bench", "run", "--method", "simclr", "--dataset", "cifar10", "--epochs", "1",
            "--data-root", str(root), "--no-download", "--no-progress", "--device", str(check.device), "--runs-dir", str(runs), "--set", "random_init_baseline=false", *size]
    done = check.command(args, check.left() - 5, env={"OMP_NUM_THREADS": "1"} if not check.cuda else None)
    s.check("torchrun: exit 0", done.returncode == 0, done.stderr.strip()[-500:])
    pretrain = next((r["metrics"] for r in ledger(runs) if r["stage"] == "pretrain"), {})
    expected = "nccl" if check.cuda else "gloo"
    s.figures.update(command="torchrun " + " ".join(args[3:]), numbers=numbers(ledger(runs), "simclr"))
    s.check(f"one process in a {expected} process group", pretrain.get("process_group") == expected and pretrain.get("processes") == 1, f"process_group {pretrain.get('process_group')}, processes {pretrain.get('processes')}")


# -- 6. bench ----------------------------------------------------------------------------------


def bench_case(check: Check, method: str, dataset: str, overrides: list[str], compile_: bool = False, reference: bool = False, probe_images: int = 0) -> dict:
    cfg = resolve_config(method, dataset, overrides=overrides)
    workers = 0 if check.quick else min(16, os.cpu_count() or 1)
    runtime = Runtime(check.device, num_workers=workers, show_progress=False, compile=compile_)
    steps, warmup, rounds = (2, 1, 1) if check.quick else (20, 5, 3)  # quick: one round, to stay within its budget
    started = time.monotonic()
    figures = bench(cfg, get_dataset(dataset), runtime, steps, warmup, reference=reference, probe_images=probe_images, rounds=rounds)
    figures["wall_s"] = round(time.monotonic() - started, 1)
    images = figures["pretrain_images"] or (IMAGENET100_TRAIN_IMAGES_AT_MOST if dataset == "imagenet100" else None)
    if images and figures["peak_tflops"]:
        figures["epoch_seconds_at_peak"] = figures["flops_per_image"] * images / (figures["peak_tflops"] * 1e12)
    free_device_memory()
    return figures


def label(f: dict) -> str:
    """What a bench figure was measured on, as it was run."""
    stem = f" ({f['stem']} stem)" if f["stem"] else ""
    return f"{f['method']}, {f['backbone']}{stem}, {f['dataset']} {f['crop_size']} px, batch {f['batch_size']}"


def simclr_cifar_bench(check: Check, compile_: bool = False, reference: bool = False, probe_images: int = 0) -> dict:
    if check.quick:
        return bench_case(check, "simclr", "shapes", ["model.backbone=tiny", "pretrain.batch_size=48"], compile_, reference, probe_images and 256)
    return bench_case(check, "simclr", "cifar10", ["model.backbone=resnet18", "pretrain.batch_size=512"], compile_, reference, probe_images)


def bench_section(check: Check, s: Section) -> None:
    judged = check.cuda
    cifar = s.figures["simclr_32px"] = simclr_cifar_bench(check, reference=True, probe_images=50_000)
    r = cifar["ratios"]
    s.target(f"{label(cifar)}: epoch (eager)", cifar["epoch_seconds"], "s", 1.5, True, judged)
    s.target("... waiting for data", 100 * cifar["full"]["data_wait_fraction"], "% of the step", 2, True, judged)
    s.target("... full pipeline / model only", r["full_over_model_only"], "x", 0.90, False, judged)
    s.target("... full pipeline / PIL DataLoader reference", r["full_over_reference"], "x", 5, False, judged)
    s.target(f"fast linear probe, {cifar['probe_images'][0]:,} + {cifar['probe_images'][1]:,} images", cifar.get("probe_seconds"), "s", 15, True, judged)
    s.figures["mfu"] = {"mfu": cifar["mfu"], "achieved_tflops": cifar["achieved_tflops"], "peak_tflops": cifar["peak_tflops"], "flops_per_image": cifar["flops_per_image"]}
    # STL-10 at 96 px with the ImageNet stem, as solo-learn trains it (solo-learn@c980e9e
    # solo/methods/base.py: the CIFAR stem for CIFAR only); the recipe's CIFAR stem is
    # 15.6x the FLOPs, 14.9 s an epoch at the H100's peak (docs/benchmarks.md), timed in ``steps``
    stl = guarded_bench(check, s, "simclr_96px", "simclr", "stl10", ["model.backbone=tiny", "pretrain.batch_size=8"] if check.quick else ["model.stem=imagenet"])
    if stl:
        s.target(f"{label(stl)}: epoch ({stl['pretrain_images']:,} images)", stl["epoch_seconds"], "s", 8, True, judged)
    in100 = guarded_bench(check, s, "moco_v2_224px", "moco-v2", "imagenet100", ["model.backbone=tiny", "pretrain.batch_size=8"] if check.quick else [])
    if in100:
        epoch = in100["epoch_seconds_at_most"] = IMAGENET100_TRAIN_IMAGES_AT_MOST / in100["full"]["images_per_s"]
        s.target(f"{label(in100)}, on-device path: epoch (at most {IMAGENET100_TRAIN_IMAGES_AT_MOST:,} images)", epoch, "s", 50, True, judged)
        s.target("... waiting for data", 100 * in100["full"]["data_wait_fraction"], "% of the step", 5, True, judged)


def guarded_bench(check: Check, s: Section, name: str, method: str, dataset: str, overrides: list[str]) -> dict | None:
    """One more bench case if the time left allows; a case that breaks (out of memory, say) is a
    failed check, and the others still run."""
    if check.left() < (5 if check.quick else 40):
        return s.check(f"{name}: within the time budget", False, f"{check.left():.0f} s left") and None
    try:
        figures = s.figures[name] = bench_case(check, method, dataset, overrides)
    except Exception as err:
        free_device_memory()
        return s.check(f"{name}: ran", False, f"{type(err).__name__}: {str(err).splitlines()[0]}") and None
    return figures


# -- 7. step ratios ----------------------------------------------------------------------------


def step_ratios_section(check: Check, s: Section) -> None:
    if check.quick:
        rows = step_ratios("shapes", "tiny", 48, 256, check.device, rounds=1, steps=1)
    else:
        rows = step_ratios("cifar10", "resnet18", 256, 50_000, check.device, rounds=3, steps=3)
    s.figures["rows"] = rows
    for row in rows:
        s.target(f"{row['method']} step / {row['base']} step", row["ratio"], "x", 1.10, True, check.cuda)


# -- 8. detection ------------------------------------------------------------------------------


def detection_batch(spec: DetectorSpec, images: int, height: int, width: int, seed: int = 0) -> list:
    """``images`` random uint8 images with 4 random boxes each (and their masks, filled boxes, for
    a mask detector), as the training loader hands them to the detector."""
    generator = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(images):
        corner = torch.rand(4, 2, generator=generator) * torch.tensor([width * 0.6, height * 0.6])
        side = (0.1 + 0.3 * torch.rand(4, 2, generator=generator)) * torch.tensor([width, height])
        boxes = torch.cat([corner, corner + side], dim=1).round()
        target = {"boxes": boxes, "labels": torch.randint(1, spec.num_classes + 1, (4,), generator=generator)}
        if spec.task == "mask":
            masks = torch.zeros(4, height, width, dtype=torch.uint8)
            for mask, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
                mask[y0:y1, x0:x1] = 1
            target["masks"] = masks
        batch.append((torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator), target))
    return batch


def detection_case(check: Check, name: str, spec: DetectorSpec, images: int, height: int, width: int, warmup: int, iterations: int) -> dict:
    """A few fine-tuning iterations of the detector ``spec`` (at the start of MoCo's VOC schedule:
    warm-up rates) on random images, then one test image; what they showed."""
    device = check.device
    torch.manual_seed(0)
    trainer = DetectorTrainer.build(build_detector(spec), 0.02, "auto", device)
    backbone_dtypes: list[str] = []
    trainer.model.backbone.conv1.register_forward_hook(lambda module, args, out: backbone_dtypes.append(str(out.dtype).replace("torch.", "")))
    batch, schedule = detection_batch(spec, images, height, width), DETECTION_SCHEDULES["voc-24k"]
    if check.cuda:
        torch.cuda.reset_peak_memory_stats(device)
    trainer.model.train()
    started = time.perf_counter()
    trainer.step(batch, 0.02 * lr_factor(0, schedule))
    sync(device)
    first = time.perf_counter() - started
    for i in range(1, warmup):
        trainer.step(batch, 0.02 * lr_factor(i, schedule))
    sync(device)
    losses, started = [], time.perf_counter()
    for i in range(warmup, warmup + iterations):
        losses.append(trainer.step(batch, 0.02 * lr_factor(i, schedule)))
    sync(device)
    seconds = time.perf_counter() - started
    trainer.model.eval()
    with torch.no_grad():
        images_on_device, _ = trainer.on_device(batch[:1])
        trainer.model(images_on_device)  # the test size's first pass
        sync(device)
        tested = time.perf_counter()
        trainer.model(images_on_device)
        sync(device)
    out = {
        "detector": name,
        "images_per_iteration": images,
        "image_size": f"{height}x{width}",
        "precision": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "fp32",
        "backbone_dtype": backbone_dtypes[0] if backbone_dtypes else None,
        "ms_per_iteration": round(1000 * seconds / iterations, 1),
        "first_iteration_s": round(first, 2),
        "test_ms_per_image": round(1000 * (time.perf_counter() - tested), 1),
        "peak_memory_mib": round(torch.cuda.max_memory_allocated(device) / 2**20) if check.cuda else None,
        "losses": {k: [round(float(step[k]), 5) for step in losses] for k in losses[0]},
        "loss_dtypes": sorted({str(v.dtype).replace("torch.", "") for step in losses for v in step.values()}),
    }
    # MoCo's VOC schedule on one device at this speed: 24k iterations of 16 images
    out["voc_24k_hours_one_device"] = round(schedule.iterations * 16 / images * seconds / iterations / 3600, 1)
    del trainer, batch
    free_device_memory()
    return out


def detection_section(check: Check, s: Section) -> None:
    if check.quick:
        cases = [("Faster R-CNN R50-C4 (VOC), tiny", tiny(VOC_R50_C4), 2, 64, 64), ("Mask R-CNN R50-C4 (COCO), tiny", tiny(COCO_R50_C4), 2, 64, 64)]
    else:  # 800 x 1067: a 480 x 640 COCO image at the test size (shorter side 800)
        cases = [("Faster R-CNN R50-C4 (VOC)", replace(VOC_R50_C4, min_size_train=(800,)), 2, 800, 1067), ("Mask R-CNN R50-C4 (COCO)", replace(COCO_R50_C4, min_size_train=(800,)), 2, 800, 1067)]
    s.figures["detectors"] = []
    threads = torch.get_num_threads()
    for name, spec, images, height, width in cases:
        if not check.cuda:
            torch.set_num_threads(1)  # tiny tensors: a second thread's synchronisation costs more than it saves (20x on two busy cores)
        try:
            case = detection_case(check, name, spec, images, height, width, warmup=1 if check.quick else 3, iterations=2 if check.quick else 5)
        finally:
            torch.set_num_threads(threads)
        s.figures["detectors"].append(case)
        values = [v for series in case["losses"].values() for v in series]
        s.check(f"{name}: losses finite", bool(values) and all(math.isfinite(v) for v in values), str(case["losses"]))
        s.check(f"{name}: losses in float32", case["loss_dtypes"] == ["float32"], str(case["loss_dtypes"]))
        if check.cuda:
            s.check(f"{name}: backbone in bf16", case["precision"] == "bfloat16" and case["backbone_dtype"] == "bfloat16", f"{case['precision']}, backbone {case['backbone_dtype']}")


# -- the summary -------------------------------------------------------------------------------


def markdown(record: dict, judged: bool) -> str:
    def value(v) -> str:
        return "—" if v is None else (f"{v:,.3g}" if isinstance(v, float) else str(v))

    where = "" if judged else " These are CPU figures (no GPU): the targets are for a GPU and are not judged here."
    lines = [
        f"# hardneg-bench GPU check: {record['device']}",
        "",
        f"{record['date']}, torch {record['torch']}" + (f", CUDA {record['cuda']}" if record["cuda"] else "") + f", commit {record['git_commit']}, {record['elapsed_s']} s of a {record['budget_s']} s budget"
        + (", --quick (tiny sizes)" if record["quick"] else "") + f". Command: `{record['command']}`.{where}",
        "",
        "| section | status | seconds | note |",
        "| --- | --- | --- | --- |",
    ]
    for s in record["sections"]:
        failed = [c["what"] for c in s["checks"] if not c["ok"]]
        met = [t for t in s["targets"] if t["met"]]
        note = s["reason"] or "; ".join(
            part
            for part in (
                ("failed: " + "; ".join(failed)) if failed else (f"{len(s['checks'])} checks held" if s["checks"] else ""),
                (f"{len(met)} of {len(s['targets'])} targets met" if judged else f"{len(s['targets'])} figures for targets (not judged on the CPU)") if s["targets"] else "",
            )
            if part
        )
        lines.append(f"| {s['name']}: {s['title']} | {s['status']} | {s['seconds']} | {note} |")
    lines += ["", "## Targets", "", "| section | figure | measured | target | met |", "| --- | --- | --- | --- | --- |"]
    for s in record["sections"]:
        for t in s["targets"]:
            met = {True: "yes", False: "**no**", None: "not judged (CPU)" if not judged else "—"}[t["met"]]
            lines.append(f"| {s['name']} | {t['what']} | {value(t['value'])} {t['unit']} | {t['target']} {t['unit']} | {met} |")
    for s in record["sections"]:
        lines += ["", f"## {s['name']}: {s['title']}", "", f"Status: {s['status']}" + (f" ({s['reason']})" if s["reason"] else "") + "."]
        if s["checks"]:
            lines += [""] + [f"- {'ok' if c['ok'] else '**FAILED**'}: {c['what']}" + (f" ({c['detail']})" if c["detail"] and not c["ok"] else "") for c in s["checks"]]
        cases = s["figures"].get("cases")
        if cases:
            lines += ["", "| method | dataset | backbone | batch | crop | precision | optimizer | ms/step | images/s | first step (s) | peak MiB (weights) | objective inputs | host sync |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
            for c in cases:
                lines.append(f"| {c['method']}{' (compiled)' if c['compiled'] else ''} | {c['dataset']} | {c['backbone']} | {c['batch']} | {c['crop']} | {c['precision']} | {c['optimizer']} | {value(c['ms_per_step'])} | {value(c['images_per_s'])} | {c['first_step_s']} | {value(c['peak_memory_mib'])} ({c['weights_mib']}) | {', '.join(c['objective_input_dtypes'])}, autocast {'on' if c['autocast_in_objective'] else 'off'} | {c['host_sync'] or 'none'} |")
        detectors = s["figures"].get("detectors")
        if detectors:
            lines += ["", "| detector | images x size | precision (backbone) | ms/iteration | first iteration (s) | peak MiB | last losses | test ms/image | VOC 24k on one device (h) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
            for d in detectors:
                last = ", ".join(f"{k} {v[-1]:.3f}" for k, v in d["losses"].items())
                lines.append(f"| {d['detector']} | {d['images_per_iteration']} x {d['image_size']} | {d['precision']} ({d['backbone_dtype']}) | {d['ms_per_iteration']} | {d['first_iteration_s']} | {value(d['peak_memory_mib'])} | {last} | {d['test_ms_per_image']} | {d['voc_24k_hours_one_device']} |")
        rows = s["figures"].get("rows")
        if rows:
            lines += ["", "| method | base | step ms | base step ms | ratio |", "| --- | --- | --- | --- | --- |"]
            lines += [f"| {r['method']} | {r['base']} | {r['step_ms']:.1f} | {r['base_step_ms']:.1f} | {r['ratio']:.3f} |" for r in rows]
        for name, f in s["figures"].items():
            if isinstance(f, dict) and "full" in f and "model_only" in f:
                lines += ["", f"`{name}`: {label(f)} ({f['data']} images), {f['precision']}{', compiled' if f['compile'] else ''}: "
                          f"full {f['full']['images_per_s']:,.0f} img/s ({f['full']['step_ms']:.1f} ms/step, data wait {100 * f['full']['data_wait_fraction']:.1f}%), model only {f['model_only']['images_per_s']:,.0f} img/s ({f['model_only']['step_ms']:.1f} ms)"
                          + (f", PIL reference {f['reference']['images_per_s']:,.0f} img/s" if "reference" in f else "")
                          + f"; augmentation {value(f['augment_ms_per_step'])} ms/step, objective alone {f['objective_ms_per_step']:.2f} ms/step; {f['flops_per_image'] / 1e9:.2f} GFLOP/image, {f['achieved_tflops']:.1f} TFLOP/s, MFU {value(f['mfu'])}"
                          + (f"; epoch {f['epoch_seconds']:.2f} s" if f.get("epoch_seconds") else "")
                          + (f" (at the peak: {f['epoch_seconds_at_peak']:.2f} s)" if f.get("epoch_seconds_at_peak") else "")
                          + (f"; fast probe {f['probe_seconds']:.1f} s" if "probe_seconds" in f else "") + "."]
        for name in ("data", "run", "resumed", "resumed_minus_straight", "exactly_equal", "numbers", "command", "summary", "backend", "mfu", "not_run"):
            if name in s["figures"] and name != "run":
                lines += ["", f"{name}: `{json.dumps(s['figures'][name], default=str)}`"]
        if "run" in s["figures"]:
            lines += ["", f"run: `{s['figures']['run']['command']}`", "", "```", s["figures"]["run"]["printed"], "```"]
        if "traceback" in s["figures"]:
            lines += ["", "```", s["figures"]["traceback"], "```"]
    return "\n".join(lines) + "\n"


SECTIONS = ("pytest", "steps", "compiled", "end_to_end", "torchrun", "bench", "step_ratios", "detection")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json, gpu_check.md and the logs")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cuda, cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI on the CPU: under a minute)")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole check (default 450; 90 with --quick, which takes about 50 on two cores)")
    parser.add_argument("--only", nargs="*", default=[], choices=SECTIONS, help="run these sections only")
    parser.add_argument("--skip", nargs="*", default=[], choices=SECTIONS, help="leave these sections out")
    args = parser.parse_args(argv)
    args.budget = args.budget or (90.0 if args.quick else 450.0)
    check = Check(args)
    # (seconds on a GPU at full size, seconds with --quick on two CPU cores)
    check.run("pytest", "the tests that run on CUDA only", (60, 10), pytest_section)
    check.run("steps", "every method's bf16 training steps", (80, 4), steps_section)
    check.run("compiled", "compiled steps (SimCLR, MoCo-v2) and SimCLR's compiled epoch", (150, 8), compiled_section)
    check.run("end_to_end", "run, report, SIGTERM and resume on CIFAR-10 files", (150, 20), end_to_end_section)
    check.run("torchrun", "torchrun with one process", (40, 8), torchrun_section)
    check.run("bench", "the GPU-speed targets and the MFU", (60, 5), bench_section)
    check.run("step_ratios", "hard-negative step / base step", (40, 3), step_ratios_section)
    check.run("detection", "Faster and Mask R-CNN R50-C4 fine-tuning iterations", (40, 8), detection_section)
    shutil.rmtree(check.work, ignore_errors=True)  # the data and run stores it wrote; the logs stay in --out
    print((check.out / "gpu_check.md").read_text())
    return 1 if any(s.status == "failed" for s in check.sections) else 0


if __name__ == "__main__":
    sys.exit(main())
