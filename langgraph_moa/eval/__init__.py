"""Evaluation harness: MT-Bench single-answer grading, AlpacaEval-style pairwise preference and
GSM8K accuracy for any MoA spec, resumable, summarised per dollar, exportable to the official
tools (FastChat ``llm_judge`` and AlpacaEval). ``moa eval --help`` is the entry point."""
