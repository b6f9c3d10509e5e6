"""Plays the upstream remediation pipeline and the human reviewers against the service."""
