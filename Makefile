# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# The virtual environment (.venv) is a link to a cached environment keyed by constraints.txt
# (see .ci/setup-env.sh), so fresh clones do not re-install ~6 GB each time.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEMO := demo

.PHONY: env demo test clean

env:
	@bash .ci/setup-env.sh

test: env
	@# pytest's exit 5 (collected nothing) is a failure too.
	@$(PY) -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$status

demo: env
	@set -euo pipefail; rm -rf $(DEMO); \
	$(PY) -m mspn data synth --out $(DEMO)/data --seed 0; \
	$(PY) -m mspn train --config tiny --data $(DEMO)/data --out $(DEMO)/run; \
	$(PY) -m mspn eval --ckpt $(DEMO)/run/best.pt --data $(DEMO)/data --split test --report $(DEMO)/eval/report.json; \
	$(PY) -m mspn export --ckpt $(DEMO)/run/best.pt --out $(DEMO)/model --precision fp32,fp16,int8 --calib $(DEMO)/data --data $(DEMO)/data; \
	$(PY) -m mspn bench --model $(DEMO)/model --ckpt $(DEMO)/run/best.pt --data $(DEMO)/data --backends torch,onnxruntime,openvino --variants fp32,fp16,int8 --runs 20 --report $(DEMO)/bench/bench.json; \
	echo; echo "demo done: evaluation $(DEMO)/eval/ (report.json, plots, strips), model folder $(DEMO)/model/, benchmark $(DEMO)/bench/"

clean:
	rm -rf $(DEMO) .pytest_cache
