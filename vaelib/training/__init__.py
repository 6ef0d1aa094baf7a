"""Training: fit, its steps and history, checkpoints, TensorBoard, DDP, memory checks and the allocator tuning."""
