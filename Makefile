# Ariane — the two commands a newcomer needs: `make demo` and `make test`.
# Both install what they need (a git-ignored .venv with moto, aws-sam-translator,
# cfn-lint and cargo-lambda) and start/stop the local stack themselves.

SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help bootstrap build demo test test-unit test-integration lint-template validate deploy clean

help:
	@echo "make demo    - run the whole pipeline on generated data against a local moto stack"
	@echo "make test    - unit, property and integration tests (moto, cfn-lint, cargo-lambda)"
	@echo "make validate - validate segment files, channel specs and the template"
	@echo "make deploy  - sam build + sam deploy (after a one-time sam deploy --guided)"

bootstrap:
	@scripts/bootstrap.sh

build: bootstrap
	$(CARGO) build --workspace --bins

demo: build
	$(CARGO) run --quiet -p ariane-local -- demo

test: bootstrap
	$(CARGO) build --workspace --bins --tests
	$(CARGO) test --workspace --no-fail-fast

validate: bootstrap
	.venv/bin/cfn-lint infra/template.yaml
	$(CARGO) run --quiet -p ariane-local -- validate

deploy:
	sam build && sam deploy

clean:
	rm -rf .local .aws-sam
