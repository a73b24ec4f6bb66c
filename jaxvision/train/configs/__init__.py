"""Shipped experiment configs: each module's ``get_config()`` returns a ConfigDict.

Load one by name with :func:`jaxvision.train.config.load_config`; ``experiments/configs/``
in the repository re-exports the same files for readers.
"""
