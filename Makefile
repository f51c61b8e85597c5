# Ariane — the two commands a newcomer needs: `make demo` and `make test`.
# Both install what they need (a git-ignored .venv with moto, aws-sam-translator,
# cfn-lint and cargo-lambda; cargo-machete in .tools) and start/stop the local stack
# themselves.

SHELL := /bin/bash
CARGO ?= cargo
# cargo-machete (unused dependencies), pinned, installed into ./.tools (git-ignored).
MACHETE_VERSION := 0.9.2
MACHETE := .tools/bin/cargo-machete

.PHONY: help bootstrap build demo test lint lint-tools validate bench-coldstart bench-realtime soak deploy clean

help:
	@echo "make demo     - run the whole pipeline on generated data against a local moto stack"
	@echo "make test     - lint gates, then unit, property and integration tests (moto, cfn-lint, cargo-lambda)"
	@echo "make lint     - cargo fmt --check, clippy -D warnings, unused dependencies (cargo-machete)"
	@echo "make validate - validate segment files, channel specs, campaigns, rules and the template"
	@echo "make bench-coldstart - each function's init time and zipped size (BENCHMARKS.md)"
	@echo "make soak     - 100,000 cases of identity's concurrent property test"
	@echo "make deploy   - sam build + sam deploy (after a one-time sam deploy --guided)"

bootstrap:
	@scripts/bootstrap.sh

build: bootstrap
	$(CARGO) build --workspace --bins

demo: build
	$(CARGO) run --quiet -p ariane-local -- demo

$(MACHETE):
	$(CARGO) install --locked --quiet --root .tools cargo-machete@$(MACHETE_VERSION)

lint-tools: $(MACHETE)

lint: lint-tools
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(MACHETE)

test: bootstrap lint
	.venv/bin/python scripts/moto_server_check.py
	scripts/chromium.sh
	$(CARGO) build --workspace --bins --tests
	$(CARGO) test --workspace --no-fail-fast

validate: bootstrap
	.venv/bin/cfn-lint infra/template.yaml
	$(CARGO) run --quiet -p ariane-local -- validate

bench-coldstart: bootstrap
	$(CARGO) bench -p ariane-local --bench coldstart

bench-realtime: bootstrap
	$(CARGO) bench -p ariane-local --bench realtime

soak:
	$(CARGO) test -p ariane-identity --release --test resolution -- --ignored soak --nocapture

deploy:
	sam build && sam deploy

clean:
	rm -rf .local .aws-sam
