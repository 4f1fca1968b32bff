"""The local lab: emulated nodes (network namespaces) joined by shaped links."""
