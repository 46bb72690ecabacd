# ferrosio developer commands. `make help` lists them.
#
# Three virtual environments: .venv (development, editable `maturin develop` build, and the
# build tools), .ci-venv (recreated by `make test`: the release wheel installed as users get
# it, so a packaging mistake fails the tests) and .docs-venv (the same wheel plus Sphinx).
#
# Release wheels are abi3 (one per platform for CPython >= 3.10) and linked with zig against
# glibc 2.17 (manylinux2014) or musl 1.2 (musllinux_1_2), so the build machine's own glibc
# does not leak into the tag. Linux hosts only.

PYTHON      ?= python3
VENV        := .venv
VENV_READY  := $(VENV)/.ready
CI_VENV     := .ci-venv
DOCS_VENV   := .docs-venv
NODE_DEPS   := .deps/node
SHARED      ?= ../shared
FUZZ_TARGETS := socketio_packet msgpack_packet engineio_payload engineio_v3_payload ws_frames http_front_door
FUZZ_SECONDS ?= 25
WHEEL_DIR   := dist
HOST_ARCH   := $(shell uname -m)
# maturin runs zig as `python -m ziglang` with the first Python on PATH: the venv's
MATURIN     := PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(CURDIR)/$(VENV)/bin/maturin
RELEASE     := build --release --zig --out $(WHEEL_DIR)
# the wheel this machine runs (tests and docs install it): a shell glob, expanded when used
HOST_WHEEL  := $(WHEEL_DIR)/ferrosio-*-manylinux*_2_17_$(HOST_ARCH).whl
LINUX_TARGETS := x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu \
                 x86_64-unknown-linux-musl aarch64-unknown-linux-musl

.PHONY: help dev wheel dist test-dist docs client-bundle node-deps test test-rust test-python lint lint-rust lint-python demo bench bench-smoke fuzz-tools fuzz-smoke soak soak-ci clean

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# installed again when a requirements file changes (a .venv from before keeps working)
$(VENV_READY): requirements-dev.txt requirements-dist.txt tests/requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q maturin -r tests/requirements.txt -r requirements-dev.txt \
		-r requirements-dist.txt
	touch $@

dev: $(VENV_READY) ## build the extension in place (debug-ish, fast) into .venv
	. $(VENV)/bin/activate && maturin develop --release

wheel: $(VENV_READY) ## the release wheel for this machine (abi3, manylinux2014) into dist/
	rm -f $(WHEEL_DIR)/ferrosio-*-manylinux*_$(HOST_ARCH).whl
	$(MATURIN) $(RELEASE) --target $(HOST_ARCH)-unknown-linux-gnu --compatibility manylinux2014

dist: $(VENV_READY) ## every release artifact into dist/: 4 abi3 wheels (manylinux2014, musllinux_1_2; x86_64, aarch64) + sdist
	rustup target add $(LINUX_TARGETS)
	rm -rf $(WHEEL_DIR)
	set -e; for target in $(LINUX_TARGETS); do \
		case $$target in *-musl) compat=musllinux_1_2 ;; *) compat=manylinux2014 ;; esac; \
		$(MATURIN) $(RELEASE) --target $$target --compatibility $$compat; \
	done
	$(VENV)/bin/python tools/musl_libc_soname.py $(WHEEL_DIR)/*musllinux*.whl
	$(MATURIN) sdist --out $(WHEEL_DIR)
	for whl in $(WHEEL_DIR)/*.whl; do $(VENV)/bin/auditwheel show $$whl || exit 1; done
	ls -l $(WHEEL_DIR)

test-dist: $(VENV_READY) ## check dist/: tags, symbols, auditwheel; install the runnable wheels in fresh venvs (no Rust on PATH), server + client through an ack
	FERROSIO_REQUIRE_DIST=1 $(VENV)/bin/python -m pytest -p no:cacheprovider \
		--confcutdir=tests/dist -v -rs tests/dist/test_wheels.py

docs: ## the API reference from the docstrings (Sphinx, warnings are errors) -> docs/_build/html
	@ls $(HOST_WHEEL) >/dev/null 2>&1 || $(MAKE) wheel
	rm -rf $(DOCS_VENV)
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/pip install -q --upgrade pip
	$(DOCS_VENV)/bin/pip install -q $(HOST_WHEEL) -r docs/requirements.txt
	cd docs && ../$(DOCS_VENV)/bin/python -c \
		"import ferrosio; assert 'site-packages' in ferrosio.__file__, ferrosio.__file__"
	cd docs && ../$(DOCS_VENV)/bin/sphinx-build -W --keep-going -q -b html . _build/html
	@echo "docs: $(CURDIR)/docs/_build/html/index.html"

client-bundle: ## the official socket.io-client (tests, and the browser bundle the demo serves)
	npm install --prefix tests/node --no-audit --no-fund --loglevel=error

node-deps: client-bundle ## npm packages for the peers: + playwright-core, socket.io (reference server), the redis adapter/emitter (cluster tests)
	npm install --prefix tests/browser --no-audit --no-fund --loglevel=error
	npm install --prefix tests/cluster --no-audit --no-fund --loglevel=error
	mkdir -p $(NODE_DEPS) && cp $(SHARED)/reference/package.json $(NODE_DEPS)/
	npm install --prefix $(NODE_DEPS) --no-audit --no-fund --loglevel=error

test-rust: ## Rust unit tests of the core crate
	cargo test -p ferrosio-core

test-python: ## pytest against the installed wheel in .ci-venv (needs `make wheel node-deps`)
	rm -rf $(CI_VENV)
	$(PYTHON) -m venv $(CI_VENV)
	$(CI_VENV)/bin/pip install -q --upgrade pip
	$(CI_VENV)/bin/pip install -q $(HOST_WHEEL) -r tests/requirements.txt
	cd tests && NODE_PATH=$(CURDIR)/$(NODE_DEPS)/node_modules ../$(CI_VENV)/bin/python -c \
		"import ferrosio, sys; assert 'site-packages' in ferrosio.__file__, ferrosio.__file__"
	NODE_PATH=$(CURDIR)/$(NODE_DEPS)/node_modules $(CI_VENV)/bin/python -m pytest -p no:cacheprovider tests
	FERROSIO_SHARED=$(abspath $(SHARED)) $(CI_VENV)/bin/python -m pytest -p no:cacheprovider \
		benches/test_e2e_smoke.py benches/test_e2e_bench.py benches/test_app_bench.py \
		benches/test_cluster_smoke.py

test: wheel node-deps test-rust test-python soak-ci ## everything: build the wheel, install it fresh, run all tests, 60 s soak

SOAK_SECONDS ?= 1800
soak: dev ## churn + traffic on every transport against examples/reference_app.py for SOAK_SECONDS (default 1800); fails on a leak
	SOAK_SECONDS=$(SOAK_SECONDS) $(VENV)/bin/python benches/soak.py

soak-ci: ## the soak for 60 s with the installed wheel in .ci-venv (what `make test` runs; needs test-python first)
	SOAK_SECONDS=60 $(CI_VENV)/bin/python benches/soak.py

lint-rust: ## cargo fmt --check and clippy -D warnings
	cargo fmt --all --check
	cargo clippy --all-targets -- -D warnings

lint-python: $(VENV_READY) ## ruff and mypy --strict on python/
	$(VENV)/bin/ruff check python tests examples benches tools
	$(VENV)/bin/ruff format --check python tests examples benches tools
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
	rm -rf target fuzz/target fuzz/artifacts $(WHEEL_DIR) $(VENV) $(CI_VENV) $(DOCS_VENV) \
		docs/_build .deps tests/node/node_modules tests/browser/node_modules tests/cluster/node_modules
