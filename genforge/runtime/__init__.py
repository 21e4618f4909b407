"""What training and sampling both compute with: the precision chosen for the machine, and
per-request noise with fixed-shape passes. Below the families and the training loop."""
