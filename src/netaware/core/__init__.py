"""Pure computation: topology model, cost function, AppGroup graph, scoring. No I/O of any kind."""
