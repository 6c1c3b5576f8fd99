"""`python -m service.jobs_latency`: the old name of `python -m bench.jobs_latency` (see service/bench)."""

from service.bench import forward

forward("bench.jobs_latency")
