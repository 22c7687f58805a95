# The whole set-up on a fresh machine is `make demo` or `make test`; both install what is missing first.
SWIFT ?= swift
# Tests run on the optimised build: numeric Swift in debug is 10-50x slower.
TEST_FLAGS ?= -c release -Xswiftc -enable-testing

.PHONY: deps build test demo clean

deps:
	scripts/install-deps

build: deps
	$(SWIFT) build -c release

test: deps
	$(SWIFT) build $(TEST_FLAGS) --build-tests
	$(SWIFT) test $(TEST_FLAGS) --skip-build

demo: build
	mkdir -p demo
	.build/release/diffuse bench kernels | tee demo/bench-kernels.txt
	.build/release/diffuse bench kernels --json > demo/bench-kernels.json
	@echo "demo/ now holds:"; ls -l demo

clean:
	rm -rf .build demo
