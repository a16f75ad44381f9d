# SPDX-License-Identifier: MIT
#
# A thin front end over CMake and ctest.
#
#   make run          install what is missing, build, start build/adieu-server (ARGS=... adds flags)
#   make test         install the test set, build build/, run every test
#   make sanitize     the same tests in build-asan/ with AddressSanitizer + UBSan
#   make memcheck     the lifecycle tests under valgrind
#   make soak         1,000,000 connections against build/ (SOAK_ARGS=...), docs/soak.*
#   make fuzz         the libFuzzer harnesses in build-fuzz/ (clang-14), FUZZ_SECONDS=60 each
#   make fuzz-ci      the same, FUZZ_CI_SECONDS=20 each (CI)
#   make bench        bench/run: adieu beside the ceilings and peers, bench/RESULTS.md + charts
#   make bench-count  instruction counts of the codec hot paths (callgrind), bench/codecs.md
#   make build | clean | format | format-check | lint-proto

BUILD      ?= build
ASAN_BUILD ?= build-asan
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_JOBS ?= 2
ARGS       ?=

# Warnings are errors in CI (STYLE 2.8) and stay warnings on a developer's machine. The
# value is always passed, so a build dir configured once with CI=true does not keep it.
ifeq ($(CI),true)
WERROR ?= ON
else
WERROR ?= OFF
endif

INSTALL_DEPS = bash scripts/install-deps
CTEST        = ctest --output-on-failure -j$(CTEST_JOBS)

CLANG_FORMAT ?= $(firstword $(shell command -v clang-format-14 clang-format 2>/dev/null) clang-format)
FORMAT_DIRS  := include src programs tests examples fuzz bench
FORMAT_FILES  = find $(wildcard $(FORMAT_DIRS)) -type f \( -name '*.c' -o -name '*.h' \) -print0

VALGRIND_FLAGS ?= --error-exitcode=1 --leak-check=full

SANITIZER_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# $(call cmake_build,DIR,EXTRA_CMAKE_FLAGS): configure DIR and build everything in it.
define cmake_build
cmake -S . -B $(1) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DADIEU_WERROR=$(WERROR) $(2)
cmake --build $(1) -j$(JOBS)
endef

# src/proto/ is the sans-I/O core (STYLE 2.1): no libuv, no socket headers, no clock, no
# logger. Lines that start as comments are skipped so prose may name what code may not use.
PROTO_DIR       := src/proto
# The pure utilities compiled into adieu_proto are held to the same rule.
PROTO_PATHS     := $(PROTO_DIR) src/util/buf.c src/util/buf.h src/util/json.c src/util/json.h
PROTO_FORBIDDEN := \#[[:space:]]*include[[:space:]]*<(uv\.h|uv/|sys/socket\.h|netinet/|arpa/|netdb\.h|sys/un\.h)|adieu/adieu\.h|\<uv_|clock_gettime|\<time\(|gettimeofday|adieu_log

.PHONY: all run build test sanitize memcheck soak clean format format-check lint-proto deps \
        deps-test

all: build

deps:
	$(INSTALL_DEPS) build

# node_modules (the `ws` client and playwright-core) come from package-lock.json, pinned.
deps-test:
	$(INSTALL_DEPS) test
	@if [ -f package-lock.json ] && { ! [ -d node_modules/ws ] || \
	    ! [ -d node_modules/playwright-core ]; }; then npm ci --no-audit --no-fund; fi

build: deps
	$(call cmake_build,$(BUILD))

# exec: the server replaces the shell, so Ctrl+C reaches it and make waits for its drain.
run: build
	exec ./$(BUILD)/adieu-server $(ARGS)

test: deps-test
	$(call cmake_build,$(BUILD))
	$(CTEST) --test-dir $(BUILD)

sanitize: deps-test
	$(call cmake_build,$(ASAN_BUILD),-DADIEU_SANITIZE=ON)
	$(SANITIZER_ENV) $(CTEST) --test-dir $(ASAN_BUILD)

# ctest -T memcheck writes valgrind's report to a log file per test: on failure, print those
# that report errors.
memcheck: deps-test
	$(call cmake_build,$(BUILD))
	rm -f $(BUILD)/Testing/Temporary/MemoryChecker.*.log
	$(CTEST) --test-dir $(BUILD) -L lifecycle -T memcheck \
	    --overwrite MemoryCheckCommand=$$(command -v valgrind) \
	    --overwrite "MemoryCheckCommandOptions=$(VALGRIND_FLAGS)" \
	  || { for f in $$(grep -L 'ERROR SUMMARY: 0 errors' $(BUILD)/Testing/Temporary/MemoryChecker.*.log); do \
	         echo "==== $$f"; cat "$$f"; done; exit 1; }

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

format:
	$(FORMAT_FILES) | xargs -0 -r $(CLANG_FORMAT) -i

format-check:
	$(FORMAT_FILES) | xargs -0 -r $(CLANG_FORMAT) --dry-run --Werror

# libFuzzer with ASan + UBSan needs clang: build-fuzz/ holds only the harnesses (fuzz_all).
# fuzz/run fuzzes each on a copy of its corpus, prints exec/s and total runs per harness, and
# fails on any crash, leak, timeout or broken invariant (inputs saved in build-fuzz/fuzz-work/).
FUZZ_BUILD      ?= build-fuzz
FUZZ_CC         ?= clang-14
FUZZ_SECONDS    ?= 60
FUZZ_CI_SECONDS ?= 20
FUZZ_CORES      ?= frame http ws_frame utf8 ws_conn json

# $(call fuzz_run,SECONDS): build the harnesses and run each for SECONDS.
define fuzz_run
$(INSTALL_DEPS) test
cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=$(FUZZ_CC) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
    -DADIEU_FUZZ=ON -DADIEU_TESTS=OFF -DADIEU_WERROR=$(WERROR)
cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzz_all
bash fuzz/run -t $(1) -b $(FUZZ_BUILD) $(FUZZ_CORES)
endef

.PHONY: fuzz fuzz-ci

fuzz:
	$(call fuzz_run,$(FUZZ_SECONDS))

fuzz-ci:
	$(call fuzz_run,$(FUZZ_CI_SECONDS))

# Not part of `make test`: minutes, and it rewrites docs/soak.{csv,md,png}.
soak: build
	bash scripts/soak --build $(BUILD) $(SOAK_ARGS)

lint-proto:
	@if [ ! -d $(PROTO_DIR) ]; then echo "lint-proto: no $(PROTO_DIR)/"; exit 1; fi
	@if grep -rnE --include='*.[ch]' '$(PROTO_FORBIDDEN)' $(PROTO_PATHS) \
	      | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(/\*|\*|//)'; then \
	    echo "lint-proto: $(PROTO_DIR)/ must not use libuv, sockets, the clock or the logger"; \
	    exit 1; \
	fi
	@echo "lint-proto: $(PROTO_DIR)/ is sans-I/O"

# Instruction counts of the codec hot paths under callgrind (bench/count-instructions): prints
# Ir and Ir per byte for each bench_<codec> case and rewrites bench/codecs.md.
.PHONY: bench-count
bench-count: deps-test
	$(call cmake_build,$(BUILD))
	bash bench/count-instructions --build $(BUILD)

# Not part of `make test`: about 25 minutes; installs the peers (scripts/install-deps bench,
# npm ci), builds, and rewrites bench/RESULTS.md, bench/results.json and bench/*.png.
# BENCH_ARGS=... passes flags to bench/run (--quick, --runs N, --extra-ws NAME=CMD ...).
.PHONY: bench
bench:
	$(INSTALL_DEPS) bench
	@if [ -f package-lock.json ] && ! [ -d node_modules/ws ]; then npm ci --no-audit --no-fund; fi
	$(call cmake_build,$(BUILD))
	/usr/bin/python3 bench/run --build $(BUILD) --no-install --no-build $(BENCH_ARGS)
