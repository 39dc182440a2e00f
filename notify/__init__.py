"""Reaching people off the screen: incidents' notifications planned by rule, escalated along their
chains until acknowledged, digested and rate-limited per person, delivered by email and signed
webhooks, retried with backoff; a process of its own, so a failing channel slows nothing else."""
