"""The local control plane: etcd, kube-apiserver, kube-controller-manager, two kube-schedulers, kwok and the
netaware extender, built from Go modules and run on loopback (`netaware cluster up | down | status`)."""
