# The two commands that matter: `make run` (the server on its demo defaults) and `make test`.
CARGO ?= cargo
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: run test fmt lint doc unit bench screenshots

## The proxy on 127.0.0.1:8080 with the built-in echo agent, data under ./.agentapi-proxy.
run:
	$(CARGO) run --locked -- server -c config.demo.json

## Formatting, lints (warnings are errors), docs, and every test.
test: fmt lint doc unit

fmt:
	$(CARGO) fmt --all --check

lint:
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --workspace --no-deps --quiet

unit:
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --locked --workspace --no-fail-fast
	$(CARGO) test --locked --workspace --doc
else
	$(CARGO) test --locked --workspace --no-fail-fast
endif

## Benchmark probe against nginx and the agent itself (installs nginx and wrk if missing);
## prints the ratio table, writes bench/results/latest.json. `bench/run.sh --quick` = smoke run;
## BENCH_ARGS passes options to bench/bench.py (e.g. BENCH_ARGS="--reps 7 --extra-nginx-w1").
bench:
	bench/run.sh $(BENCH_ARGS)

## Screenshots of every dashboard page, light and dark, into docs/ui/ (needs Chromium:
## apt-get install chromium chromium-driver).
screenshots:
	UI_SCREENSHOTS_DIR=$(CURDIR)/docs/ui $(CARGO) test --locked --test integration \
		browser::screenshots::write_screenshots -- --ignored --exact
