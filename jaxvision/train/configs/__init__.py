"""Shipped experiment configs: each module's ``get_config()`` returns a ConfigDict.

Load one by name with :func:`jaxvision.train.config.load_config` (or
``jaxvision train --config NAME``). This package is the one place for shipped configs, and
none names a path of one machine: data locations are given on the command line
(``data.root=...``).
"""
