"""The tracing service: FastAPI API (api/), tracing workers (worker.py), Redis as cache, queue and
store (keys.py, store.py, queue.py), and `attrgraph serve` for a local run. See docs/deploy.md."""
