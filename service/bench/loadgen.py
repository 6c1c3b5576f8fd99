"""`python -m service.bench.loadgen`: the old name of `python -m bench.loadgen`."""

from service.bench import forward

forward("bench.loadgen")
