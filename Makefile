# Two commands do all setup on a fresh machine (Python ≥ 3.10 with venv):
#   make demo   — install into .venv, then run the main job on the bundled model
#   make test   — install into .venv, then run the test suite
# CONSTRAINTS pins the CPU torch build; GPU users pass CONSTRAINTS= (empty).

PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints/cpu.txt
EXTRAS ?= cpu,openvino,torch,lab,ray,serve,dev
comma := ,
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: demo test install lint check-extras check-extras-install gpu-check clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgediff demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Honest extras: with the dev extra but without lab and ray, every test module still
# collects, and the tests that need an absent extra skip with the reason: modules by
# pytest.importorskip, single tests by @pytest.mark.extra("lab") (tests/conftest.py).
# The lab's tests and the import checks run in full there (the rest of tests/core is
# NumPy-only contract code, already run by make test).
MIN_VENV ?= .venv-min
MIN_STAMP := $(MIN_VENV)/.installed
$(MIN_STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[cpu,torch,dev]"
	touch $@

check-extras-install: $(MIN_STAMP)

check-extras: $(MIN_STAMP)
	$(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider --collect-only > /dev/null
	$(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider --basetemp=$(MIN_VENV)/pytest-tmp -rs tests/lab tests/core/test_imports.py
	$(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider --basetemp=$(MIN_VENV)/pytest-tmp -rs -m extra

lint: $(STAMP)
	$(BIN)/ruff check .

# On an NVIDIA machine: make gpu-check EXTRAS=gpu,torch,trt,lab,dev CONSTRAINTS=
gpu-check: $(STAMP)
	$(BIN)/python -m pytest -q -rs -m "gpu or trt"
	$(BIN)/python benchmarks/runtime_vs_torch.py --torch-device cuda

clean:
	rm -rf $(VENV) $(MIN_VENV) build *.egg-info
