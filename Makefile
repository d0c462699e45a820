# The README's two commands: `make train` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install install-test install-bench train model mark-reader test test-full test-all seeds notebook notebook-beyond bench bench-tta

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

install-bench: $(VENV)/.installed-bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[train]"
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[test,sweep]"
	touch $@

$(VENV)/.installed-notebook: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[notebook]"
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	touch $@

# The seed recipe, end to end, into runs/latest/.
train: install
	$(BIN)/mnist-keras train --out runs/latest --overwrite

# The model that ships in the package (what predict, read and serve answer with when given no run): the cnn
# recipe, seed 1, trained into runs/model/, then checked on MNIST test and real handwriting before it replaces
# src/mnist_keras/inference/shipped/ (mnist_keras.evaluation.ship).
model: install
	$(BIN)/mnist-keras train --recipe cnn --seed 1 --out runs/model --overwrite
	$(BIN)/python -m mnist_keras.evaluation.ship runs/model

# The mark reader that ships in the package (what `read` reads touching digits with): trained on marks written
# with MNIST training digits into runs/mark-reader/, checked against Keras, copied into
# src/mnist_keras/inference/mark_reader/ (mnist_keras.training.marks).
mark-reader: install
	$(BIN)/python -m mnist_keras.training.marks runs/mark-reader --ship

# The fast lane: every unit and integration test on small data the tests make (a few minutes).
test: install-test
	$(BIN)/python -m pytest -m "not slow and not real_data"

# The full lane: what `make test` leaves out (real MNIST, notebooks, kill-and-resume, the browser,
# sweeps, load). .ci/run runs it after `make test`, so CI runs every test once.
test-full: install-test
	$(BIN)/python -m pytest -m "slow or real_data"

# Both lanes in one pytest run.
test-all: install-test
	$(BIN)/python -m pytest

$(VENV)/.installed-sweep: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[sweep]"
	touch $@

# The README's results table: the seed recipe over seeds 1-5 on the sweep engine (Ray Tune), one trial at a time
# on both cores (whole-machine seconds), into runs/seeds/ (seeds.md is the table, seeds.json the numbers).
# SEEDS_FLAGS=--resume continues it.
seeds: $(VENV)/.installed-sweep
	$(BIN)/mnist-keras seeds seed --seeds 1-5 --max-concurrent 1 --out runs/seeds $(SEEDS_FLAGS)

# Re-execute the seed notebook top to bottom, in place: a full seed-recipe run into runs/notebook/,
# so the committed notebook carries every figure and number. The kernel runs in notebooks/.
notebook: $(VENV)/.installed-notebook
	$(BIN)/jupyter-execute --inplace --kernel_name=python3 notebooks/mnist_classifier.ipynb

# Re-execute the second notebook top to bottom, in place: the seed and cnn recipes in full into
# runs/beyond/{mlp,cnn}/ and the generated handwriting into runs/beyond/images/, so the committed notebook
# carries every figure and number. The kernel runs in notebooks/.
notebook-beyond: $(VENV)/.installed-notebook
	$(BIN)/jupyter-execute --inplace --kernel_name=python3 notebooks/beyond_the_seed.ipynb

# Every training and inference path side by side on this machine: prints the table and writes
# benchmarks/results/bench.{json,md,png}; then time to accuracy against the peers (bench-tta).
# BENCH_FLAGS=--quick for a smoke run.
bench: install-bench
	$(BIN)/python benchmarks/bench.py $(BENCH_FLAGS)
	$(MAKE) bench-tta

# Our recipes against published peers, seconds to 98.43% and 99%: benchmarks/results/time_to_accuracy.{json,md,png}.
bench-tta: install-bench
	$(BIN)/python benchmarks/time_to_accuracy.py $(BENCH_FLAGS)
