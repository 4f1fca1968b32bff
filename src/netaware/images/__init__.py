"""netaware's container images, built on this machine without Docker or an image registry (`netaware images`)."""
