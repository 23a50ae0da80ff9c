"""``python -m dilated_rnn.cli``: the ``drnn`` command (torchrun starts workers this way)."""

from . import entry

entry()
