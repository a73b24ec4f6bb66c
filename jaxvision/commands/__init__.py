"""Subcommands of the ``jaxvision`` command line (see :mod:`jaxvision.cli`)."""
