"""The GPU-side process: replay buffers, BC + Q updates on LoRA, checkpoints, weight broadcast. Touches no hardware."""
