"""Text-encoder fine-tuning (NegationCLIP) and the contrastive loss shared with pretraining."""
