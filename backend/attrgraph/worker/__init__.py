"""The tracing worker process: claim a job, run it on a tracer (torch, or a fake in tests), store the
result, acknowledge. Started by `attrgraph worker` or `attrgraph serve`."""
