# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# The virtual environment (.venv) is a link to a cached environment keyed by constraints.txt
# (see .ci/setup-env.sh), so fresh clones do not re-install ~6 GB each time.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEMO := demo

.PHONY: env lint demo test clean

env:
	@bash .ci/setup-env.sh

# ruff, configured in pyproject.toml; CI (.ci/run) runs it after the tests and fails on any finding.
lint: env
	@$(VENV)/bin/ruff check .

test: env
	@# pytest's exit 5 (collected nothing) is a failure too.
	@$(PY) -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$status

# The demo: real-digit Moving MNIST (the bundled MNIST digits, offline) -> a short training run
# of the tiny config -> evaluation against the baselines of the short run and of the two shipped
# models (models/) -> export of the shipped tiny model -> verification -> benchmark.
demo: env
	@set -euo pipefail; rm -rf $(DEMO); \
	$(PY) -m mspn data mmnist-generate --out $(DEMO)/data --size 32 --videos 2000,200,200 --seed 0; \
	$(PY) -m mspn data mmnist-generate --out $(DEMO)/data64 --videos 1,1,200 --seed 0; \
	$(PY) -m mspn train --config tiny --data $(DEMO)/data --out $(DEMO)/run --set train.epochs=1; \
	$(PY) -m mspn eval --ckpt $(DEMO)/run/best.pt --data $(DEMO)/data --untrained --report $(DEMO)/eval/short-run/report.json; \
	$(PY) -m mspn eval --ckpt models/tiny/best.pt --data $(DEMO)/data --untrained --report $(DEMO)/eval/tiny/report.json; \
	$(PY) -m mspn eval --ckpt models/mnist-small/best.pt --data $(DEMO)/data64 --untrained --report $(DEMO)/eval/mnist-small/report.json; \
	$(PY) -m mspn export --ckpt models/tiny/best.pt --out $(DEMO)/model --variants fp32,fp16,int8 --calib $(DEMO)/data --data $(DEMO)/data; \
	$(PY) -m mspn bench --model $(DEMO)/model --ckpt models/tiny/best.pt --data $(DEMO)/data --backends torch,onnxruntime,openvino --variants fp32,fp16,int8 --runs 20 --report $(DEMO)/bench/bench.json; \
	echo; echo "demo done: evaluations $(DEMO)/eval/{short-run,tiny,mnist-small}/ (report.json, plots, strips, GIFs), model folder $(DEMO)/model/, benchmark $(DEMO)/bench/"

clean:
	rm -rf $(DEMO) .pytest_cache
