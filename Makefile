# The whole set-up on a fresh machine is `make demo` or `make test`; both install what is missing first.
SWIFT ?= swift
# Tests run on the optimised build: numeric Swift in debug is 10-50x slower.
TEST_FLAGS ?= -c release -Xswiftc -enable-testing

.PHONY: deps build test demo clean fuzz

deps:
	scripts/install-deps

build: deps
	$(SWIFT) build -c release

test: deps
	$(SWIFT) build $(TEST_FLAGS) --build-tests
	$(SWIFT) test $(TEST_FLAGS) --skip-build

# The bundled models at work: 8 images of each Fashion-MNIST class (a column per class), a
# melody from the notes model, six moving-fashion clips from the video model, four images of
# each of 14 prompts from the emoji text-to-image model and a dozen emoji names drawn beside the
# real emoji (6 seen in training, 6 held out; ~2 min with the probe), each when the model is
# bundled, and the kernel speeds of this machine.
demo: build
	mkdir -p demo
	.build/release/diffuse generate image --count 80 --grid --out demo/fashion-mnist-grid.png
	@if [ -f samples/audio/model_index.json ]; then \
	  .build/release/diffuse generate audio --class 60,64,67,72,67,64,60 --out demo/melody.wav --spectrogram demo/melody.png; \
	fi
	@if [ -f samples/video/model_index.json ]; then \
	  .build/release/diffuse generate video --class t-shirt,trouser,sandal,sneaker,bag,ankle-boot --columns 6 --out demo/moving-fashion.mp4; \
	fi
	@if [ -f samples/text-to-image/model_index.json ]; then \
	  .build/release/diffuse generate image --prompt-file samples/text-to-image/prompts.txt --count 4 --grid --out demo/emoji-prompts.png; \
	  .build/release/diffuse dataset emoji --out demo/emoji; \
	  .build/release/diffuse evaluate image --prompts demo/emoji --model samples/text-to-image --max-prompts 6 --guidance 3 --steps 20 \
	    --grid demo/emoji-beside-real.png; \
	fi
	.build/release/diffuse bench kernels | tee demo/bench-kernels.txt
	.build/release/diffuse bench kernels --json > demo/bench-kernels.json
	@echo "demo/ now holds:"; ls -l demo
	@echo "the grid of all ten classes: demo/fashion-mnist-grid.png"

# libFuzzer over every parser of user files (Fuzz/, a package of its own): each target for
# FUZZ_SECONDS (default 10, CI-sized; a long run: make fuzz FUZZ_SECONDS=3600), starting from
# Fuzz/Corpus/<target> plus the test corpora. A crash leaves crash-* in Fuzz/ and fails the run.
FUZZ_SECONDS ?= 10
FUZZ_TARGETS ?= png wav mp4 safetensors checkpoint config tokenizer manifest
fuzz: deps
	$(SWIFT) build --package-path Fuzz -c release -Xswiftc -sanitize=fuzzer -Xswiftc -use-ld=lld
	cd Fuzz && for t in $(FUZZ_TARGETS); do \
	  extra=""; \
	  case $$t in png) extra=../Tests/ImageTests/Formats;; wav) extra=../Tests/AudioTests/Corrupt;; \
	    mp4) extra=../Tests/VideoTests/Corrupt;; safetensors|checkpoint) extra=../Tests/NNTests/Corrupt;; \
	    config) extra=../Tests/CLITests/Hostile/configs;; esac; \
	  echo "== $$t"; \
	  .build/release/diffuse-fuzz $$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
	    Corpus/$$t $$extra || exit 1; \
	done

clean:
	rm -rf .build demo Fuzz/.build

# `make install [PREFIX=/usr/local]`: the binary to $(PREFIX)/bin and the bundled models to
# $(PREFIX)/share/diffuse/<image|audio|video>, where an installed `diffuse` finds them without
# DIFFUSE_SAMPLES; shell completions for bash, zsh and fish beside them.
PREFIX ?= /usr/local
.PHONY: install
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/diffuse
	install -m 755 .build/release/diffuse $(DESTDIR)$(PREFIX)/bin/diffuse
	for m in image audio video text-to-image; do \
	  if [ -f samples/$$m/model_index.json ]; then rm -rf $(DESTDIR)$(PREFIX)/share/diffuse/$$m; cp -R samples/$$m $(DESTDIR)$(PREFIX)/share/diffuse/$$m; fi; \
	done
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	.build/release/diffuse --generate-completion-script bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/diffuse
	.build/release/diffuse --generate-completion-script zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_diffuse
	.build/release/diffuse --generate-completion-script fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/diffuse.fish
