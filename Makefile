# perkhub — the two commands (and a few helpers). Everything real lives in CMake
# and in tools/; this file only strings the steps together.
BUILD      ?= build
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc)

.PHONY: all deps build build-asan demo test test-fast valgrind bench format clean

all: build

deps:
	@tools/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DPH_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD_ASAN) -j$(JOBS)

# Installs, builds, starts perkhubd on the embedded default and prints a first flow.
# `make demo PORT=8090` when 8080 is taken (PORT=0: any free port). Set with =,
# not ?=, so that a PORT in the environment (set for something else) is not taken.
PORT = 8080
demo: build
	@PORT=$(PORT) tools/demo.sh $(BUILD)

# Installs, builds, runs every test: once in the normal build, once under ASan+UBSan.
test: build build-asan
	@cd $(BUILD) && ctest --output-on-failure
	@cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure

# Only the normal build, for the edit-compile-test loop.
test-fast: build
	@cd $(BUILD) && ctest --output-on-failure

# Unit tests and the smoke e2e test (perkhubd itself included) under valgrind memcheck.
valgrind: build
	@tools/valgrind.sh $(BUILD)

# clang-format over every C file we own; the list is in tools/format.sh. format-check
# changes nothing and fails on an unformatted file (.ci/run).
.PHONY: format-check
format:
	@tools/deps.sh --format
	@tools/format.sh

format-check:
	@tools/deps.sh --format
	@tools/format.sh --check

# Issue 4's figures in one run (issuance vs the LMDB limit and the peers, lookups, bulk,
# supplier I/O, footprint), PASS/MISS per target: bench/README.md.
bench: build
	@bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
