"""lastr1: human-in-the-loop RL post-training of a latent-reasoning VLA on Franka arms (LaST-R1, appendix D.4)."""

__version__ = "0.1.0"
