# Agora: one hand-written Makefile. `make run` brings the local stack up,
# `make test` runs every test on its own servers, `make asan` runs them again
# under AddressSanitizer + UndefinedBehaviorSanitizer.

CC       ?= cc
CFLAGS   ?= -O2 -g
WARN      = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wformat=2 -Wno-format-nonliteral
PKGS      = libevent libevent_openssl libpq hiredis libcjson openssl zlib
SAN      ?=
ifeq ($(SAN),1)
SANFLAGS  = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
BUILD    ?= build-asan
else
BUILD    ?= build
endif
# agora-router allocates with jemalloc, as Redis does: its size-class caches
# take the per-request churn (cJSON nodes, evbuffer chains, strings) in 15%
# fewer instructions a request than glibc's malloc, whose fastbin
# consolidation ran on every request (tests/bench/profile.py). Not under the
# sanitizers, whose allocator must see every allocation (valgrind's memcheck
# needs --soname-synonyms=somalloc=*jemalloc*).
ifeq ($(SAN),1)
MALLOC_LIBS =
else
MALLOC_LIBS = -ljemalloc
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lm
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(CFLAGS) $(SANFLAGS) $(WARN) -Ilib -Irouter -Ibilling $(PKG_CFLAGS) -MMD -MP
LDFLAGS_ALL = $(SANFLAGS) $(LDFLAGS)

LIB_SRCS       := $(wildcard lib/*.c)
ROUTER_SRCS    := $(filter-out router/main.c,$(wildcard router/*.c))
BILLING_SRCS   := $(wildcard billing/*.c)
ANALYTICS_SRCS := $(wildcard analytics/*.c)
CTL_SRCS       := $(wildcard ctl/*.c)
MOCK_SRCS      := tests/mock/provider.c
UNIT_SRCS      := $(wildcard tests/unit/test_*.c)
BENCH_SRCS     := $(wildcard tests/bench/bench_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIB_OBJS    := $(call obj,$(LIB_SRCS))
ROUTER_OBJS := $(call obj,$(ROUTER_SRCS))
UNIT_BINS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
BENCH_BINS  := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))
BINS = $(BUILD)/agora-router $(BUILD)/agora-billing $(BUILD)/agora-analytics \
       $(BUILD)/agoractl $(BUILD)/agora-mock-provider

.PHONY: all deps run stop status test unit asan clean bench profile memcheck web install
all: $(BINS) $(UNIT_BINS) web

# The dashboards' charting library: installed from the lock file (npm ci, when
# node_modules is missing or older than the lock), its dist file copied to
# analytics/web/vendor/, which agora-analytics serves. No network at run time.
WEB = analytics/web
web: $(WEB)/vendor/chart.umd.min.js
$(WEB)/node_modules/.package-lock.json: $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --ignore-scripts
$(WEB)/vendor/chart.umd.min.js: $(WEB)/node_modules/.package-lock.json
	@mkdir -p $(dir $@)
	sed '/^\/\/# sourceMappingURL=/d' $(WEB)/node_modules/chart.js/dist/chart.umd.min.js > $@.tmp && mv $@.tmp $@

deps:
	@sh deploy/install-deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libagora.a: $(LIB_OBJS)
	@rm -f $@; ar rcs $@ $^
$(BUILD)/librouter.a: $(ROUTER_OBJS)
	@rm -f $@; ar rcs $@ $^

$(BUILD)/agora-router: $(call obj,router/main.c) $(BUILD)/librouter.a $(BUILD)/libagora.a
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(PKG_LIBS) $(MALLOC_LIBS)
$(BUILD)/agora-billing: $(call obj,$(BILLING_SRCS)) $(BUILD)/libagora.a
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(PKG_LIBS)
$(BUILD)/agora-analytics: $(call obj,$(ANALYTICS_SRCS)) $(BUILD)/libagora.a
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(PKG_LIBS)
$(BUILD)/agoractl: $(call obj,$(CTL_SRCS)) $(BUILD)/libagora.a
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(PKG_LIBS)
$(BUILD)/agora-mock-provider: $(call obj,$(MOCK_SRCS)) $(BUILD)/libagora.a
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(PKG_LIBS)

# Unit tests: cmocka binaries linking the module under test from the archives.
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/librouter.a $(BUILD)/libagora.a
	@mkdir -p $(dir $@)
	$(CC) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LDFLAGS_ALL) $(PKG_LIBS) $(shell pkg-config --libs cmocka)

# billing's modules (objects before the archives: they use lib/'s) are not in an archive: a unit test names what it links.
$(BUILD)/tests/test_evcols: $(call obj,billing/evcols.c)

# Benchmarks: binaries linking the modules they measure.
.SECONDARY: $(call obj,$(BENCH_SRCS))
$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(BUILD)/librouter.a $(BUILD)/libagora.a
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(PKG_LIBS)

# The local stack on fixed ports under ./var (see README).
run: deps
	@$(MAKE) --no-print-directory all
	@AGORA_SIMULATE=$${AGORA_SIMULATE:-1} bash deploy/devstack.sh start var

stop:
	@bash deploy/devstack.sh stop var

status:
	@bash deploy/devstack.sh status var

unit: all
	@bash tests/run-all.sh --unit-only $(BUILD)

# Every test: unit (cmocka) + integration (pytest, real PostgreSQL/Redis).
test: deps
	@$(MAKE) --no-print-directory all
	@bash tests/run-all.sh $(BUILD)

# Sanitizer reports of every process (services included) land in
# build-asan/sanitizer/; tests/run-all.sh counts each report as a failure.
asan: deps
	@$(MAKE) --no-print-directory SAN=1 all
	@rm -rf build-asan/sanitizer && mkdir -p build-asan/sanitizer
	@ASAN_OPTIONS=detect_leaks=1:log_path=$(CURDIR)/build-asan/sanitizer/asan \
		UBSAN_OPTIONS=print_stacktrace=1:log_path=$(CURDIR)/build-asan/sanitizer/ubsan \
		AGORA_SANITIZER_DIR=$(CURDIR)/build-asan/sanitizer bash tests/run-all.sh build-asan

# Figures as ratios against a baseline measured in the same run (README,
# "Performance").
# nginx and wrk (the router's baselines and load) come from `install-deps.sh
# --bench`, for `make bench` only; `make test` never needs them.
bench: deps
	@sh deploy/install-deps.sh --bench
	@$(MAKE) --no-print-directory all $(BENCH_BINS) $(BUILD)/bench/loadgen
	@for b in $(BENCH_BINS); do echo "== $$b"; $$b || exit 1; done
	@echo "== tests/bench/billing.py"; AGORA_BUILD=$(BUILD) /usr/bin/python3 tests/bench/billing.py
	@echo "== tests/bench/analytics.py"; AGORA_BUILD=$(BUILD) /usr/bin/python3 tests/bench/analytics.py
	@echo "== tests/bench/router.py"; AGORA_BUILD=$(BUILD) /usr/bin/python3 tests/bench/router.py

# Instructions per request of agora-router under callgrind (README
# "Performance"): a figure the machine's load does not move, for comparing
# two commits. Not part of `make bench` (valgrind makes it slow to start).
profile: deps
	@sh deploy/install-deps.sh --bench
	@$(MAKE) --no-print-directory all $(BUILD)/bench/loadgen
	@AGORA_BUILD=$(BUILD) /usr/bin/python3 tests/bench/profile.py

# agora-router under valgrind's memcheck with load, odd bodies and a drain;
# non-zero on any error or definite leak (tests/bench/memcheck.py).
memcheck: deps
	@sh deploy/install-deps.sh --bench
	@$(MAKE) --no-print-directory all $(BUILD)/bench/loadgen
	@AGORA_BUILD=$(BUILD) /usr/bin/python3 tests/bench/memcheck.py

# Fuzzing (README "Fuzzing"): clang's libFuzzer with ASan + UBSan over the
# parsers, built in build-fuzz/ by tests/fuzz/fuzz.mk and run for
# FUZZ_SECONDS in total by tests/fuzz/run.sh; non-zero on a crash. clang comes
# from `make fuzz-deps`, never needed by `make test`.
FUZZ_SECONDS ?= 60
.PHONY: fuzz fuzz-deps
fuzz-deps:
	@sh deploy/install-deps.sh --fuzz
fuzz: deps fuzz-deps
	@$(MAKE) --no-print-directory -f tests/fuzz/fuzz.mk
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

clean:
	rm -rf build build-asan build-fuzz $(WEB)/vendor

# What a machine or an image runs, at the paths deploy/systemd and deploy/k8s
# name: binaries in $(PREFIX)/bin, the dashboards in share/agora/web, the
# migrations in share/agora/migrations (agoractl --migrations), the example
# configuration, units and guides in share/doc/agora/deploy. DESTDIR stages.
PREFIX ?= /usr/local
SHARE = $(DESTDIR)$(PREFIX)/share
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(SHARE)/agora/web/vendor $(SHARE)/agora/migrations \
		$(SHARE)/doc/agora/deploy
	install -m 0755 $(BUILD)/agora-router $(BUILD)/agora-billing $(BUILD)/agora-analytics \
		$(BUILD)/agoractl $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(WEB)/*.html $(WEB)/*.js $(WEB)/*.css $(WEB)/*.svg $(SHARE)/agora/web/
	install -m 0644 $(WEB)/vendor/* $(SHARE)/agora/web/vendor/
	install -m 0644 migrations/*.sql $(SHARE)/agora/migrations/
	cp -R deploy/*.md deploy/agora.conf.example deploy/systemd deploy/k8s deploy/grafana \
		$(SHARE)/doc/agora/deploy/

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
