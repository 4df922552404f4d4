"""The built-in torch trainer: pretraining, SFT, reward modelling, RLHF and DPO."""
