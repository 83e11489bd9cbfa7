"""Compound scaling: the family B1-B7 and the alpha, beta, gamma grid."""
