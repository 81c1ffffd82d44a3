"""What needs torch: the loop, the worker process, models, losses, data, quality, pictures, checkpoint tensors."""
