"""`python -m service.bench.detectors`: the old name of `python -m bench.detectors`."""

from service.bench import forward

forward("bench.detectors")
