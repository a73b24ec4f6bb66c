"""jaxvision.ops (being written)."""
