"""Looking at a neuron and a replacement: inspect, diagnose, their figures, and the synthetic-curve stimuli."""
