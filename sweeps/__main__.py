"""``python -m sweeps`` is the ``ckpd-sweep`` command."""

from .cli import app

app(prog_name="ckpd-sweep")
