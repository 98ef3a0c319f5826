"""replacebench: replace a neuron with your own account of it, and measure what it recovers."""

__version__ = "0.1.0"
