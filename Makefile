# perkhub — the two commands (and a few helpers). Everything real lives in CMake
# and in tools/; this file only strings the steps together.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_TSAN ?= build-tsan
BUILD_FUZZ ?= build-fuzz
JOBS       ?= $(shell nproc)

.PHONY: all deps build build-asan build-tsan build-fuzz demo test test-fast valgrind bench bench-quick bench-baseline format \
	clean fuzz soak

all: build

deps:
	@tools/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DPH_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD_ASAN) -j$(JOBS)

# ThreadSanitizer: the core, perkhubd, supsim, perkctl, the plugins and the unit and
# plugin tests instrumented (the tests through tests/tsan: Criterion itself cannot
# start under TSan, CMakeLists.txt's ph_add_test says how); the e2e drivers stay
# uninstrumented Criterion programs driving instrumented daemons.
build-tsan: deps
	@cmake -S . -B $(BUILD_TSAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPH_TSAN=ON >/dev/null
	@cmake --build $(BUILD_TSAN) -j$(JOBS)

# The libFuzzer harnesses of tests/fuzz (clang: Debian's gcc has no libFuzzer), with the
# core and the plugins instrumented and under ASan+UBSan. Only the harnesses (and the
# plugins an in-process daemon loads) are built: -DPH_TESTS=OFF, target fuzz_all. CC is
# read when the tree is first configured only; `make clean` starts over.
build-fuzz:
	@tools/deps.sh --fuzz
	@CC=clang cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPH_FUZZ=ON \
	  -DPH_TESTS=OFF >/dev/null
	@cmake --build $(BUILD_FUZZ) -j$(JOBS) --target fuzz_all

# Every harness for FUZZ_SECONDS (default 300) on a copy of its corpus that grows from one
# run to the next (build-fuzz/fuzz/work); a crash fails it and names the reproducer
# (tests/fuzz/README.md: what to do with one). `make fuzz FUZZ=csv` runs one harness.
FUZZ_SECONDS ?= 300
fuzz: build-fuzz
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh --long $(BUILD_FUZZ) $(FUZZ)

# The crash test for SOAK_CYCLES (default 1000) kill -9 cycles on the release build, with
# its figures at the end (tests/crash_long.sh).
SOAK_CYCLES ?= 1000
soak: build
	@tests/crash_long.sh $(BUILD) $(SOAK_CYCLES)

# Installs, builds, starts perkhubd on the embedded default and prints a first flow.
# `make demo PORT=8090` when 8080 is taken (PORT=0: any free port). Set with =,
# not ?=, so that a PORT in the environment (set for something else) is not taken.
PORT = 8080
demo: build
	@PORT=$(PORT) tools/demo.sh $(BUILD)

# Installs (tools/deps.sh --browser adds Chromium for the ops page's browser test),
# builds, runs every test: once in the normal build, once under ASan+UBSan,
# then under ThreadSanitizer (a race report stops the process that has it: perkhubd
# or a unit test's child exits 66 and the test fails), then every fuzz harness on its
# committed corpus: each input once, then FUZZ_TEST_SECONDS of fuzzing, two at a time
# (tests/fuzz/run.sh --short; about two minutes with the build). tests/tsan.supp holds only
# documented library false positives. setarch -R runs it without address-space
# randomization: Debian 12's libtsan (gcc 12) has a fixed memory layout and aborts
# with "unexpected memory mapping" on kernels that randomize more than 28 bits
# of mmap addresses (vm.mmap_rnd_bits, 32 on some distributions); newer
# runtimes re-exec themselves that way, this one does not.
FUZZ_TEST_SECONDS ?= 15
test: build build-asan build-tsan build-fuzz
	@tools/deps.sh --browser
	@cd $(BUILD) && ctest --output-on-failure
	@cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure
	@cd $(BUILD_TSAN) && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 \
	  suppressions=$(CURDIR)/tests/tsan.supp" setarch -R ctest --output-on-failure
	@FUZZ_TEST_SECONDS=$(FUZZ_TEST_SECONDS) FUZZ_JOBS=2 tests/fuzz/run.sh --short $(BUILD_FUZZ)

# Only the normal build, for the edit-compile-test loop.
test-fast: build
	@tools/deps.sh --browser
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

# Issue 18's regression guard: perkhubd CPU per order and per recharge, each as a ratio to
# a calibration server measured in the same run, against the ratios in bench/baseline.json,
# under a minute; fails when either ratio grows more than 15 %.
# bench-baseline writes this run's figures as the new baseline (commit it).
bench-quick: build
	@bench/quick.sh $(BUILD)

bench-baseline: build
	@BQ_UPDATE=1 bench/quick.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN) $(BUILD_FUZZ)
