"""`python -m service.bench.stages`: the old name of `python -m bench.stage_timing`."""

from service.bench import forward

forward("bench.stage_timing")
