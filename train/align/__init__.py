"""Alignment: the stages that turn a pretrained model into an assistant.

``sft`` (supervised fine-tuning in the chat template), ``reward`` (a reward model trained on
comparisons; ``score`` applies it), ``rlhf`` (PPO or RLOO against a reward, sampling in
``rollout``), ``dpo`` (DPO/IPO straight from comparisons) and ``sampling`` (answer pairs for
people to compare). What they share: ``stage`` (config fields, the run object and the step
loop), ``data`` (reading records and prompts, the held-out split, batch order, padding) and
``losses`` (the loss functions, pure tensor code).
"""
