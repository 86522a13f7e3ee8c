"""The end-to-end demo on a registry-shipped data set (Fashion-MNIST from Debian)."""
