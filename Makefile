# The README's commands. `make run` starts the gateway (SQLite queue, and
# the bundled Extend simulator unless EXTEND_API_TOKEN is set); `make test`
# runs the whole suite, plain and under ASan + UBSan.

BUILD ?= build
BUILD_ASAN ?= build-asan
JOBS ?= $(shell nproc)

.PHONY: all deps build build-asan test test-plain test-asan run certs bench fuzz container-test campaign clean

all: build

deps:
	@scripts/deps.sh test

build:
	@scripts/deps.sh build
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

build-asan:
	@scripts/deps.sh build
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DDG_SANITIZE=ON >/dev/null
	cmake --build $(BUILD_ASAN) -j $(JOBS)

# The test packages come before the build: the build's configuration
# registers the PostgreSQL tests only where PostgreSQL is installed.
test-plain: deps
	$(MAKE) --no-print-directory build
	ctest --test-dir $(BUILD) --output-on-failure -j 2

test-asan: deps
	$(MAKE) --no-print-directory build-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(BUILD_ASAN) --output-on-failure -j 2

test: test-plain test-asan

certs:
	@certs/make-dev-certs.sh certs/dev >/dev/null

run: build certs
	scripts/run-dev.sh $(BUILD)

# Every benchmark, then bench/RESULTS.md and bench/plots/ (bench/all.sh);
# BENCH_QUICK=1 for a run of a few minutes that checks the chain.
bench:
	@scripts/deps.sh bench
	bench/all.sh

FUZZ_SECONDS ?= 30
fuzz:
	@scripts/deps.sh fuzz
	tests/fuzz/build.sh $(FUZZ_SECONDS)

container-test: build
	@scripts/deps.sh container
	tests/container/run.sh

# The reliability campaigns in their long form (docs/durability.md, "Reliability");
# ctest runs the short form as campaign.crash and campaign.faults.
campaign: build
	DG_CAMPAIGN=long python3 tests/campaigns/crash.py; rc=$$?; \
	  DG_CAMPAIGN=long python3 tests/campaigns/faults.py && exit $$rc

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
