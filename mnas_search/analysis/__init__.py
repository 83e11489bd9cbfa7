"""Reading runs back: reports, proxy fidelity, the ground truth and export."""
