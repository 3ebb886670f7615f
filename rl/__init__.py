"""Rollout sampler, GRPO math, rewards, learner loop and SFT."""
