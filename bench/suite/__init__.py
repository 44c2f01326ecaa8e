"""idme's benchmark suite: processing cost, labelling quality, live latency, enrolment/verification cost and
speaker-verification robustness, each measured through the same code the CLI runs. Entry point: bench/run.py.
"""
