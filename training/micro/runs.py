"""`python -m training micro`: the microcontroller-class model (issue #9).

Stages (`--stage`, default all, each reads the previous one's work files under <work>/micro):
  data     face crops at the micro sizes, replaying the main pipeline's views (training.micro_data)
  teacher  the main model's soft labels on every train view, cached once (training.micro_data)
  train    each variant from scratch, with and without distillation -> <work>/micro/runs/<run>/
  ship     pick a run by measurements, verify it in TFLM, write models/masklite_micro_int8.tflite,
           the card entry models.micro, reports/micro.md and reports/micro_accuracy_vs_size.png

Why from scratch: the only ImageNet weights here are MobileNetV2 alpha 1.0, too big for a microcontroller.
Distillation: loss = (1 - a) * CE(labels) + a * T^2 * KL(teacher_T || student_T), teacher = the main
model's Keras form (frozen alpha-1.0 backbone + dense head), logits cached per train view.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from masklite.card import InputSpec, ModelCard, ModelEntry, load_card, save_card
from masklite.classifier import Classifier, normalize, preprocess
from masklite.paths import sha256_file
from training.export import representative_indices, to_tflite_int8, write_bytes_atomic
from training.features import input_spec
from training.metrics import classification_metrics, summary
from training.micro_data import MICRO_DIR, load_teacher, load_views
from training.micro_net import NetConfig

MICRO_FILE = "masklite_micro_int8.tflite"
MICRO_KEY = "micro"
MAX_FILE_BYTES = 500 * 1024
MAX_ARENA_BYTES = 384 * 1024
MAX_ACC_GAP = 0.02
# runs whose val accuracy is within this of the best count as tied; the smallest file among them wins
SELECT_TIE = 0.005


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

    from training.head import seed_everything
    from training.micro_net import build_micro_net

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
    from training.micro_net import with_softmax
    from training.micro_tflm import count_macs, min_arena

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
    from training.micro_net import build_micro_net, with_softmax
    from training.micro_tflm import count_macs

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


def stage_train(
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


# ---------------------------------------------------------------- ship


def _evalset_inputs(models_dir: Path, card: ModelCard, spec: InputSpec) -> tuple[np.ndarray, np.ndarray, str]:
    """The shipped evaluation set (models/evalset.zip, test-split crops) through the card's preprocessing
    at the micro model's `spec`."""
    from masklite.evalset import default_evalset_path, load_evalset_file

    path = default_evalset_path(models_dir)
    ev = load_evalset_file(path, card)
    return preprocess(list(ev.images), spec), ev.labels, path.name


def verify_in_tflm(model_path: Path, x: np.ndarray) -> dict:
    """Smallest arena (searched twice: it must reproduce), then TFLM vs LiteRT on `x` AT that arena."""
    from training.micro_tflm import agreement, allocations_report, latency_ms, min_arena, quantize_input

    first, second = min_arena(model_path), min_arena(model_path)
    if first["arena_bytes"] != second["arena_bytes"]:
        raise RuntimeError(f"TFLM arena search is not reproducible: {first} vs {second}")
    arena = first["arena_bytes"]
    model = model_path.read_bytes()
    agree = agreement(model, quantize_input(model, x), arena)
    return {
        "arena": first | {"repeat_arena_bytes": second["arena_bytes"]},
        "agreement": agree,
        "latency_ms": latency_ms(model, arena),
        "allocations": allocations_report(model, arena),
    }


def stage_ship(
    work: Path,
    models_dir: Path,
    reports_dir: Path,
    results: list[RunResult],
    scenes_dir: Path | None,
    detector_path: Path | None,
) -> ModelEntry:
    """Copy the selected run to models/, measure it like the others, add models.micro, write the report."""
    from masklite.faces import FaceDetector
    from training.evaluate import classify_fn
    from training.micro_data import feature_config
    from training.scenes import load_scenes, scene_metrics

    card = load_card(models_dir)
    if "int8" not in card.models:
        raise FileNotFoundError(f"{models_dir}/model_card.json has no int8 model: build the main model first")
    chosen = select(results)
    cfg = chosen.config
    spec = micro_spec(int(cfg["net"]["size"]))
    src = runs_dir(work) / cfg["name"] / "int8.tflite"
    write_bytes_atomic(models_dir / MICRO_FILE, src.read_bytes())
    path = models_dir / MICRO_FILE
    clf = Classifier(path, num_threads=1)
    if clf.precision != "int8" or clf.input_size != tuple(spec.size):
        raise ValueError(f"{src}: expected an int8 model with a {spec.size} input")

    metrics: dict = {"test": chosen.int8["test"], "val": chosen.int8["val"]}
    x_ev, y_ev, ev_name = _evalset_inputs(models_dir, card, spec)
    metrics["evalset"] = summary(
        classification_metrics(clf.predict(x_ev), y_ev, card.labels, card.mask_index)
    )
    if scenes_dir is not None:
        detector = None
        if detector_path is not None:
            detector = FaceDetector(detector_path, card.detector.score_threshold, card.detector.nms_threshold)
        metrics["scenes"] = scene_metrics(
            load_scenes(scenes_dir), card.labels, classify_fn(clf, spec), card.crop_margin, detector
        )
    if (work / "features" / "crops_xval.npz").is_file():  # its own threshold, chosen on xval like the others
        from training import evaluate_cross

        classify = classify_fn(clf, spec)
        chosen_t = evaluate_cross.choose_thresholds(work, card, {MICRO_KEY: classify})["decision"][MICRO_KEY]
        threshold = chosen_t["threshold"]
        metrics["cross_source"] = evaluate_cross.score_model(
            work, card, MICRO_KEY, classify, threshold, card.min_face_size
        )
    else:
        threshold = 0.5
    tflm = verify_in_tflm(path, x_ev)
    tflm["agreement"]["source"] = ev_name
    main_test = card.models["int8"].metrics.get("test", {}).get("accuracy")
    gap = None if main_test is None else float(main_test - metrics["test"]["accuracy"])
    teacher = json.loads((work / MICRO_DIR / "teacher" / "teacher.json").read_text())
    entry = ModelEntry(
        file=MICRO_FILE,
        sha256=sha256_file(path),
        bytes=path.stat().st_size,
        precision="int8",
        metrics=metrics,
        input=spec,
        decision_threshold=threshold,
    )
    extra = {
        "latency_ms": tflm["latency_ms"]["litert"] | {"threads": 1, "batch": 1, "runtime": "LiteRT"},
        "quantization": {
            "kind": "full-integer (weights and activations int8, int8 input/output)",
            "representative_samples": 200,
            "representative_source": "clean face crops from the train split, class-balanced, seeded",
        },
        "architecture": {
            "arch": "MobileNetV2 (training/micro_net.py)",
            **cfg["net"],
            "weights": "from scratch",
            "params_note": "no ImageNet weights exist here for alpha < 1",
        },
        "macs": chosen.macs,
        "tflm": {
            "arena_bytes": tflm["arena"]["arena_bytes"],
            "arena_search": tflm["arena"],
            "agreement_vs_litert": tflm["agreement"],
            "latency_ms": tflm["latency_ms"]["tflm"],
            "kernels": "tflite-micro Python interpreter, reference kernels on this x86 CPU",
        },
        "budgets": {
            "max_file_bytes": MAX_FILE_BYTES,
            "max_arena_bytes": MAX_ARENA_BYTES,
            "max_test_accuracy_gap_vs_int8": MAX_ACC_GAP,
        },
        "vs_int8": {"test_accuracy_gap": gap, "int8_test_accuracy": main_test},
        "training": {
            **{k: v for k, v in cfg.items() if k != "net"},
            "train_seconds": chosen.train_seconds,
            "teacher": {
                k: teacher[k] for k in ("teacher", "teacher_sha256", "check", "teacher_train_accuracy")
            },
            "data": (
                "the main pipeline's cached train views (clean, plain, degraded, synthetic-mask; "
                "every source), random h-flip"
            ),
            "feature_config": feature_config(work).__dict__,
        },
        "dataset_fingerprint": card.dataset.get("fingerprint", {}).get("sha256"),
        "selection": "distilled runs within the budgets; "
        f"best val int8 accuracy, ties within {SELECT_TIE} to "
        "the smallest file; test accuracy not used",
    }
    for k, v in extra.items():
        setattr(entry, k, v)
    card.models[MICRO_KEY] = entry
    save_card(card, models_dir)
    from training.model_card_md import write_model_card_md

    write_model_card_md(card, models_dir)
    allocations = tflm.pop("allocations")
    from training.micro_report import write_report

    write_report(reports_dir, card, entry, results, chosen, allocations)
    return entry


def carry_over_micro(models_dir: Path, card: ModelCard) -> None:
    """Keep models.micro when the main export rewrites the card (called by training.stages.stage_export):
    only while its file is there unchanged and the dataset is the one it was measured on; otherwise it is
    dropped, and `python -m training micro` rebuilds it."""
    from masklite.card import CARD_FILENAME

    old_path = models_dir / CARD_FILENAME
    if not old_path.is_file():
        return
    try:
        old = load_card(models_dir)
    except ValueError:
        return
    entry = old.models.get(MICRO_KEY)
    if entry is None:
        return
    path = models_dir / entry.file
    same_data = (entry.model_extra or {}).get("dataset_fingerprint") == card.dataset.get(
        "fingerprint", {}
    ).get("sha256")
    if path.is_file() and sha256_file(path) == entry.sha256 and same_data:
        card.models[MICRO_KEY] = entry
    else:
        print(
            f"note: models.{MICRO_KEY} dropped from the card (file changed or other dataset); "
            "rebuild it with `python -m training micro`"
        )


# ---------------------------------------------------------------- CLI


def add_arguments(parser) -> None:
    parser.add_argument("--stage", choices=["data", "teacher", "train", "ship", "all"], default="all")
    parser.add_argument(
        "--runs",
        default=DEFAULT_RUNS,
        help=f"variant:kd|ce:epochs,... (variants: {', '.join(VARIANTS)}); default: the reported runs",
    )
    parser.add_argument("--retrain", action="store_true", help="retrain runs already measured")


def run_micro(
    args,
    work: Path,
    models_dir: Path,
    reports_dir: Path,
    data_dir,
    scenes_dir,
    detector_path,
    weights,
    progress: bool = True,
) -> int:
    """`python -m training micro`; data_dir/weights are callables so a stage only asks for what it needs."""
    from training.micro_data import build_teacher, build_views

    cfgs = run_configs(args.runs)
    stages = ["data", "teacher", "train", "ship"] if args.stage == "all" else [args.stage]
    labels = json.loads((work / "features" / "meta.json").read_text())["labels"]
    for stage in stages:
        t0 = time.perf_counter()
        print(f"== micro {stage}", flush=True)
        if stage == "data":
            print(
                json.dumps(
                    build_views(work, data_dir(), tuple(sorted({c.net.size for c in cfgs})), progress)[
                        "counts"
                    ]
                )
            )
        elif stage == "teacher":
            print(json.dumps(build_teacher(work, weights(), models_dir), indent=1))
        elif stage == "train":
            stage_train(work, cfgs, labels, force=args.retrain, progress=progress)
        else:
            results = [r for c in cfgs if (r := load_result(work, c.name)) is not None]
            if not results:
                raise FileNotFoundError(
                    "no measured micro runs: run `python -m training micro --stage train`"
                )
            scenes = scenes_dir()
            entry = stage_ship(
                work, models_dir, reports_dir, results, scenes, detector_path() if scenes else None
            )
            x = entry.model_extra or {}
            print(
                f"models.{MICRO_KEY}: {entry.file} {entry.bytes / 1024:.1f} KB, arena "
                f"{x['tflm']['arena_bytes'] / 1024:.1f} KB, test {entry.metrics['test']['accuracy']:.4f} "
                f"(int8 {x['vs_int8']['int8_test_accuracy']:.4f}), TFLM agreement "
                f"{x['tflm']['agreement_vs_litert']['label_agreement']:.4f}"
            )
        print(f"== micro {stage} done in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0
