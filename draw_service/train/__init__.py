"""Training: configuration, the loop (local or per Ray worker), sessions, evaluation, the Ray launcher."""
