"""Tools around the model: benchmarks, run reports and plots, the memory measures (mean recurrent length)."""
