"""jaxvision.data (being written)."""
