# akira — the README's commands. PY is the project's virtual environment.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0

.PHONY: install test test-slow train lint bench clean

install:
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e ".[dev,slurm]"
	@$(PY) -c "import torch, pytorch_lightning, hydra; print('akira installed: torch', torch.__version__, '| lightning', pytorch_lightning.__version__, '| hydra', hydra.__version__)"

test:
	$(PY) -m pytest -q

test-slow:
	$(PY) -m pytest -q -m slow

train:
	$(PY) train.py

lint:
	$(PY) -m ruff check akira hydra_plugins tests benchmarks train.py eval.py analyze.py report.py

bench:
	$(PY) benchmarks/fields_speed.py

clean:
	rm -rf outputs/* .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
