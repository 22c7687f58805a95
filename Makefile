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

# The bundled models at work: 8 images of each Fashion-MNIST class (a column per class), a
# melody from the notes model, six moving-fashion clips from the video model (each when it is
# bundled), and the kernel speeds of this machine.
demo: build
	mkdir -p demo
	.build/release/diffuse generate image --count 80 --grid --out demo/fashion-mnist-grid.png
	@if [ -f samples/audio/model_index.json ]; then \
	  .build/release/diffuse generate audio --class 60,64,67,72,67,64,60 --out demo/melody.wav --spectrogram demo/melody.png; \
	fi
	@if [ -f samples/video/model_index.json ]; then \
	  .build/release/diffuse generate video --class t-shirt,trouser,sandal,sneaker,bag,ankle-boot --columns 6 --out demo/moving-fashion.mp4; \
	fi
	.build/release/diffuse bench kernels | tee demo/bench-kernels.txt
	.build/release/diffuse bench kernels --json > demo/bench-kernels.json
	@echo "demo/ now holds:"; ls -l demo
	@echo "the grid of all ten classes: demo/fashion-mnist-grid.png"

clean:
	rm -rf .build demo

# `make install [PREFIX=/usr/local]`: the binary to $(PREFIX)/bin and the bundled models to
# $(PREFIX)/share/diffuse/<image|audio|video>, where an installed `diffuse` finds them without
# DIFFUSE_SAMPLES; shell completions for bash, zsh and fish beside them.
PREFIX ?= /usr/local
.PHONY: install
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/diffuse
	install -m 755 .build/release/diffuse $(DESTDIR)$(PREFIX)/bin/diffuse
	for m in image audio video; do \
	  if [ -f samples/$$m/model_index.json ]; then rm -rf $(DESTDIR)$(PREFIX)/share/diffuse/$$m; cp -R samples/$$m $(DESTDIR)$(PREFIX)/share/diffuse/$$m; fi; \
	done
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	.build/release/diffuse --generate-completion-script bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/diffuse
	.build/release/diffuse --generate-completion-script zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_diffuse
	.build/release/diffuse --generate-completion-script fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/diffuse.fish
