"""The Accelerate training engine shared by pretraining, linear evaluation and fine-tuning."""
