"""netaware: network-aware scheduling and latency-aware routing for Kubernetes."""

__version__ = "0.1.0"
