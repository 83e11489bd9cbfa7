"""Training one network: the proxy task, the recipe, child evaluation, the lean step, TF-state hygiene and full training."""
