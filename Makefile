# medsight: two entry points. `make demo` runs the main job, `make test` runs the tests.
# Each creates .venv when it is missing. `make system-deps` installs Debian packages that
# some tests need (headless chromium with a CJK font, PostgreSQL, the Orthanc PACS with its DICOMweb
# plugin); without them those tests skip and say why.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test venv system-deps lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/medsight demo --out runs/demo $(if $(DATA),--data $(DATA),) $(if $(SERVE),--serve,)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

system-deps:
	@if command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei postgresql orthanc orthanc-dicomweb >/dev/null; \
	else echo "apt-get not found: browser, PostgreSQL and PACS tests will skip"; fi

clean:
	rm -rf $(VENV) runs .pytest_cache

bench: $(STAMP)

# MedMNIST section of BENCHMARKS.md from the recorded JSON results in bench/results/medmnist/;
# RUN=1 retrains first (every method, 3 seeds: hours on 2 CPU cores; see bench/medmnist.py).
.PHONY: bench-medmnist
bench: bench-medmnist
bench-medmnist: $(STAMP)
	$(BIN)/python bench/medmnist.py --write $(if $(RUN),--run,)

# Semi-supervised section of BENCHMARKS.md from bench/results/semi_supervised.json;
# RUN=1 retrains first (BreastMNIST 10 %/25 % labels, 3 seeds: ~40-60 min on a shared 2-core CPU).
.PHONY: bench-semi-supervised
bench: bench-semi-supervised
bench-semi-supervised: $(STAMP)
	$(BIN)/python bench/semi_supervised.py --write $(if $(RUN),--run,)

# Training-speed section of BENCHMARKS.md from bench/results/train_speed.json; RUN=1 measures
# again (medsight's loop vs a plain PyTorch loop, interleaved rounds: ~15-30 min on a busy 2-core CPU).
.PHONY: bench-train-speed
bench: bench-train-speed
bench-train-speed: $(STAMP)
	$(BIN)/python bench/train_speed.py --write $(if $(RUN),,--no-run)

# Fuzzing section of BENCHMARKS.md from bench/results/fuzz.json; RUN=1 fuzzes again (10000 mutated
# real files and bombs through the decode pool, one worker: ~2-3 min; see bench/fuzz.py).
.PHONY: bench-fuzz
bench: bench-fuzz
bench-fuzz: $(STAMP)
	$(BIN)/python bench/fuzz.py --write $(if $(RUN),--run,)

# Prediction section of BENCHMARKS.md from bench/results/predict.json; RUN=1 measures again
# (Predictor vs bare ONNX Runtime, cold start, peak memory over 20k tiny PNGs: ~10-15 min, 1 core).
.PHONY: bench-predict
bench: bench-predict
bench-predict: $(STAMP)
	$(BIN)/python bench/predict.py --write $(if $(RUN),,--no-run)

# Scale section of BENCHMARKS.md from bench/results/scale.json; RUN=1 measures again (100k phantom
# PNGs under /tmp/medsight_scale: data check, one training epoch on the disk cache, predict local
# and Ray; about 30 min on 2 CPU cores; see bench/scale.py).
.PHONY: bench-scale
bench: bench-scale
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py --write $(if $(RUN),,--no-run)

# Service section of BENCHMARKS.md from bench/results/serve.json; RUN=1 measures again
# (loopback HTTP at 1/4/16 clients beside the bare Predictor and bare ORT at batch 32: ~5 min).
.PHONY: bench-serve
bench: bench-serve
bench-serve: $(STAMP)
	$(BIN)/python bench/serve.py --write $(if $(RUN),,--no-run)

# Service fuzzing section of BENCHMARKS.md from bench/results/fuzz_service.json; RUN=1 fuzzes
# again (20000 hostile uploads over HTTP to a real server: ~3-5 min).
.PHONY: bench-fuzz-service
bench: bench-fuzz-service
bench-fuzz-service: $(STAMP)
	$(BIN)/python bench/fuzz.py --service --write $(if $(RUN),--run,)

# Detection section of BENCHMARKS.md from bench/results/detection.json; RUN=1 trains the BCCD
# recipe again (3 seeds: about 35-60 min on 2 CPU cores; see bench/detection.py).
.PHONY: bench-detection
bench: bench-detection
bench-detection: $(STAMP)
	$(BIN)/python bench/detection.py --write $(if $(RUN),--seeds 0 1 2,--no-run)
