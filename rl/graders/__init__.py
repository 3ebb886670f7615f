"""Grader implementations; the registry and the reward-function contract live in `rl.rewards`."""
