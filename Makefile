# make run | make test | make sweep | make bench : each installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# A CPU machine gets the CPU build lying on its disk; elsewhere pip takes PyPI's default build (CUDA on Linux).
TORCH ?= torch==2.13.0
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: install run test test-gpu sweep bench clean slurm-up slurm-down

install: $(VENV)/.installed $(FASHION_MNIST)

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e .
	touch $@

# What only the tests need: pytest and its plugins, and the Ray launcher (its test starts a local cluster).
# Kept out of `make run`: a large install that only the tests and Ray users need (pip install -e ".[ray]").
$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# SLURM's packages, for the tests that start a one-node cluster (tests/test_slurm.py): installed where apt-get can
# (root or sudo); elsewhere those tests are skipped, saying why, and this is tried again on the next make test.
$(VENV)/.installed-slurm: $(VENV)/.installed
	@scripts/local_slurm.sh install && touch $@ || echo "make test: SLURM could not be installed here; its tests will be skipped"

$(FASHION_MNIST):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's dataset-fashion-mnist"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
		echo "Fashion-MNIST is missing: install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)," >&2; \
		echo "or put the four IDX files in a folder and run with data.root=/that/folder" >&2; \
		exit 1; \
	fi
	@test -f $@ || { echo "dataset-fashion-mnist installed but $@ is missing" >&2; exit 1; }

# The best clustering recipe, about 90 s of job on 2 cores: random features' PCA, each code averaged with its 10
# nearest, UMAP of the test images' codes with 30,000 of the training images', the likeliest of a Gaussian mixture's
# 20 starts, its partition repaired towards the classes' equal sizes (README, Results); `python -m experiments` runs
# the clustering assignment's pipeline.
run: install
	$(PY) -m experiments +recipe=random_conv_pca

# Tests on every core (pytest-xdist), each worker single-threaded; the reason of every skip (-rs) and line coverage of
# src/ printed at the end.
test: install $(VENV)/.installed-test $(VENV)/.installed-slurm
	$(PY) -m pytest -q -rs -n auto --dist worksteal --cov --cov-report=term

# On a machine with a CUDA GPU: the tests marked gpu (each kind's stages on cuda:0, the t-SNEs against the CPU),
# then the bench's rows that have a GPU twin. Refused in one line where no GPU is visible, rather than all skipped.
test-gpu: install $(VENV)/.installed-test
	@$(PY) -c "import sys, torch; torch.cuda.is_available() or sys.exit('make test-gpu: no CUDA GPU is visible to torch ' + torch.__version__)"
	$(PY) -m pytest -q -m gpu -rs
	$(PY) bench/run.py --only throughput,tsne_exact,tsne_sampled,deblur

sweep: install
	$(PY) -m experiments +sweep=latent_dims -m

bench: install
	$(PY) bench/run.py

# A one-node SLURM cluster on this machine (root or sudo), for the SLURM launchers (docs/launchers.md):
#   make slurm-up; python -m experiments data=digits hydra/launcher=slurm_cpu seed=0,1 -m; make slurm-down
slurm-up:
	scripts/local_slurm.sh up

slurm-down:
	scripts/local_slurm.sh down

clean:
	rm -rf outputs/runs outputs/multirun outputs/cache outputs/bench
