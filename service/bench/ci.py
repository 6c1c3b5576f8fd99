"""`python -m service.bench.ci`: the old name of `python -m bench.ci`."""

from service.bench import forward

forward("bench.ci")
