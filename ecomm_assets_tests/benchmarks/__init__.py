"""The benchmarks (`make bench`): each figure against its baseline, side by side."""
