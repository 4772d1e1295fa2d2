"""What the API and the workers share about Redis: keys, records, job submission and claiming, the
graph store, the worker registry and the worker-call channel. Imports neither FastAPI nor torch."""
