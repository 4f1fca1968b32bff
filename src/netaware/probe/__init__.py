"""netaware-probe: the per-node measuring agent."""
