"""Workflow definitions: the case state machine and the policy packs it reads. Pure Python."""
