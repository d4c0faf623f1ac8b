"""taskman's benchmark suite: ``python -m bench`` (see bench/README.md).

Every figure it reports that matters is a ratio measured in one run: the
servers of a flavour are up together and driven in turn, round after round,
so a noisy neighbour slows both sides of a ratio alike.
"""
