"""netaware-aggregator: probe reports in, network topology out."""
