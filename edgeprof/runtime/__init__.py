"""Runtimes that run a model artifact: the JSON-lines worker process and one folder per runtime."""
