"""The lab: sweep the equivariance-invariance lever on real data and report."""
