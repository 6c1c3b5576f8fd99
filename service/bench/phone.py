"""`python -m service.bench.phone`: the old name of `python -m bench.phone`."""

from service.bench import forward

forward("bench.phone")
