"""The micro model's runs: each variant trained from scratch (with or without distillation), exported to int8,
measured (accuracy, size, MACs, TFLM arena), and the selection among them.

A run's results live in <work>/micro/runs/<run>/result.json; a finished run is reused, not retrained.
TensorFlow is imported inside the training functions only (importing training must not load it).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from masklite.card import InputSpec
from masklite.classifier import Classifier, normalize, preprocess
from masklite.files import write_bytes_atomic
from training.export import representative_indices, to_tflite_int8
from training.features import input_spec
from training.head import seed_everything
from training.micro.data import MICRO_DIR, load_teacher, load_views
from training.micro.entry import MAX_ARENA_BYTES, MAX_FILE_BYTES, SELECT_TIE
from training.micro.net import NetConfig, build_micro_net, with_softmax
from training.micro.tflm import count_macs, min_arena
from training.scores import classification_metrics, summary


@dataclass(frozen=True)
class RunConfig:
    net: NetConfig
    distill: bool = True
    alpha: float = 0.7  # weight of the distillation term
    temperature: float = 4.0
    epochs: int = 3  # passes over all train views (clean + augmented)
    batch_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 0

    @property
    def name(self) -> str:
        n = self.net
        return (
            f"a{n.alpha:g}-{n.size}px-last{n.last_channels}-{'kd' if self.distill else 'ce'}-e{self.epochs}"
        )

    def to_dict(self) -> dict:
        return asdict(self) | {"name": self.name}


# The variants tried: input size and the width of the last 1x1 conv (keras' MobileNetV2 fixes it at 1280).
VARIANTS: dict[str, NetConfig] = {
    "96": NetConfig(size=96, alpha=0.35, last_channels=1280),
    "96s": NetConfig(size=96, alpha=0.35, last_channels=256),
    "64s": NetConfig(size=64, alpha=0.35, last_channels=256),
    "48s": NetConfig(size=48, alpha=0.35, last_channels=256),
}
# The runs behind the shipped model and reports/micro.md: variant:kd|ce:epochs. `ce` = hard labels only (the
# distillation comparison). `96` (last conv 1280) is over the flash budget untrained, so it is never trained.
DEFAULT_RUNS = "64s:kd:3,64s:ce:3,96s:kd:3,64s:kd:6,96s:kd:5,96:kd:6"


@dataclass
class RunResult:
    config: dict
    keras: dict = field(default_factory=dict)
    int8: dict = field(default_factory=dict)
    file_bytes: int = 0
    arena: dict = field(default_factory=dict)
    macs: dict = field(default_factory=dict)
    train_seconds: float = 0.0
    history: dict = field(default_factory=dict)
    skipped: str = ""  # why it was not trained (over a budget already untrained: size and arena do not depend
    # on the weights' values)


def runs_dir(work: Path) -> Path:
    return work / MICRO_DIR / "runs"


def micro_spec(size: int) -> InputSpec:
    """Same preprocessing as the main model (x = pixel / 127.5 - 1, RGB), only the size differs."""
    return input_spec(size)


# ---------------------------------------------------------------- train


def _distill_loss(num_classes: int, alpha: float, temperature: float):
    """y_true = [one-hot labels | teacher logits]; y_pred = student logits."""
    import keras
    from keras import ops

    def loss(y_true, logits):
        hard, teacher = y_true[:, :num_classes], y_true[:, num_classes:]
        ce = keras.losses.categorical_crossentropy(hard, logits, from_logits=True)
        if alpha == 0:
            return ce
        p_t = ops.softmax(teacher / temperature, axis=-1)
        log_p_s = ops.log_softmax(logits / temperature, axis=-1)
        kd = ops.sum(p_t * (ops.log(ops.maximum(p_t, 1e-8)) - log_p_s), axis=-1) * temperature**2
        return (1 - alpha) * ce + alpha * kd

    return loss


def train_run(
    work: Path, cfg: RunConfig, num_classes: int, progress: bool = True
) -> tuple[object, dict, float]:
    """Train one student from scratch on all train views (+ random h-flip). Returns (model, history, s)."""
    import keras
    import tensorflow as tf

    seed_everything(cfg.seed)
    spec = micro_spec(cfg.net.size)
    train, val = load_views(work, "train", cfg.net.size), load_views(work, "val", cfg.net.size)
    x = normalize(train["crops"], spec)
    onehot = np.eye(num_classes, dtype=np.float32)[train["y"]]
    teacher = load_teacher(work) if cfg.distill else np.zeros_like(onehot)
    if len(teacher) != len(x):
        raise ValueError(f"teacher logits ({len(teacher)}) do not match the train views ({len(x)})")
    target = np.concatenate([onehot, teacher.astype(np.float32)], axis=1)
    counts = np.bincount(train["y"], minlength=num_classes)
    weight = (len(train["y"]) / (num_classes * np.maximum(counts, 1)))[train["y"]].astype(np.float32)

    def flip(xb, yb, wb):
        return tf.image.random_flip_left_right(xb, seed=cfg.seed), yb, wb

    ds = (
        tf.data.Dataset.from_tensor_slices((x, target, weight))
        .shuffle(len(x), seed=cfg.seed, reshuffle_each_iteration=True)
        .map(flip, num_parallel_calls=1)
        .batch(cfg.batch_size)
        .prefetch(2)
    )
    val_clean = val["view"] == 0
    xv = normalize(val["crops"][val_clean], spec)
    yv = np.concatenate(
        [
            np.eye(num_classes, dtype=np.float32)[val["y"][val_clean]],
            np.zeros((int(val_clean.sum()), num_classes), np.float32),
        ],
        axis=1,
    )
    model = build_micro_net(cfg.net, num_classes)
    steps = cfg.epochs * int(np.ceil(len(x) / cfg.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps, warmup_target=None)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=_distill_loss(num_classes, cfg.alpha if cfg.distill else 0.0, cfg.temperature),
        metrics=[_hard_accuracy(num_classes)],
        jit_compile=False,
    )
    t0 = time.perf_counter()
    hist = model.fit(ds, validation_data=(xv, yv), epochs=cfg.epochs, verbose=2 if progress else 0)
    seconds = time.perf_counter() - t0
    return model, {k: [float(v) for v in vals] for k, vals in hist.history.items()}, seconds


def _hard_accuracy(num_classes: int):
    from keras import ops

    def accuracy(y_true, logits):
        return ops.cast(ops.argmax(y_true[:, :num_classes], -1) == ops.argmax(logits, -1), "float32")

    return accuracy


def evaluate_run(
    work: Path, cfg: RunConfig, model, labels: list[str], history: dict, seconds: float
) -> RunResult:
    """int8 export + Keras/int8 metrics on val and test + size, MACs and TFLM arena."""
    spec = micro_spec(cfg.net.size)
    out = runs_dir(work) / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    exported = with_softmax(model)
    train = load_views(work, "train", cfg.net.size)
    clean = train["view"] == 0
    idx = representative_indices(train["y"][clean], 200, cfg.seed)
    i8 = to_tflite_int8(exported, cfg.net.size, normalize(train["crops"][clean][idx], spec))
    write_bytes_atomic(out / "int8.tflite", i8)
    exported.save(out / "model.keras")
    result = RunResult(
        config=cfg.to_dict(), file_bytes=len(i8), train_seconds=round(seconds, 1), history=history
    )
    clf = Classifier(i8, num_threads=1)
    mask = labels.index("with_mask") if "with_mask" in labels else 0
    for split in ("val", "test"):
        v = load_views(work, split, cfg.net.size)
        x = preprocess(list(v["crops"]), spec)
        result.keras[split] = summary(
            classification_metrics(np.asarray(exported.predict(x, verbose=0)), v["y"], labels, mask)
        )
        result.int8[split] = summary(classification_metrics(clf.predict(x), v["y"], labels, mask))
    result.macs = count_macs(i8)
    result.arena = min_arena(out / "int8.tflite")
    (out / "result.json").write_text(json.dumps(asdict(result), indent=1) + "\n")
    return result


def budget_check(work: Path, cfg: RunConfig, num_classes: int) -> RunResult | None:
    """Export the UNTRAINED network: its file size is a lower bound of the trained one (the converter
    shares identical constant buffers, which only untrained weights have), so a variant already over the
    flash budget is recorded as skipped instead of spending CPU minutes on training it. (The arena is not
    probed here: TFLM does not load this untrained export.)"""
    spec = micro_spec(cfg.net.size)
    train = load_views(work, "train", cfg.net.size)
    clean = train["view"] == 0
    idx = representative_indices(train["y"][clean], 50, cfg.seed)
    model = with_softmax(build_micro_net(cfg.net, num_classes))
    i8 = to_tflite_int8(model, cfg.net.size, normalize(train["crops"][clean][idx], spec))
    if len(i8) <= MAX_FILE_BYTES:
        return None
    res = RunResult(config=cfg.to_dict(), file_bytes=len(i8), macs=count_macs(i8))
    res.skipped = f"untrained export already {len(i8) / 1024:.1f} KB > {MAX_FILE_BYTES // 1024} KB"
    out = runs_dir(work) / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(asdict(res), indent=1) + "\n")
    return res


def load_result(work: Path, name: str) -> RunResult | None:
    path = runs_dir(work) / name / "result.json"
    return RunResult(**json.loads(path.read_text())) if path.is_file() else None


def run_configs(spec: str) -> list[RunConfig]:
    """ "64s:kd:3,64s:ce:3" -> run configs (variant of VARIANTS, distilled or not, epochs)."""
    cfgs = []
    for item in (x.strip() for x in spec.split(",") if x.strip()):
        parts = item.split(":")
        if (
            len(parts) != 3
            or parts[0] not in VARIANTS
            or parts[1] not in ("kd", "ce")
            or not parts[2].isdigit()
        ):
            raise ValueError(
                f"bad micro run {item!r}: expected variant:kd|ce:epochs, variants {', '.join(VARIANTS)}"
            )
        cfgs.append(RunConfig(VARIANTS[parts[0]], distill=parts[1] == "kd", epochs=int(parts[2])))
    if not cfgs:
        raise ValueError("no micro runs given")
    return cfgs


def train_runs(
    work: Path, cfgs: list[RunConfig], labels: list[str], force: bool = False, progress: bool = True
) -> list[RunResult]:
    """Train and measure every run not already measured (a finished run's result.json is reused)."""
    results = []
    for cfg in cfgs:
        done = None if force else load_result(work, cfg.name)
        if done is not None and done.config == json.loads(json.dumps(cfg.to_dict())):
            print(
                f"-- {cfg.name}: measured already (delete {runs_dir(work) / cfg.name} to retrain)", flush=True
            )
            results.append(done)
            continue
        skipped = budget_check(work, cfg, len(labels))
        if skipped is not None:
            print(f"-- {cfg.name}: not trained: {skipped.skipped}", flush=True)
            results.append(skipped)
            continue
        print(f"-- {cfg.name}: training", flush=True)
        model, history, seconds = train_run(work, cfg, len(labels), progress)
        res = evaluate_run(work, cfg, model, labels, history, seconds)
        print(
            f"-- {cfg.name}: {seconds:.0f} s, int8 val {res.int8['val']['accuracy']:.4f} test "
            f"{res.int8['test']['accuracy']:.4f}, {res.file_bytes / 1024:.0f} KB, arena "
            f"{res.arena['arena_bytes'] / 1024:.0f} KB, {res.macs['total'] / 1e6:.1f} M MACs",
            flush=True,
        )
        results.append(res)
    return results


# ---------------------------------------------------------------- select


def fits(res: RunResult) -> bool:
    return res.file_bytes <= MAX_FILE_BYTES and res.arena["arena_bytes"] <= MAX_ARENA_BYTES


def select(results: list[RunResult]) -> RunResult:
    """Among distilled runs that fit the flash and arena budgets: the best val int8 accuracy, ties
    (within SELECT_TIE) going to the smallest file. Test accuracy plays no part in the choice."""
    ok = [r for r in results if r.config["distill"] and not r.skipped and fits(r)]
    if not ok:
        raise ValueError("no distilled micro run fits the budgets (file <= 500 KB, arena <= 384 KB)")
    best = max(r.int8["val"]["accuracy"] for r in ok)
    tied = [r for r in ok if r.int8["val"]["accuracy"] >= best - SELECT_TIE]
    return min(tied, key=lambda r: (r.file_bytes, -r.int8["val"]["accuracy"]))
