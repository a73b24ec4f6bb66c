"""jaxvision.train (being written)."""
