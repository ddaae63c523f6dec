# Two commands do everything on a fresh machine:
#   make run    install into .venv on first use, run the default suite, print the results
#   make test   install into .venv on first use, run the test suite
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTHON ?= python3
RUN_ARGS ?=

.PHONY: run test test-slow gpu-check lint type install clean partworld-numbers paper-toy parity

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch torchvision
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/partedit-bench run $(RUN_ARGS)

# one pytest worker per core (pytest-xdist; each worker one thread: tests/conftest.py)
test: $(STAMP)
	$(BIN)/pytest -q -rs -n auto --dist worksteal

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

# The first thing to run where a GPU is at hand (about 10 minutes on one H200, estimated):
# real-size SDXL and SD 2.1 architectures with random weights in fp16 on CUDA, every method,
# token training, speed ratios and peak memory, then FLUX.1-dev's and Qwen-Image-Edit's in bf16
# for the DiT editors -> results/gpu_check/gpu_check.{json,md}. Without CUDA it stops with one
# line; `benchmarks/gpu_check.py --dry` checks it on the CPU.
gpu-check: $(STAMP)
	$(BIN)/python -m benchmarks.gpu_check $(GPU_CHECK_ARGS)

# The PartWorld backbone's numbers (README and models/partworld-sd/README.md), about 15 min on
# 2 CPU cores: prompt following, part tokens with held-out mIoU, the default run and its report.
partworld-numbers: $(STAMP)
	$(BIN)/partedit-bench partworld evaluate --overwrite
	$(BIN)/partedit-bench train-token --backbone partworld-sd --part all --overwrite \
		--table models/partworld-sd/eval/tokens.md
	$(BIN)/partedit-bench run --recompute --output results/partworld__partworld-sd

# Every row of the README's "Reproduce the paper" table at toy scale (partworld-sd, a few
# samples and steps), timed, each checked for the files it must write: results/paper-toy/.
paper-toy: $(STAMP)
	$(BIN)/python benchmarks/paper_toy.py

# Parity with the official implementations (benchmarks/parity/README.md): OFFICIAL is a folder
# holding their checkouts at the pinned commits; a missing one is skipped with one line.
OFFICIAL ?= ../official
parity: $(STAMP)
	$(BIN)/python -m benchmarks.parity $(OFFICIAL)

lint: $(STAMP)
	$(BIN)/ruff check partedit_bench tests benchmarks
	$(BIN)/lint-imports

type: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
