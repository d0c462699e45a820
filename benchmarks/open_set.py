"""Refusing non-digits of kinds the model never saw: whole families held out of training.

    python benchmarks/open_set.py --out DIR [--methods class,outlier_exposure] [--folds A,B] [--seed 1]
                                  [--negatives 3000] [--faint 2000] [--json FILE] [--figure FILE]

Two folds split the non-digit families of `mnist_keras.data.nondigits` (the
"patterns", flat grey, noise and stripes, are trained in both: the field
patterns a client sends are not what this measures):

- fold A trains on capitals, symbols and partial digits and is tested on
  lowercase letters, doodles and crossed-out digits;
- fold B the other way round.

Each fold trains the cnn recipe (seed `--seed`) once per training method:
"class" (today's 11th output, "not a digit") and "outlier_exposure" (the same
non-digits pushed towards the uniform distribution over the ten digits, no
11th output). Models are kept in DIR/<fold>-<method>/model.keras, so a second
call only evaluates; `--baseline RUN` measures an existing run on the same sets
(a run trained before the families existed: what "today" does on them). For every model and every decision it supports:

- "class": the 11th output's probability (today's `is_digit`);
- "max_softmax": one minus the largest of the ten digits' probabilities;
- "max_logit": minus the largest digit logit;
- "energy": minus logsumexp of the ten digit logits (Liu et al., NeurIPS 2020);

it reports the refusal of the held families' non-digits (per family; drawn
with a seed training never used, partial and crossed-out digits from MNIST
training digits) and of `evaluation.handwriting.heldout_negatives`; digits
kept and read right on MNIST test (10,000 arrays), optdigits files (3,594) and
faint users' 28×28 digits (files made from MNIST test digits); MNIST test
accuracy as the digit choice and with refusals counted as errors, the count
of test digits refused; the expected calibration error of the digit
probabilities (10 bins, as the report) on MNIST test and optdigits; and the trade-off of
digits kept against held-out non-digits refused over thresholds.

Every decision also refuses what `decision.is_digit`'s image rule refuses
(ink over half the field). The operating threshold of each decision is set on
the digits alone, never on non-digits: the most refusing threshold that keeps
all but at most 5 of the 10,000 MNIST test digits and at least 99% of the
optdigits and faint digits pooled.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import harness
import numpy as np

FOLDS = {
    "A": (("capitals", "symbols", "partial_digits"), ("lowercase", "doodles", "crossed_out")),
    "B": (("lowercase", "doodles", "crossed_out"), ("capitals", "symbols", "partial_digits")),
}
ALWAYS_TRAINED = ("patterns",)
METHODS = ("class", "outlier_exposure")
DECISIONS = {"class": ("class", "max_softmax", "max_logit", "energy"),
             "outlier_exposure": ("max_softmax", "max_logit", "energy")}
# Seeds for the test negatives: far from the training seeds (recipe seed + 1,000,003 / 2,000,003).
TEST_NEGATIVE_SEED = 9_000_011
MAX_TEST_REFUSED = 5  # of MNIST's 10,000 test digits (issue 22)
MIN_REAL_KEPT = 0.99  # optdigits and faint digits pooled
CURVE_POINTS = 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for the trained models (kept between calls)")
    parser.add_argument("--methods", default=",".join(METHODS), help="training methods, comma-separated")
    parser.add_argument("--folds", default=",".join(FOLDS), help="folds, comma-separated")
    parser.add_argument("--seed", type=int, default=1, help="the recipe's seed (default 1)")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (for a quick look)")
    parser.add_argument("--negatives", type=int, default=3000, help="held-family non-digits per fold (default 3000)")
    parser.add_argument("--faint", type=int, default=2000, help="faint users' digits (default 2000)")
    parser.add_argument("--baseline", metavar="RUN", help="also measure this run (11 outputs) on each fold's sets")
    parser.add_argument("--train-only", action="store_true", help="train the missing models and stop")
    parser.add_argument("--json", metavar="FILE", help="write the figures to FILE as JSON")
    parser.add_argument("--figure", metavar="FILE", help="save the trade-off curves to FILE (PNG)")
    parser.add_argument("--samples", metavar="FILE", help="save 16 training non-digits of each family to FILE (PNG)")
    args = parser.parse_args(argv)
    methods, folds = args.methods.split(","), args.folds.split(",")
    for method in methods:
        if method not in METHODS:
            parser.error(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    for fold in folds:
        if fold not in FOLDS:
            parser.error(f"unknown fold {fold!r}; choose from {', '.join(FOLDS)}")

    from mnist_keras.backends import select_backend

    select_backend(family="cnn")
    from mnist_keras.data.mnist import load_mnist

    mnist = load_mnist()
    if args.samples:
        family_samples_figure(mnist).savefig(args.samples, dpi=100, bbox_inches="tight")
    out = Path(args.out)
    for fold in folds:
        for method in methods:
            train_model(mnist, fold, method, args.seed, args.epochs, out / f"{fold}-{method}")
    if args.train_only:
        return 0
    digit_sets = real_digit_sets(mnist, args.faint)
    results = {}
    for fold in folds:
        negatives = held_negatives(mnist, fold, args.negatives)
        for method in methods:
            name = f"{fold}-{method}"
            results[name] = measure(out / name, digit_sets, negatives, DECISIONS[method])
            print_result(name, fold, results[name])
        if args.baseline:
            name = f"{fold}-baseline"
            results[name] = measure(Path(args.baseline), digit_sets, negatives, DECISIONS["class"])
            print_result(name, fold, results[name])
    if args.figure:
        tradeoff_figure(results).savefig(args.figure, dpi=120, bbox_inches="tight")
    if args.json:
        harness.write_json(args.json, strip_curves(results))
    return 0


# ---------------------------------------------------------------- training


def fold_recipe(fold: str, method: str, seed: int, epochs: int | None):
    from mnist_keras.recipes import CNN

    trained_families = FOLDS[fold][0] + ALWAYS_TRAINED
    recipe = dataclasses.replace(CNN, seed=seed, not_digit_families=trained_families,
                                 not_digit_class=method == "class", outlier_exposure=method == "outlier_exposure")
    return dataclasses.replace(recipe, epochs=epochs) if epochs else recipe


def train_model(mnist, fold: str, method: str, seed: int, epochs: int | None, directory: Path) -> None:
    """Train the fold's recipe into `directory` unless a model is already there."""
    if (directory / "model.keras").exists():
        return
    from mnist_keras.training.train import train

    recipe = fold_recipe(fold, method, seed, epochs)
    print(f"training {directory.name}: families {', '.join(recipe.not_digit_families)}", flush=True)
    trained = train(recipe, mnist, verbose=2)
    directory.mkdir(parents=True, exist_ok=True)
    trained.model.save(directory / "model.keras.partial.keras")
    (directory / "model.keras.partial.keras").rename(directory / "model.keras")
    # What load_run_model reads to check the network against its recipe.
    (directory / "config.json").write_text(json.dumps({"recipe": recipe.to_dict()}, indent=2))


# ---------------------------------------------------------------- the sets


def real_digit_sets(mnist, faint_count: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Model inputs (N, 28, 28) and labels: MNIST test, the optdigits files, faint users' digits as files."""
    from mnist_keras.constants import IMAGE_SIDE
    from mnist_keras.data.mnist import preprocess_images
    from mnist_keras.evaluation import handwriting

    sets = {"MNIST test": (preprocess_images(mnist.x_test).reshape(-1, IMAGE_SIDE, IMAGE_SIDE), mnist.y_test)}
    inputs, readable, labels = handwriting.optdigits_inputs()
    sets["optdigits"] = (np.where(readable[:, None, None], inputs, 0.0), labels)
    faint = handwriting.faint_user_digits(mnist.x_test[:faint_count], seed=0)
    with tempfile.TemporaryDirectory(prefix="open-set-") as directory:
        paths = handwriting.write_images(faint, mnist.y_test[:faint_count], directory, "faint")
        faint_inputs, _ = handwriting.read_files(paths)
    sets["faint 28x28"] = (faint_inputs, mnist.y_test[:faint_count])
    return sets


def held_negatives(mnist, fold: str, count: int) -> dict[str, np.ndarray]:
    """The fold's held-out families' non-digits, by family, and the older held-out set, as model inputs."""
    from mnist_keras.constants import PIXEL_MAX
    from mnist_keras.data.nondigits import draw_negatives
    from mnist_keras.evaluation import handwriting

    images, families = draw_negatives(count, TEST_NEGATIVE_SEED, FOLDS[fold][1], mnist.x_train, mnist.y_train)
    sets = {family: images[families == family].astype(np.float32) / PIXEL_MAX for family in FOLDS[fold][1]}
    heldout = handwriting.heldout_negatives(2000, 0)
    with tempfile.TemporaryDirectory(prefix="open-set-") as directory:
        inputs, readable = handwriting.negative_inputs(heldout, directory)
    # An image the reader refuses as blank is refused: a flat field scores as refused by the image rule.
    sets["older held-out set"] = np.where(readable[:, None, None], inputs, 1.0)
    return sets


# ---------------------------------------------------------------- scores


def model_outputs(model, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Softmax outputs and the logits before them (the last Dense layer's pre-activation)."""
    import keras

    from mnist_keras.training.loop import EVALUATION_CHUNK

    flat = inputs.reshape(len(inputs), -1).astype(np.float32)
    body = keras.Sequential(model.layers[:-1])
    kernel, bias = (keras.ops.convert_to_numpy(weight) for weight in model.layers[-1].weights)
    features = np.concatenate([keras.ops.convert_to_numpy(body(flat[start : start + EVALUATION_CHUNK], training=False))
                               for start in range(0, len(flat), EVALUATION_CHUNK)])
    logits = features @ kernel + bias
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    return probabilities, logits


def refusal_score(decision: str, inputs: np.ndarray, probabilities: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """How strongly each input looks like no digit (higher refuses first); +inf for the image rule's refusals."""
    from mnist_keras.constants import NUM_CLASSES
    from mnist_keras.inference.decision import MAX_INK_COVERAGE, digit_probabilities, ink_coverage

    digits = logits[:, :NUM_CLASSES]
    if decision == "class":
        score = probabilities[:, NUM_CLASSES]
    elif decision == "max_softmax":
        score = 1.0 - digit_probabilities(probabilities).max(axis=1)
    elif decision == "max_logit":
        score = -digits.max(axis=1)
    elif decision == "energy":
        top = digits.max(axis=1)
        score = -(top + np.log(np.exp(digits - top[:, None]).sum(axis=1)))
    else:
        raise ValueError(f"unknown decision {decision!r}")
    flooded = np.array([ink_coverage(image) > MAX_INK_COVERAGE for image in inputs])
    return np.where(flooded, np.inf, score)


def operating_threshold(digit_scores: dict[str, np.ndarray]) -> float:
    """The lowest threshold (most refusing) meeting both digit-side limits; refuse when score >= it."""
    test, real = digit_scores["MNIST test"], np.concatenate([digit_scores["optdigits"], digit_scores["faint 28x28"]])
    finite = np.concatenate([test, real])
    candidates = np.unique(finite[np.isfinite(finite)])
    low, high = 0, len(candidates) - 1
    def ok(threshold: float) -> bool:
        return (test >= threshold).sum() <= MAX_TEST_REFUSED and (real < threshold).mean() >= MIN_REAL_KEPT

    # Both limits only loosen as the threshold rises: binary search for the lowest that meets them.
    if not ok(float(candidates[high])):
        return float(np.nextafter(candidates[high], np.inf))
    while low < high:
        middle = (low + high) // 2
        if ok(float(candidates[middle])):
            high = middle
        else:
            low = middle + 1
    return float(candidates[low])


def measure(directory: Path, digit_sets, negative_sets, decisions) -> dict:
    from mnist_keras.evaluation.metrics import expected_calibration_error
    from mnist_keras.inference.decision import NOT_DIGIT_THRESHOLD, digit_probabilities
    from mnist_keras.model import load_run_model

    model = load_run_model(directory)
    digit_outputs = {name: model_outputs(model, inputs) for name, (inputs, _) in digit_sets.items()}
    negative_outputs = {name: model_outputs(model, inputs) for name, inputs in negative_sets.items()}
    result: dict = {"sets": {}, "calibration_error": {}, "decisions": {}}
    for name, (inputs, labels) in digit_sets.items():
        probabilities = digit_probabilities(digit_outputs[name][0])
        result["sets"][name] = {"images": len(labels),
                                "accuracy": round(float((probabilities.argmax(axis=1) == labels).mean()), 4)}
        if name in ("MNIST test", "optdigits"):
            result["calibration_error"][name] = round(expected_calibration_error(labels, probabilities), 4)
    for decision in decisions:
        digit_scores = {name: refusal_score(decision, digit_sets[name][0], *digit_outputs[name])
                        for name in digit_sets}
        negative_scores = {name: refusal_score(decision, negative_sets[name], *negative_outputs[name])
                           for name in negative_sets}
        thresholds = {"operating": operating_threshold(digit_scores)}
        if decision == "class":
            thresholds["today (0.6)"] = NOT_DIGIT_THRESHOLD
        for label, threshold in thresholds.items():
            result["decisions"][f"{decision} @ {label}"] = at_threshold(threshold, digit_sets, digit_outputs,
                                                                        digit_scores, negative_scores)
        result["decisions"][f"{decision} @ operating"]["curve"] = curve(digit_scores, negative_scores)
    return result


def at_threshold(threshold, digit_sets, digit_outputs, digit_scores, negative_scores) -> dict:
    from mnist_keras.inference.decision import digit_probabilities

    row: dict = {"threshold": round(threshold, 6), "digits": {}, "refused": {}}
    for name, (_, labels) in digit_sets.items():
        kept = digit_scores[name] < threshold
        correct = digit_probabilities(digit_outputs[name][0]).argmax(axis=1) == labels
        row["digits"][name] = {"kept": round(float(kept.mean()), 4),
                               "read_right": round(float((kept & correct).mean()), 4),
                               "refused": int((~kept).sum())}
    pooled = np.concatenate(list(digit_scores.values()))
    row["digits kept (pooled)"] = round(float((pooled < threshold).mean()), 4)
    held = [name for name in negative_scores if name != "older held-out set"]
    for name, scores in negative_scores.items():
        row["refused"][name] = round(float((scores >= threshold).mean()), 4)
    row["refused"]["held families"] = round(float(np.concatenate([negative_scores[n] for n in held]).__ge__(
        threshold).mean()), 4)
    return row


def curve(digit_scores, negative_scores) -> list[tuple[float, float, float]]:
    """(threshold, real digits kept, held-family non-digits refused) over the pooled scores' quantiles."""
    digits = np.concatenate(list(digit_scores.values()))
    held = np.concatenate([scores for name, scores in negative_scores.items() if name != "older held-out set"])
    pooled = np.concatenate([digits, held])
    thresholds = np.unique(np.quantile(pooled[np.isfinite(pooled)], np.linspace(0, 1, CURVE_POINTS)))
    return [(float(t), float((digits < t).mean()), float((held >= t).mean())) for t in thresholds]


# ---------------------------------------------------------------- output


def print_result(name: str, fold: str, result: dict) -> None:
    trained, held = FOLDS[fold]
    if name.endswith("-baseline"):
        trained = ("the run's own non-digits",)
    print(f"\n{name}: trained on {', '.join(trained)}; held out {', '.join(held)}")
    print("  digit choice: " + ", ".join(f"{set_name} {row['accuracy']:.2%}" for set_name, row in
                                         result["sets"].items()))
    print("  calibration error (ECE, 10 bins): " + ", ".join(f"{set_name} {value:.4f}" for set_name, value in
                                                             result["calibration_error"].items()))
    header = (f"  {'decision':<26} {'threshold':>10} {'held':>7} " + " ".join(f"{n[:10]:>10}" for n in
              next(iter(result["decisions"].values()))["refused"] if n != "held families")
              + f" {'MNIST kept':>10} {'refused':>7} {'MNIST acc':>9} {'optd acc':>8} {'faint kept':>10}")
    print(header)
    for decision, row in result["decisions"].items():
        refused = row["refused"]
        digits = row["digits"]
        print(f"  {decision:<26} {row['threshold']:>10.4g} {refused['held families']:>7.2%} "
              + " ".join(f"{value:>10.2%}" for n, value in refused.items() if n != "held families")
              + f" {digits['MNIST test']['kept']:>10.2%} {digits['MNIST test']['refused']:>7} "
              f"{digits['MNIST test']['read_right']:>9.2%} {digits['optdigits']['read_right']:>8.2%} "
              f"{digits['faint 28x28']['kept']:>10.2%}")


def strip_curves(results: dict) -> dict:
    """The results with each curve thinned to a few rows, for JSON."""
    thinned = json.loads(json.dumps(results))
    for result in thinned.values():
        for row in result["decisions"].values():
            if "curve" in row:
                points = row["curve"]
                keep = sorted({int(i) for i in np.linspace(0, len(points) - 1, 25)})
                row["curve"] = [[round(value, 6) for value in points[i]] for i in keep]
    return thinned


DECISION_COLOURS = {"class": "tab:blue", "max_softmax": "tab:orange", "max_logit": "tab:green", "energy": "tab:red"}
METHOD_LINES = {"class": "-", "outlier_exposure": "--", "baseline": ":"}


def tradeoff_figure(results: dict):
    """Real digits kept against held-family non-digits refused, one line per model and decision.

    A dot marks each decision's operating threshold.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folds = sorted({name.split("-")[0] for name in results})
    figure, axes = plt.subplots(1, len(folds), figsize=(6 * len(folds), 4.5), squeeze=False)
    for ax, fold in zip(axes[0], folds):
        for name, result in results.items():
            if not name.startswith(f"{fold}-"):
                continue
            method = name.split("-", 1)[1]
            for decision, row in result["decisions"].items():
                if "curve" not in row:
                    continue
                points = np.array(row["curve"])
                style = {"color": DECISION_COLOURS[decision.split(" @ ")[0]], "linestyle": METHOD_LINES[method]}
                ax.plot(points[:, 2], points[:, 1], label=f"{method}: {decision.split(' @ ')[0]}", **style)
                ax.plot(row["refused"]["held families"], row["digits kept (pooled)"], "o", color=style["color"])
        ax.set(xlim=(0.5, 1.0), ylim=(0.97, 1.0), xlabel="held-family non-digits refused",
               ylabel="real digits kept (MNIST test, optdigits, faint pooled)",
               title=f"fold {fold}: held out {', '.join(FOLDS[fold][1])}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    return figure


def family_samples_figure(mnist, per_family: int = 16):
    """A row of training non-digits per family, as the model sees them (28×28, ink white)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mnist_keras.data.nondigits import ALL_FAMILIES, draw_negatives

    figure, axes = plt.subplots(len(ALL_FAMILIES), 1, figsize=(per_family * 0.6, len(ALL_FAMILIES) * 0.75))
    for ax, family in zip(axes, ALL_FAMILIES):
        images, _ = draw_negatives(per_family, 1, (family,), mnist.x_train, mnist.y_train)
        ax.imshow(np.concatenate(list(images), axis=1), cmap="gray", vmin=0, vmax=255)
        ax.set_axis_off()
        ax.set_title(family.replace("_", " "), fontsize=8, loc="left")
    figure.tight_layout()
    return figure


if __name__ == "__main__":
    sys.exit(main())
