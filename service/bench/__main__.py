"""`python -m service.bench`: the old name of `python -m bench`."""

from service.bench import forward

forward("bench")
