"""methodhub: a self-hosted IoT hub for synchronous cloud-to-device calls."""

__version__ = "0.1.0"
