"""The dual-system latent-reasoning VLA: reasoning tower, acting tower, latent CoT, action tokens, Q heads, LoRA adapters, warm-up. Knows nothing of robots or sockets."""
