# ferrosio developer commands. `make help` lists them.
#
# Two virtual environments: .venv (development, editable `maturin develop` build) and
# .ci-venv (recreated by `make test`: the release wheel installed as users get it, so a
# packaging mistake fails the tests).

PYTHON      ?= python3
VENV        := .venv
CI_VENV     := .ci-venv
NODE_DEPS   := .deps/node
SHARED      ?= ../shared
FUZZ_TARGETS := socketio_packet engineio_payload ws_frames http_front_door
FUZZ_SECONDS ?= 25
WHEEL_DIR   := dist

.PHONY: help dev wheel client-bundle node-deps test test-rust test-python lint lint-rust lint-python demo bench bench-smoke fuzz-tools fuzz-smoke clean

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q maturin -r tests/requirements.txt -r requirements-dev.txt

dev: $(VENV)/bin/python ## build the extension in place (debug-ish, fast) into .venv
	. $(VENV)/bin/activate && maturin develop --release

wheel: $(VENV)/bin/python ## build the release wheel into dist/
	rm -rf $(WHEEL_DIR)
	$(VENV)/bin/maturin build --release --out $(WHEEL_DIR)

client-bundle: ## the official socket.io-client (tests, and the browser bundle the demo serves)
	npm install --prefix tests/node --no-audit --no-fund --loglevel=error

node-deps: client-bundle ## npm packages for the peers: + playwright-core, socket.io (reference server)
	npm install --prefix tests/browser --no-audit --no-fund --loglevel=error
	mkdir -p $(NODE_DEPS) && cp $(SHARED)/reference/package.json $(NODE_DEPS)/
	npm install --prefix $(NODE_DEPS) --no-audit --no-fund --loglevel=error

test-rust: ## Rust unit tests of the core crate
	cargo test -p ferrosio-core

test-python: ## pytest against the installed wheel in .ci-venv (needs `make wheel node-deps`)
	rm -rf $(CI_VENV)
	$(PYTHON) -m venv $(CI_VENV)
	$(CI_VENV)/bin/pip install -q --upgrade pip
	$(CI_VENV)/bin/pip install -q $(WHEEL_DIR)/*.whl -r tests/requirements.txt
	cd tests && NODE_PATH=$(CURDIR)/$(NODE_DEPS)/node_modules ../$(CI_VENV)/bin/python -c \
		"import ferrosio, sys; assert 'site-packages' in ferrosio.__file__, ferrosio.__file__"
	NODE_PATH=$(CURDIR)/$(NODE_DEPS)/node_modules $(CI_VENV)/bin/python -m pytest -p no:cacheprovider tests
	FERROSIO_SHARED=$(abspath $(SHARED)) $(CI_VENV)/bin/python -m pytest -p no:cacheprovider benches/test_e2e_smoke.py

test: wheel node-deps test-rust test-python ## everything: build the wheel, install it fresh, run all tests

lint-rust: ## cargo fmt --check and clippy -D warnings
	cargo fmt --all --check
	cargo clippy --all-targets -- -D warnings

lint-python: $(VENV)/bin/python ## ruff and mypy --strict on python/
	$(VENV)/bin/ruff check python tests examples benches
	$(VENV)/bin/ruff format --check python tests examples benches
	$(VENV)/bin/mypy

lint: lint-rust lint-python ## all linters

bench: dev ## benchmarks: codec + end to end vs python-socketio and Node (~20 min) -> benches/results/<date>.md
	FERROSIO_SHARED=$(abspath $(SHARED)) $(VENV)/bin/python benches/e2e.py

bench-smoke: ## the benchmark suite in smoke mode (checks only, no timing asserted)
	FERROSIO_SHARED=$(abspath $(SHARED)) $(VENV)/bin/python -m pytest -p no:cacheprovider benches/test_e2e_smoke.py

fuzz-tools: ## nightly Rust (minimal) and cargo-fuzz, if missing: what the fuzz targets build with
	rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

fuzz-smoke: fuzz-tools ## each fuzz target for FUZZ_SECONDS (25) s from its committed corpus; fails on a crash
	cd fuzz && cargo +nightly fuzz build --sanitizer none
	set -e; for t in $(FUZZ_TARGETS); do \
		work=$$(mktemp -d); \
		dict=; if [ -f fuzz/dict/$$t.dict ]; then dict=-dict=dict/$$t.dict; fi; \
		echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
		(cd fuzz && cargo +nightly fuzz run --sanitizer none $$t $$work corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 $$dict); \
		rm -rf $$work; \
	done

demo: dev client-bundle ## run the chat demo on http://127.0.0.1:5000 (add ?transport=polling)
	$(VENV)/bin/python examples/demo.py --port 5000

clean: ## remove build products and virtual environments
	rm -rf target fuzz/target fuzz/artifacts $(WHEEL_DIR) $(VENV) $(CI_VENV) .deps tests/node/node_modules tests/browser/node_modules
