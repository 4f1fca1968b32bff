"""The netaware scheduler extender: kube-scheduler's filter and prioritize verbs over watched cluster state."""
